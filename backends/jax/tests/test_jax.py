"""nnx-jax passes the nnx backend conformance kit (CPU, and a GPU when JAX has one)."""

import pytest

import nnx
from nnx.testing import assert_conformant

jax = pytest.importorskip("jax")


@pytest.mark.parametrize("spec", ["jax:cpu", "jax:gpu"])
def test_jax_backend_is_conformant(spec):
    from nnx_jax import JaxBackend

    ok, why = JaxBackend.available(spec.partition(":")[2])
    if not ok:
        pytest.skip(why)
    assert_conformant(spec)


def test_specs_and_reasons():
    assert nnx.get_backend("jax").spec == "jax:cpu"
    with pytest.raises(nnx.BackendError, match="does not exist"):
        nnx.get_backend("jax:cpu:7")

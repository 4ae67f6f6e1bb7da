"""nnx-torch passes the nnx backend conformance kit (CPU, and CUDA when torch sees one)."""

import pytest

import nnx
from nnx.testing import assert_conformant

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("spec", ["torch:cpu", "torch:cuda"])
def test_torch_backend_is_conformant(spec):
    if spec == "torch:cuda" and not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    assert_conformant(spec)


def test_specs_and_reasons():
    assert nnx.get_backend("torch").spec == "torch:cpu"
    if not torch.cuda.is_available():
        with pytest.raises(nnx.BackendError, match="sees no CUDA device"):
            nnx.get_backend("torch:cuda:0")
    with pytest.raises(nnx.BackendError, match="supports 'cpu' and 'cuda"):
        nnx.get_backend("torch:mps")

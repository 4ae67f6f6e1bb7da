"""nnx-jax passes the nnx backend conformance kit (CPU, and a GPU when JAX has one)."""

import os
import subprocess
import sys

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


def test_a_gpu_backend_asks_for_float32_matmuls(monkeypatch):
    """JAX's GPU default is TF32 matmuls (errors near 1e-3): starting jax:gpu asks for float32."""
    from nnx_jax import JaxBackend

    cpus, real = jax.devices("cpu"), jax.devices
    # this machine's CPU devices stand in for the GPUs JAX would list
    monkeypatch.setattr(jax, "devices", lambda kind=None: cpus if kind == "gpu" else real(kind))
    before = jax.config.jax_default_matmul_precision
    try:
        JaxBackend("cpu")
        assert jax.config.jax_default_matmul_precision == before  # the CPU computes float32
        JaxBackend("gpu")
        assert jax.config.jax_default_matmul_precision == "highest"
        assert jax.config.jax_enable_x64
    finally:
        jax.config.update("jax_default_matmul_precision", before)


_ON_CPU1 = """
import jax, nnx
made = []
prng_key = jax.random.PRNGKey
def recording(*args, **kwargs):
    key = prng_key(*args, **kwargs)
    made.append(key.devices())
    return key
jax.random.PRNGKey = recording
b = nnx.get_backend("jax:cpu:1")
assert b.device.id == 1, b.device
assert b.spec == "jax:cpu:1", b.spec
g = b.rng(3)
cpu1 = {jax.devices("cpu")[1]}
assert made == [cpu1], made
assert g.key.devices() == cpu1 and g.key.committed
for draw in (g.uniform((3,)), g.normal((2, 2)), g.uniform((2,), "float64")):
    assert draw.devices() == cpu1, draw.devices()
state = g.get_state()
u = g.uniform((4,))
g.set_state(state)
assert g.key.devices() == cpu1 and (g.uniform((4,)) == u).all()
print("ok")
"""


def test_the_generator_key_and_draws_live_on_the_backends_device():
    """jax:cpu:1 (JAX's forced host devices) stands for a second GPU: nothing lands on cpu:0."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", _ON_CPU1], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr

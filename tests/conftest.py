"""Every numerical test runs on every available backend.

numpy and array-api-strict on its fake ``device1`` always; ``fakecupy:1``, the CuPy
backend's own code on a CuPy-shaped stand-in's second fake GPU (tests/fake_cupy.py),
always; torch and jax CPU when their plugins are installed; cupy only when a CUDA
device answers (skipped with the reason otherwise).
"""

from __future__ import annotations

import pytest
from fake_cupy import FakeCupyBackend

import nnx
from nnx.backend import availability, register_backend

register_backend("fakecupy", FakeCupyBackend, source="tests/fake_cupy.py")

BACKEND_SPECS = [
    "numpy",
    "array_api_strict:device1",
    "fakecupy:1",
    "torch:cpu",
    "jax:cpu",
    "cupy",
    "torch:cuda",
]


def _param(spec: str):
    ok, why = availability(spec)
    return pytest.param(spec) if ok else pytest.param(spec, marks=pytest.mark.skip(reason=why))


BACKENDS = [_param(s) for s in BACKEND_SPECS]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The backend under test, made current for the test's duration."""
    with nnx.using(request.param) as b:
        nnx.manual_seed(0)
        yield b

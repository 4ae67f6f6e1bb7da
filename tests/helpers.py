"""Small helpers shared by the tests."""

from __future__ import annotations

import array_api_compat
import numpy as np

import nnx


def host(x) -> np.ndarray:
    """Any backend's array as a host NumPy array."""
    return nnx.to_numpy(x)


def on_device(x, backend) -> bool:
    """True when ``x`` lives on ``backend``'s library and device."""
    return backend.owns(x)


def dtype_name(x) -> str:
    """ "float32", "int64", ... for an array of any library."""
    return nnx.layers.base.dtype_name(array_api_compat.array_namespace(x), x.dtype)

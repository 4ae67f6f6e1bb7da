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


def write_tiny_mnist(folder, train: int = 256, test: int = 64, seed: int = 0):
    """A small MNIST-shaped data set in the four IDX files of ``folder``, each class a
    bright square at its own height (learnable in a few epochs)."""
    from nnx.datasets import write_idx

    rng = np.random.default_rng(seed)
    for prefix, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c : 2 * c + 6, 4:10] = 255  # the class is where the square is
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder

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


def assert_rounded(actual, expected, terms: int, magnitude=None, what: str = "value") -> None:
    """``actual`` (float32) equals the float64 ``expected`` to the rounding of float32 sums
    of ``terms`` terms whose absolute values add up to ``magnitude`` (default ``|expected|``),
    plus a couple of roundings of the result itself (see nnx.testing.tolerances)."""
    from nnx.testing import assert_within, sum_bound, ulp_bound

    expected = np.asarray(expected, np.float64)
    size = np.abs(expected) if magnitude is None else np.asarray(magnitude, np.float64)
    assert_within(actual, expected, sum_bound(size, terms) + ulp_bound(expected, ulps=2), what)


def magnitudes(layer, x, dy):
    """The absolute values a multilinear layer's (Linear, Conv2d) float32 sums add up:
    the layer on ``|x|`` with absolute weights, forward and backward (``|dy|``), in
    float64 on numpy. Returns (output, input gradient, {parameter name: gradient})."""
    import copy

    twin = copy.deepcopy(layer).to("numpy", dtype="float64")
    for p in twin.parameters():
        p.value = np.abs(p.value)
        p.grad = None
    y = twin(np.abs(np.asarray(host(x), np.float64)))
    dx = twin.backward(np.abs(np.asarray(host(dy), np.float64)))
    return y, dx, {name: p.grad for name, p in twin.named_parameters()}


def training_bound(reference, terms: int, steps: int):
    """How far ``steps`` training steps of float32 arithmetic on another library (or another
    summation order) may carry a value from ``reference``: each step's sums of ``terms``
    terms (the model's fan-ins and the batch) round a few times at the value's own scale,
    and a stable training passes those errors on without growing them."""
    from nnx.testing import ulp_bound

    ref = np.abs(np.asarray(reference, np.float64))
    return ulp_bound(np.full(ref.shape, ref.max()) if ref.ndim else ref, ulps=4 * terms * steps)

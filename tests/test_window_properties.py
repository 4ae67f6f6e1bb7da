"""Property-based tests of Conv2d and the pools: random shapes, strides and paddings.

Every backend against a bare-NumPy loop (float64), the NumPy fast path against
the portable array-API path (array-api-strict), and finite differences
(nnx.gradcheck).  Examples are few and small so the file stays within seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_rounded, magnitudes
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import nnx
from nnx.backend import availability

SPECS = [
    s for s in ("numpy", "array_api_strict:device1", "torch:cpu", "jax:cpu") if availability(s)[0]
]
PROPERTY = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
#: JAX compiles every new shape (about a second each): a few examples there
FEW = settings(PROPERTY, max_examples=3)


def for_each_backend(test):
    """Run the property on every backend: 20 examples each, 3 on JAX."""

    def run(spec):
        (FEW if spec.startswith("jax") else PROPERTY)(given(**test.strategies)(test))(spec=spec)

    run.__name__, run.__doc__ = "test_" + test.__name__, test.__doc__
    return pytest.mark.parametrize("spec", SPECS)(run)


@st.composite
def window_case(draw, pool: bool = False):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph = draw(st.integers(0, kh // 2 if pool else 2))
    pw = draw(st.integers(0, kw // 2 if pool else 2))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    assume(h + 2 * ph >= kh and w + 2 * pw >= kw)
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return n, c, (h, w), (kh, kw), (sh, sw), (ph, pw)


def windows(x: np.ndarray, kernel, stride, padding, fill: float) -> np.ndarray:
    """(N, C, OH, OW, kh, kw) windows of padded x, by plain loops."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    oh = (xp.shape[2] - kh) // sh + 1
    ow = (xp.shape[3] - kw) // sw + 1
    out = np.empty((*x.shape[:2], oh, ow, kh, kw))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = xp[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
    return out


def conv_reference(x, weight, bias, kernel, stride, padding) -> np.ndarray:
    win = windows(x.astype(np.float64), kernel, stride, padding, 0.0)
    y = np.einsum("nchwij,ocij->nohw", win, weight.astype(np.float64))
    return y + bias.astype(np.float64)[None, :, None, None]


def host(x):
    return nnx.to_numpy(x)


def conv2d_matches_a_numpy_loop(spec, case, o):
    """Conv2d's output equals a float64 loop over windows."""
    n, c, size, kernel, stride, padding = case
    x = np.random.default_rng(0).standard_normal((n, c, *size)).astype(np.float32)
    with nnx.using(spec) as b:
        nnx.manual_seed(1)
        layer = nnx.Conv2d(c, o, kernel, stride=stride, padding=padding)
        y = host(layer(b.asarray(x, "float32")))
    w, bias = host(layer.weight.value), host(layer.bias.value)
    ref = conv_reference(x, w, bias, kernel, stride, padding)
    size = conv_reference(np.abs(x), np.abs(w), np.abs(bias), kernel, stride, padding)
    assert_rounded(y, ref, c * kernel[0] * kernel[1] + 1, size, "Conv2d(x)")


@PROPERTY
@given(case=window_case(), o=st.integers(1, 3))
def test_conv2d_numpy_fast_path_matches_the_portable_path(case, o):
    n, c, size, kernel, stride, padding = case
    x = np.random.default_rng(0).standard_normal((n, c, *size)).astype(np.float32)
    results, sizes = [], None
    for spec in ("numpy", "array_api_strict:device1"):  # NumPy kernels vs array-API code
        with nnx.using(spec) as b:
            nnx.manual_seed(1)
            layer = nnx.Conv2d(c, o, kernel, stride=stride, padding=padding)
            y = layer(b.asarray(x, "float32"))
            dy = np.random.default_rng(1).standard_normal(tuple(y.shape)).astype(np.float32)
            dx = layer.backward(b.asarray(dy, "float32"))
            results.append((host(y), host(dx), host(layer.weight.grad), host(layer.bias.grad)))
            if sizes is None:
                size_y, size_dx, grads = magnitudes(layer, x, dy)
                sizes = (size_y, size_dx, grads["weight"], grads["bias"])
    (oh, ow), kk = results[0][0].shape[2:], kernel[0] * kernel[1]
    terms = (c * kk + 1, o * kk, n * oh * ow, n * oh * ow)  # y, dx, dw, db
    names = ("output", "input gradient", "weight gradient", "bias gradient")
    for fast, portable, size, k, name in zip(*results, sizes, terms, names, strict=True):
        assert_rounded(fast, portable, k, size, name)


@PROPERTY
@given(case=window_case(), o=st.integers(1, 2))
def test_conv2d_backward_passes_gradcheck(case, o):
    n, c, size, kernel, stride, padding = case
    assume(n * c * size[0] * size[1] <= 150)
    x = np.random.default_rng(0).standard_normal((n, c, *size))
    with nnx.using("numpy"):
        layer = nnx.Conv2d(c, o, kernel, stride=stride, padding=padding)
        result = nnx.gradcheck(layer, x)
    assert result.ok, str(result)


def pools_match_a_numpy_loop_and_gradcheck(spec, case, kind):
    """Max and average pooling equal a float64 loop; on numpy their backward passes gradcheck."""
    n, c, size, kernel, stride, padding = case
    x = np.random.default_rng(0).standard_normal((n, c, *size)).astype(np.float32)
    cls = nnx.MaxPool2d if kind == "max" else nnx.AvgPool2d
    with nnx.using(spec) as b:
        layer = cls(kernel, stride=stride, padding=padding)
        y = host(layer(b.asarray(x, "float32")))
        if spec == "numpy" and n * c * size[0] * size[1] <= 150:
            result = nnx.gradcheck(layer, x.astype(np.float64))  # continuous data: no ties
            assert result.ok, str(result)
    if kind == "max":
        ref = windows(x, kernel, stride, padding, -np.inf).max(axis=(4, 5))
    else:  # padding counts in the average, as PyTorch's default count_include_pad=True
        ref = windows(x, kernel, stride, padding, 0.0).mean(axis=(4, 5))
    if kind == "max":  # a maximum is exact
        np.testing.assert_array_equal(y, ref)
    else:
        size = windows(np.abs(x), kernel, stride, padding, 0.0).mean(axis=(4, 5))
        assert_rounded(y, ref, kernel[0] * kernel[1], size, "AvgPool2d(x)")


conv2d_matches_a_numpy_loop.strategies = {"case": window_case(), "o": st.integers(1, 3)}
test_conv2d_matches_a_numpy_loop = for_each_backend(conv2d_matches_a_numpy_loop)
pools_match_a_numpy_loop_and_gradcheck.strategies = {
    "case": window_case(pool=True),
    "kind": st.sampled_from(["max", "avg"]),
}
test_pools_match_a_numpy_loop_and_gradcheck = for_each_backend(
    pools_match_a_numpy_loop_and_gradcheck
)

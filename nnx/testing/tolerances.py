"""Tolerances derived from the arithmetic: how far two correct float computations may differ.

Two correct kernels that sum the same terms in another order (another BLAS kernel, a GPU
reduction tree, a compiled loop) give different roundings.  For a sum of ``K`` terms
``t_i`` the probabilistic bound of Higham and Mary (SIAM J. Sci. Comput. 41, 2019) is
``|computed - exact| <= lam * sqrt(K) * u * sum(|t_i|)`` (u = eps / 2, the unit roundoff),
for any summation order, with a failure probability that falls like ``exp(-lam**2 / 2)``.
Two such results differ by at most twice that; :func:`sum_bound` takes ``lam = 2``, which
no correct order has come near, while a wrong kernel (a missing term, a 0.1% scale) is
far outside it at the sizes the kit uses.

The magnitudes ``sum(|t_i|)`` of a multilinear operation (a product, a convolution, a
window sum) are the same operation applied to the absolute values of its inputs, in
float64 on the host: :func:`product_bound` does that for matrix products, and the kit's
cases do it for their kernels.  Elementwise functions from two maths libraries (``exp``,
``tanh``, ``log1p``) differ by a few ulps: :func:`ulp_bound`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np  # host side only: the bounds are computed on host copies

from nnx.backend import to_numpy

#: unit roundoffs (half the spacing of numbers near 1)
_UNIT = {
    np.dtype(np.float16): 2.0**-11,
    np.dtype(np.float32): 2.0**-24,
    np.dtype(np.float64): 2.0**-53,
}


def unit_roundoff(dtype: Any = "float32") -> float:
    """u of a floating dtype (NumPy's, or any library's dtype whose name NumPy knows)."""
    name = getattr(dtype, "name", None) or str(dtype).rsplit(".", 1)[-1]
    return _UNIT[np.dtype(name)]


def sum_bound(abs_sum: Any, terms: int, dtype: Any = "float32", lam: float = 2.0) -> np.ndarray:
    """How far two correct sums of ``terms`` values whose absolute values total ``abs_sum``
    may differ: ``2 * lam * sqrt(terms) * u * abs_sum`` (elementwise, on the host)."""
    u = unit_roundoff(dtype)
    return 2.0 * lam * math.sqrt(max(terms, 1)) * u * np.asarray(to_numpy(abs_sum), np.float64)


def product_bound(a: Any, b: Any, dtype: Any = "float32") -> np.ndarray:
    """:func:`sum_bound` of ``a @ b``: ``K = a.shape[-1]`` terms of magnitude ``|a| @ |b|``."""
    a64 = np.abs(np.asarray(to_numpy(a), np.float64))
    b64 = np.abs(np.asarray(to_numpy(b), np.float64))
    return sum_bound(a64 @ b64, a64.shape[-1], dtype)


def ulp_bound(*magnitudes: Any, ulps: float = 4.0, dtype: Any = "float32") -> np.ndarray:
    """``ulps`` rounding errors of each magnitude, summed: the spread of an elementwise
    formula evaluated by two maths libraries (or with and without fused multiply-adds)."""
    u = unit_roundoff(dtype)
    total = sum(np.abs(np.asarray(to_numpy(m), np.float64)) for m in magnitudes)
    return 2.0 * ulps * u * total


def forward_bound(pred: Any, terms: int, ulps: float = 4.0) -> np.ndarray:
    """Rounding bound of a float forward pass whose sums have ``terms`` terms in all (the
    fan-ins of its layers added up), relative to each row's largest output: ``ulps``
    rounding errors per term at the scale of a normalised network's activations."""
    host = np.abs(np.asarray(to_numpy(pred), np.float64))
    scale = host.max(axis=-1, keepdims=True) if host.ndim else host
    return ulp_bound(np.broadcast_to(scale, host.shape), ulps=ulps * terms)


def assert_within(actual: Any, expected: Any, bound: Any, what: str) -> None:
    """Raise AssertionError naming ``what`` unless ``|actual - expected| <= bound`` everywhere.

    ``bound`` is a scalar or an array broadcasting against the values; NaN and inf must
    match exactly.  The smallest normal float32 is added so that exact zeros compare.
    """
    a = np.asarray(to_numpy(actual), np.float64)
    e = np.asarray(to_numpy(expected), np.float64)
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {a.shape}, expected {e.shape}")
    finite = np.isfinite(e)
    if not np.array_equal(np.isfinite(a), finite) or not np.array_equal(a[~finite], e[~finite]):
        raise AssertionError(f"{what}: NaN or inf where the reference has none, or the reverse")
    limit = np.broadcast_to(np.asarray(bound, np.float64), e.shape) + np.finfo(np.float32).tiny
    diff = np.where(finite, np.abs(a - e), 0.0)
    over = diff > limit
    if over.any():
        i = np.unravel_index(int(np.argmax(np.where(over, diff / limit, 0.0))), e.shape)
        raise AssertionError(
            f"{what} differs by up to {diff.max():.3g}; at {tuple(int(k) for k in i)} by "
            f"{diff[i]:.3g}, {diff[i] / limit[i]:.1f}x the rounding bound {limit[i]:.3g}"
        )

"""The rounding bounds of nnx.testing.tolerances: wide enough for every correct summation
order, narrow enough that the kit still names a kernel that is slightly off."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.backend import NumpyBackend, NumpyOps, registry
from nnx.testing import assert_within, check_backend, product_bound, sum_bound


def orders(t: np.ndarray) -> dict[str, np.ndarray]:
    """Column sums of float32 ``t`` (K, M) in several correct orders, all in float32."""
    k = t.shape[0]
    blocks = t[: k - k % 16].reshape(-1, 16, t.shape[1]).sum(axis=1, dtype=np.float32)
    return {
        "pairwise (numpy)": t.sum(axis=0, dtype=np.float32),
        "sequential": np.cumsum(t, axis=0, dtype=np.float32)[-1],
        "reversed": np.cumsum(t[::-1], axis=0, dtype=np.float32)[-1],
        "sorted by size": np.cumsum(
            np.take_along_axis(t, np.argsort(np.abs(t), axis=0), 0), axis=0, dtype=np.float32
        )[-1],  # fmt: skip
        "blocks of 16": np.cumsum(blocks, axis=0, dtype=np.float32)[-1]
        + t[k - k % 16 :].sum(axis=0, dtype=np.float32),
    }


@pytest.mark.parametrize("k", [64, 1000, 9216])
@pytest.mark.parametrize("kind", ["cancelling", "positive"])
def test_every_summation_order_is_within_the_bound(k, kind):
    t = np.random.default_rng(k).standard_normal((k, 200)).astype(np.float32)
    if kind == "positive":  # no cancellation: the sequential order's error grows fastest
        t = np.abs(t)
    bound = sum_bound(np.abs(t).astype(np.float64).sum(axis=0), k) / 2  # one sum vs exact
    exact = t.astype(np.float64).sum(axis=0)
    for name, total in orders(t).items():
        assert_within(total, exact, bound, f"{name} sum of {k} {kind} terms")


def test_the_bound_is_far_below_a_scaling_error():
    """At the kit's sizes a 0.1% scale error is many times the rounding bound."""
    a = np.random.default_rng(0).standard_normal((8, 9216)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((9216, 25)).astype(np.float32)
    good = a @ b
    with pytest.raises(AssertionError, match="the rounding bound"):
        assert_within(good * (1 + 2**-10), good, product_bound(a, b), "a product 0.1% off")
    assert_within(good, a.astype(np.float64) @ b, product_bound(a, b), "a correct product")


class BiasedSums(NumpyOps):
    """Broken: its column sums are off by a relative 2**-14 (a few hundred float32 ulps)."""

    def sum_axis0(self, a):
        return super().sum_axis0(a) * np.float32(1 + 2**-14)


class BiasedSumsBackend(NumpyBackend):
    """Broken: a kernel table whose sums are slightly off."""

    name = "broken_sums"
    ops_class = BiasedSums


def test_the_kit_names_a_sum_that_is_slightly_off(monkeypatch):
    for attr in ("_factories", "_sources", "_instances"):
        monkeypatch.setattr(registry, attr, dict(getattr(registry, attr)))
    nnx.register_backend("broken_sums", BiasedSumsBackend, source="test")
    report = check_backend("broken_sums", only=["ops"])
    assert report.failed == ["ops"]
    assert report["ops"].message.startswith("sum_axis0("), report["ops"].message

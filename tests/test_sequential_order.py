"""Sequential runs a ReLU followed by a MaxPool2d as the pool, then the ReLU.

The results must be those of the layers run one by one, as listed: the same output
bits and the same gradients (a dead window may hold -0.0 where the listed order has 0.0,
which compares equal).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from helpers import host

import nnx


def _model(pool: nnx.Layer) -> nnx.Sequential:
    nnx.manual_seed(5)
    return nnx.Sequential(
        nnx.Conv2d(2, 3, 3, padding=1), nnx.ReLU(), pool,
        nnx.Conv2d(3, 4, 3), nnx.ReLU(), nnx.MaxPool2d(2), nnx.Flatten(), nnx.Linear(16, 3),
    )  # fmt: skip


def _data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 2, 12, 12)).astype(np.float32)
    x[0, :, :4, :4] = -1.0  # windows whose maximum is negative: dead after the ReLU
    return x, rng.standard_normal((4, 3)).astype(np.float32)


def _as_listed(model: nnx.Sequential, x, dy):
    """Forward and backward through each layer in the listed order, by hand."""
    for layer in model:
        x = layer(x)
    out = x
    for layer in reversed(list(model)):
        dy = layer.backward(dy)
    return out, dy


@pytest.mark.parametrize(
    "pool",
    [lambda: nnx.MaxPool2d(2), lambda: nnx.MaxPool2d(3, stride=2, padding=1)],
    ids=["2x2", "3x3-stride-2-padded"],
)
def test_the_reordered_pair_gives_the_listed_order_results(backend, pool):
    x, dy = _data(0)
    model = _model(pool())
    listed = copy.deepcopy(model)
    out = model(nnx.asarray(x))
    dx = model.backward(nnx.asarray(dy))
    want_out, want_dx = _as_listed(listed, nnx.asarray(x), nnx.asarray(dy))
    np.testing.assert_array_equal(host(out), host(want_out))
    np.testing.assert_array_equal(host(dx), host(want_dx))
    for (name, p), q in zip(model.named_parameters(), listed.parameters(), strict=True):
        np.testing.assert_array_equal(host(p.grad), host(q.grad), err_msg=name)


def test_the_pool_runs_first_only_for_that_exact_pair():
    calls = []

    class LoggedReLU(nnx.ReLU):
        def forward(self, x):
            calls.append("relu")
            return super().forward(x)

    class LoggedPool(nnx.MaxPool2d):
        def forward(self, x):
            calls.append("pool")
            return super().forward(x)

    x = nnx.asarray(_data(1)[0])
    nnx.Sequential(LoggedReLU(), LoggedPool(2))(x)  # subclasses: as listed
    assert calls == ["relu", "pool"]
    model = nnx.Sequential(nnx.ReLU(), nnx.AvgPool2d(2))  # other pools: as listed
    assert [type(m).__name__ for m in model._forward_layers] == ["ReLU", "AvgPool2d"]
    model = nnx.Sequential(nnx.Identity()).add(nnx.ReLU()).add(nnx.MaxPool2d(2))
    assert [type(m).__name__ for m in model._forward_layers] == ["Identity", "MaxPool2d", "ReLU"]


def test_without_an_input_gradient_the_reordered_model_trains_as_listed(backend):
    x, _ = _data(2)
    y = nnx.asarray(np.arange(4) % 3, dtype="int64")
    weights = []
    for reorder in (True, False):
        model = _model(nnx.MaxPool2d(2))
        model.requires_input_grad = False
        if not reorder:
            model._forward_layers = list(model)
            model._backward_layers = list(model)[::-1]
        opt = nnx.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        loss_fn = nnx.CrossEntropyLoss()
        for _ in range(3):
            opt.zero_grad()
            loss_fn(model(nnx.asarray(x)), y)
            model.backward(loss_fn.backward())
            opt.step()
        weights.append([host(p.value) for p in model.parameters()])
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)

"""Sequential's two rewrites (nnx.layers.plan): a ReLU followed by a MaxPool2d runs as the
pool, then the ReLU; a Linear followed by a ReLU runs as one fused step.

The results must be those of the layers run one by one, as listed: the same output
bits and the same gradients (a dead window may hold -0.0 where the listed order has 0.0,
which compares equal), except a fused Linear's bias gradient, equal to rounding.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from helpers import host

import nnx
from nnx.layers import plan


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
    assert plan.groups(list(model)) == [(0,), (1,)]
    model = nnx.Sequential(nnx.Identity()).add(nnx.ReLU()).add(nnx.MaxPool2d(2))
    assert plan.groups(list(model)) == [(0,), (2,), (1,)]


def test_a_linear_and_its_relu_are_fused_only_for_that_exact_pair():
    class MyLinear(nnx.Linear):
        pass

    class MyReLU(nnx.ReLU):
        pass

    def groups(*layers):
        return plan.groups(list(layers))

    assert groups(nnx.Linear(3, 3), nnx.ReLU(), nnx.Linear(3, 2)) == [(0, 1), (2,)]
    assert groups(nnx.Linear(3, 3), nnx.Linear(3, 3), nnx.ReLU()) == [(0,), (1, 2)]
    assert groups(MyLinear(3, 3), nnx.ReLU()) == [(0,), (1,)]
    assert groups(nnx.Linear(3, 3), MyReLU()) == [(0,), (1,)]
    assert groups(nnx.Linear(3, 3), nnx.Tanh()) == [(0,), (1,)]
    # where both pairs could apply, the ReLU goes after the pool
    assert groups(nnx.Linear(3, 3), nnx.ReLU(), nnx.MaxPool2d(2)) == [(0,), (2,), (1,)]


def _mlp(bias: bool) -> nnx.Sequential:
    nnx.manual_seed(6)
    return nnx.Sequential(
        nnx.Linear(7, 16, bias=bias), nnx.ReLU(), nnx.Linear(16, 9), nnx.ReLU(), nnx.Linear(9, 3)
    )


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("input_grad", [True, False], ids=["input-grad", "no-input-grad"])
def test_the_fused_linear_relu_gives_the_listed_order_results(backend, bias, input_grad):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((12, 7)).astype(np.float32)
    x[:4] *= 40.0  # large inputs: many units dead, many far from 0
    dy = rng.standard_normal((12, 3)).astype(np.float32)
    model = _mlp(bias)
    model.requires_input_grad = input_grad
    listed = copy.deepcopy(model)
    out = model(nnx.asarray(x))
    dx = model.backward(nnx.asarray(dy))
    want_out, want_dx = _as_listed(listed, nnx.asarray(x), nnx.asarray(dy))
    np.testing.assert_array_equal(host(out), host(want_out))
    if input_grad:
        np.testing.assert_array_equal(host(dx), host(want_dx))
    else:
        assert dx is None
    for (name, p), q in zip(model.named_parameters(), listed.parameters(), strict=True):
        if name.endswith("bias"):  # the fused kernel may sum in another order
            np.testing.assert_allclose(host(p.grad), host(q.grad), rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(host(p.grad), host(q.grad), err_msg=name)


def test_after_a_fused_forward_each_layer_can_run_its_own_backward(backend):
    x = nnx.asarray(np.random.default_rng(4).standard_normal((5, 7)).astype(np.float32))
    dy = nnx.asarray(np.ones((5, 16), dtype=np.float32))
    model = nnx.Sequential(*list(_mlp(True))[:2])
    out = model(x)
    assert plan.groups(list(model)) == [(0, 1)]
    linear, relu = model
    w, b = host(linear.weight.value), host(linear.bias.value)
    np.testing.assert_allclose(host(out), np.maximum(host(x) @ w.T + b, 0), rtol=1e-5, atol=1e-6)
    dx = linear.backward(relu.backward(dy))
    mask = (host(out) > 0).astype(np.float32)
    np.testing.assert_allclose(host(dx), mask @ w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(host(linear.weight.grad), mask.T @ host(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(host(linear.bias.grad), mask.sum(axis=0), rtol=1e-6)


def test_a_fused_pair_in_eval_mode_keeps_nothing_and_gives_the_same_output(backend):
    x = nnx.asarray(np.random.default_rng(5).standard_normal((6, 7)).astype(np.float32))
    model = _mlp(True)
    want = host(model(x))
    model.eval()
    np.testing.assert_array_equal(host(model(x)), want)
    with pytest.raises(RuntimeError, match="eval mode"):
        model.backward(nnx.asarray(np.ones((6, 3), dtype=np.float32)))


def test_without_an_input_gradient_the_reordered_model_trains_as_listed(backend, monkeypatch):
    x, _ = _data(2)
    y = nnx.asarray(np.arange(4) % 3, dtype="int64")
    weights = []
    for reorder in (True, False):
        if not reorder:
            monkeypatch.setattr(plan, "groups", lambda layers: [(i,) for i in range(len(layers))])
        model = _model(nnx.MaxPool2d(2))
        model.requires_input_grad = False
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

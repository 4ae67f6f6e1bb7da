"""Layers: gradients, modes, state, devices and dtypes on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import dtype_name, host

import nnx
from nnx.testing import assert_within, forward_bound, product_bound, ulp_bound
from nnx.testing.examples import layer_example, layer_example_ids


@pytest.mark.parametrize("example", layer_example_ids())
def test_gradcheck_every_layer_example(backend, example):
    """Every row of nnx.testing's one example table, with distinct input values (no ties)."""
    make, shape = layer_example(example)
    layer = make(nnx.layers)
    rng = np.random.default_rng(1)
    x = rng.permutation(np.arange(np.prod(shape), dtype=np.float64)).reshape(shape) / 7.0 - 1.0
    if not example.startswith(("MaxPool", "AvgPool")):
        x = rng.standard_normal(shape)
    result = nnx.gradcheck(layer, x)
    assert result.ok, str(result)
    assert result.max_error < 1e-5


def test_gradcheck_mlp(backend):
    model = nnx.Sequential(nnx.Linear(3, 5), nnx.GELU(), nnx.Linear(5, 2), nnx.Softmax())
    result = nnx.gradcheck(model, np.random.default_rng(2).standard_normal((4, 3)))
    assert result.ok, str(result)
    assert set(result.errors) == {"input", "0.weight", "0.bias", "2.weight", "2.bias"}


def test_gradcheck_can_fail(backend):
    class WrongTanh(nnx.Tanh):
        def grad(self, dy, x, y):
            return dy * (1.0 - y)  # the derivative of tanh is 1 - y^2

    result = nnx.gradcheck(WrongTanh(), np.random.default_rng(3).standard_normal((3, 2)))
    assert not result.ok
    assert "input" in str(result) and "FAILED" in str(result)


def test_activations_match_numpy(backend):
    x = np.linspace(-4, 4, 9, dtype=np.float32).reshape(3, 3)
    xd = nnx.asarray(x)
    x64 = x.astype(np.float64)
    t = np.tanh(np.sqrt(2 / np.pi) * (x64 + 0.044715 * x64**3))
    # (layer, float64 value, the magnitudes its float32 formula rounds at)
    cases = [
        (nnx.ReLU(), np.maximum(x64, 0), 0.0),
        (nnx.LeakyReLU(0.2), np.where(x64 > 0, x64, 0.2 * x64), np.abs(x64)),
        (nnx.Sigmoid(), 1 / (1 + np.exp(-x64)), 1.0),  # 0.5 * tanh(x / 2) + 0.5: halves
        (nnx.Tanh(), np.tanh(x64), np.abs(np.tanh(x64))),
        (nnx.Softmax(), np.exp(x64) / np.exp(x64).sum(axis=1, keepdims=True), 1.0),
        (nnx.GELU(), 0.5 * x64 * (1 + t), 0.5 * np.abs(x64) * (1 + np.abs(t))),
    ]
    for layer, expected, magnitude in cases:
        bound = ulp_bound(np.broadcast_to(magnitude, x.shape), ulps=8)
        assert_within(layer(xd), expected, bound, layer.label())


def test_linear_matches_numpy(backend):
    layer = nnx.Linear(4, 3)
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    w, b = host(layer.weight.value), host(layer.bias.value)
    bound = product_bound(x, w.T) + ulp_bound(x @ w.T + b, ulps=1)
    assert_within(layer(nnx.asarray(x)), x @ w.T + b, bound, "Linear(x)")


def test_backward_accumulates(backend):
    layer = nnx.Linear(2, 2)
    x = nnx.asarray(np.ones((3, 2), np.float32))
    dy = nnx.asarray(np.ones((3, 2), np.float32))
    layer(x)
    layer.backward(dy)
    first = host(layer.weight.grad).copy()
    layer(x)
    layer.backward(dy)
    np.testing.assert_allclose(host(layer.weight.grad), 2 * first)
    layer.zero_grad()
    assert layer.weight.grad is None


def test_backward_without_forward_is_a_clear_error(backend):
    model = nnx.Sequential(nnx.Linear(2, 3), nnx.ReLU())
    with pytest.raises(RuntimeError, match="without a forward pass"):
        model.backward(nnx.asarray(np.ones((1, 3), np.float32)))
    model.eval()
    model(nnx.asarray(np.ones((1, 2), np.float32)))
    with pytest.raises(RuntimeError, match="eval mode"):
        model.backward(nnx.asarray(np.ones((1, 3), np.float32)))


def test_eval_mode_keeps_nothing(backend):
    model = nnx.Sequential(nnx.Linear(2, 3), nnx.Tanh())
    model.eval()
    model(nnx.asarray(np.ones((4, 2), np.float32)))
    assert model[0]._saved is None and model[1]._saved is None
    model.train()
    assert model[0].training and model[1].training


def test_requires_input_grad_false_skips_first_input_gradient(backend):
    model = nnx.Sequential(nnx.Linear(2, 3), nnx.ReLU(), nnx.Linear(3, 1))
    x = nnx.asarray(np.ones((4, 2), np.float32))
    model(x)
    assert model.backward(nnx.asarray(np.ones((4, 1), np.float32))) is not None
    full = host(model[0].weight.grad).copy()
    model.zero_grad()
    model.requires_input_grad = False
    model(x)
    assert model.backward(nnx.asarray(np.ones((4, 1), np.float32))) is None
    np.testing.assert_allclose(host(model[0].weight.grad), full)


def test_same_seed_same_weights_on_every_backend(backend):
    nnx.manual_seed(42)
    here = nnx.Sequential(nnx.Linear(5, 4), nnx.ReLU(), nnx.Linear(4, 2)).state_dict()
    nnx.manual_seed(42)
    with nnx.using("numpy"):
        reference = nnx.Sequential(nnx.Linear(5, 4), nnx.ReLU(), nnx.Linear(4, 2)).state_dict()
    for name, value in reference.items():
        np.testing.assert_array_equal(host(here[name]), value)


def test_to_round_trip_moves_parameters_and_grads(backend):
    with nnx.using("numpy"):
        model = nnx.Sequential(nnx.Linear(3, 4), nnx.Tanh(), nnx.Linear(4, 2))
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    before = host(model(x))
    model.backward(np.ones((5, 2), np.float32))
    grad = host(model[0].weight.grad).copy()
    model.to(backend)
    assert all(backend.owns(p.value) and backend.owns(p.grad) for p in model.parameters())
    # another library (or GPU) sums the 3 + 4 terms in its own order and has its own tanh
    bound = forward_bound(before, terms=3 + 4 + 2)
    assert_within(model(nnx.asarray(x)), before, bound, f"the model's output on {backend.spec}")
    model.to("numpy")
    np.testing.assert_array_equal(host(model[0].weight.grad), grad)
    np.testing.assert_array_equal(model(x), before)


def test_float32_end_to_end(backend):
    model = nnx.Sequential(nnx.Linear(3, 4), nnx.GELU(), nnx.Linear(4, 3))
    loss_fn = nnx.CrossEntropyLoss(label_smoothing=0.1)
    opt = nnx.optim.Adam(model.parameters())
    x = nnx.asarray(np.ones((2, 3)))
    y = nnx.asarray(np.array([0, 2]), dtype="int64")
    out = model(x)
    loss = loss_fn(out, y)
    model.backward(loss_fn.backward())
    opt.step()
    arrays = [out, loss]
    for p in model.parameters():
        arrays += [p.value, p.grad, *p.state.values()]
    assert {dtype_name(a) for a in arrays} == {"float32"}
    assert all(backend.owns(a) for a in arrays)


def test_state_dict_round_trip_and_shape_errors(backend):
    a = nnx.Sequential(nnx.Linear(3, 4), nnx.ReLU(), nnx.Linear(4, 2))
    b = nnx.Sequential(nnx.Linear(3, 4), nnx.ReLU(), nnx.Linear(4, 2))
    b.load_state_dict({k: host(v) for k, v in a.state_dict().items()})
    x = nnx.asarray(np.ones((1, 3), np.float32))
    np.testing.assert_array_equal(host(a(x)), host(b(x)))
    wrong = nnx.Sequential(nnx.Linear(3, 5), nnx.ReLU(), nnx.Linear(5, 2))
    with pytest.raises(ValueError, match=r"'0.weight'.*\(4, 3\).*\(5, 3\)"):
        wrong.load_state_dict(a.state_dict())
    with pytest.raises(KeyError, match="missing"):
        nnx.Sequential(nnx.Linear(3, 4)).load_state_dict(a.state_dict())


def test_repr_and_summary(backend):
    model = nnx.Sequential(nnx.Linear(784, 128), nnx.ReLU(), nnx.Linear(128, 10))
    assert "(0): Linear(784 -> 128)" in repr(model)
    text = model.summary((32, 784))
    assert "(32, 128)" in text and "(32, 10)" in text
    assert "100,480" in text and "Total params: 101,770" in text


def test_loaded_state_never_shares_memory(backend):
    a = nnx.Sequential(nnx.Linear(2, 2))
    b = nnx.Sequential(nnx.Linear(2, 2))
    b.load_state_dict(a.state_dict())
    before = host(a[0].weight.value).copy()
    opt = nnx.optim.SGD(b.parameters(), lr=1.0)
    b(nnx.asarray(np.ones((1, 2))))
    b.backward(nnx.asarray(np.ones((1, 2))))
    opt.step()  # updates b in place where arrays are writeable
    np.testing.assert_array_equal(host(a[0].weight.value), before)


def test_deepcopy_gives_an_independent_model_on_the_same_backend(backend):
    """copy.deepcopy(model), as for a best-model snapshot or an EMA copy in PyTorch."""
    import copy

    model = nnx.Sequential(
        nnx.Conv2d(1, 2, 3), nnx.BatchNorm2d(2), nnx.ReLU(), nnx.Flatten(), nnx.Linear(8, 3)
    )
    x = backend.asarray(np.random.default_rng(1).standard_normal((5, 1, 4, 4)).astype(np.float32))
    model(x)  # one training-mode forward: running statistics move off their start
    clone = copy.deepcopy(model)
    assert clone.backend is model.backend and clone.parameters()[0] is not model.parameters()[0]
    model.eval(), clone.eval()
    np.testing.assert_array_equal(nnx.to_numpy(clone(x)), nnx.to_numpy(model(x)))
    before = nnx.to_numpy(model(x))
    clone.train()
    opt = nnx.optim.SGD(clone.parameters(), lr=0.5)
    loss_fn = nnx.CrossEntropyLoss()
    loss_fn(clone(x), backend.asarray(np.arange(5) % 3, "int64"))
    clone.backward(loss_fn.backward())
    opt.step()  # trains the copy (and moves its running statistics) only
    np.testing.assert_array_equal(nnx.to_numpy(model(x)), before)
    clone.eval()
    assert not np.allclose(nnx.to_numpy(clone(x)), before)


@pytest.mark.parametrize("name", ["ReLU", "Sigmoid", "Tanh", "Softmax"])
def test_activations_whose_gradient_needs_only_the_output_do_not_hold_the_input(backend, name):
    """A large activation's input is freed after the forward (LeNet: 1.2 MB per ReLU)."""
    import gc
    import weakref

    layer = getattr(nnx, name)()
    x = backend.asarray(host((4, 6)) + 0.5)
    try:
        gone = weakref.ref(x)
    except TypeError:
        pytest.skip(f"{backend.name} arrays take no weak references")
    y = layer(x)
    del x
    gc.collect()
    assert gone() is None
    dy = backend.asarray(host((4, 6)) * 0.5)
    assert layer.backward(dy).shape == y.shape  # the backward still works from y alone

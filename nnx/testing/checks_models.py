"""Checks of nnx running on the backend: gradients, optimizers, kernels, training, checkpoints."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np  # host side only: reference values the backend under test must match

import nnx
from nnx import layers, losses, optim
from nnx.backend import Backend, describe, get_backend, manual_seed, to_numpy, using
from nnx.gradcheck import gradcheck
from nnx.layers.base import Layer
from nnx.parameter import Parameter
from nnx.testing.examples import LAYER_EXAMPLES, LOSS_EXAMPLES, OPTIMIZER_EXAMPLES, SEED
from nnx.testing.helpers import (
    Skip,
    _check,
    _copy,
    _equal,
    _has_float64,
    _host,
    _mlp,
    _model_arrays,
    _predict,
    _train,
)
from nnx.testing.tolerances import assert_within, forward_bound, ulp_bound


def _gradcheck_layer(name: str) -> Callable[[Backend], None]:
    def run(backend: Backend) -> None:
        if name not in LAYER_EXAMPLES:
            raise Skip(f"no example for {name} in nnx.testing.LAYER_EXAMPLES; add one")
        float64 = _has_float64(backend)
        opts = {} if float64 else {"dtype": "float32", "eps": 1e-2, "tolerance": 1e-2}
        for i, (make, shape) in enumerate(LAYER_EXAMPLES[name]):
            layer = make(layers)
            result = gradcheck(layer, _host(shape, SEED + i), seed=SEED, **opts)
            if not result.ok:
                raise AssertionError(f"example {i} ({layer.label()}): {result}")

    return run


def _gradcheck_loss(name: str) -> Callable[[Backend], None]:
    def run(backend: Backend) -> None:
        if name not in LOSS_EXAMPLES:
            raise Skip(f"no example for {name} in nnx.testing.LOSS_EXAMPLES; add one")
        float64 = _has_float64(backend)
        opts = {} if float64 else {"dtype": "float32", "eps": 1e-2, "tolerance": 1e-2}
        for i, (make, shape, target) in enumerate(LOSS_EXAMPLES[name]):
            fn = make()
            t = target(np.random.default_rng(SEED + i), shape)
            result = gradcheck(fn, _host(shape, SEED + i), t, seed=SEED, **opts)
            if not result.ok:
                raise AssertionError(f"example {i} ({fn!r}): {result}")

    return run


def _optim(config: str) -> Callable[[Backend], None]:
    cls_name, kwargs = OPTIMIZER_EXAMPLES[config]

    def steps(backend: Backend) -> list[list[np.ndarray]]:
        """Every parameter and state array after each of three steps."""
        params = [
            Parameter(backend.asarray(_host((3, 4), 1)), "w"),
            Parameter(backend.asarray(_host((4,), 2)), "b"),
        ]
        opt = getattr(optim, cls_name)(params, **kwargs)
        trajectory = []
        for step in range(3):
            for i, p in enumerate(params):
                p.grad = backend.asarray(_host(p.shape, 10 * step + i))
            opt.step()
            trajectory.append(
                [_copy(p.value) for p in params]
                + [_copy(v) for p in params for _, v in sorted(p.state.items())]
            )
        return trajectory

    def run(backend: Backend) -> None:
        got = steps(backend)[-1]
        with using("numpy") as ref:
            trajectory = steps(ref)
        want = trajectory[-1]
        if len(got) != len(want):
            raise AssertionError(f"{len(got) - 2} state arrays, numpy has {len(want) - 2}")
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            what = ["weight", "bias"][i] if i < 2 else f"state array {i - 2}"
            # each step rounds a few operations of the sizes of the arrays it reads and writes
            seen = [step[i] for step in trajectory]
            bound = ulp_bound(*seen, *np.diff(np.stack(seen), axis=0), ulps=8)
            assert_within(g, w, bound, f"{what} after 3 steps")

    return run


#: the fan-ins of the kit's small model (see helpers._mlp): Linear(6, 8), BatchNorm, Linear(8, 3)
_MLP_TERMS = 6 + 2 + 8


@_check("xor")
def _xor(backend: Backend) -> None:
    x = backend.asarray(np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32))
    t = np.array([[0], [1], [1], [0]], dtype=np.float32)
    model = layers.Sequential(layers.Linear(2, 8), layers.Tanh(), layers.Linear(8, 1))
    opt, loss_fn = optim.Adam(model.parameters(), lr=0.05), losses.BCEWithLogitsLoss()
    y = backend.asarray(t)
    for _ in range(500):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()
    pred = to_numpy(model.eval()(x)) > 0
    accuracy = float(np.mean(pred == (t > 0.5)))
    if accuracy < 1.0:
        raise AssertionError(
            f"XOR reached {accuracy:.0%} accuracy after 500 Adam steps (loss {float(to_numpy(loss)):.4f})"
        )


@_check("checkpoint")
def _checkpoint(backend: Backend) -> None:
    model = _mlp()
    opt = optim.Adam(model.parameters(), lr=0.01)
    _train(model, opt, backend, 3)
    pred = _predict(model, backend)
    saved = {name: _copy(a) for name, a in _model_arrays(model) if ".grad" not in name}
    with tempfile.TemporaryDirectory() as tmp, using("numpy") as ref:
        manual_seed(SEED + 1)  # different initial weights: loading must overwrite them all
        twin = _mlp()
        twin_opt = optim.Adam(twin.parameters(), lr=0.5)
        path = os.path.join(tmp, "model.npz")
        with using(backend):
            nnx.save(path, model, optimizer=opt, note="conformance")
        nnx.load(path, twin, optimizer=twin_opt)
        for name, a in _model_arrays(twin):
            if ".grad" in name:
                continue
            if not ref.owns(a):
                raise AssertionError(f"{name} was loaded as an {describe(a)}, not a numpy array")
            if name not in saved:
                raise AssertionError(f"{name} is in the loaded model only")
            _equal(a, saved[name], f"{name} loaded on numpy")
        if twin_opt.steps != opt.steps or twin_opt.lr != opt.lr:
            raise AssertionError(f"optimizer steps/lr {twin_opt.steps}/{twin_opt.lr} not restored")
        loaded = _predict(twin, ref)
        assert_within(loaded, pred, forward_bound(pred, _MLP_TERMS), "predictions loaded on numpy")


@_check("to_roundtrip")
def _to_roundtrip(backend: Backend) -> None:
    def trained() -> tuple[Layer, optim.Optimizer]:
        with using("numpy") as ref:
            manual_seed(SEED)
            model = _mlp()
            opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            _train(model, opt, ref, 2)
        return model, opt

    ref = get_backend("numpy")
    model, opt = trained()
    twin, twin_opt = trained()
    before = {name: _copy(a) for name, a in _model_arrays(model)}
    pred = _predict(model, ref)
    model.to(backend)
    moved = dict(_model_arrays(model))
    if set(moved) != set(before):
        raise AssertionError(f"to() changed the arrays: {sorted(set(moved) ^ set(before))}")
    for name, a in moved.items():
        if not backend.owns(a):
            raise AssertionError(f"after model.to({backend.spec!r}), {name} is an {describe(a)}")
        _equal(a, before[name], f"{name} after model.to({backend.spec!r})")
    if any(layer.backend is not backend for layer in model.layers()):
        raise AssertionError("some layers still name another backend after to()")
    bound = forward_bound(pred, _MLP_TERMS)
    assert_within(_predict(model, backend), pred, bound, f"predictions on {backend.spec}")
    model.to("numpy")
    for name, a in _model_arrays(model):
        _equal(a, before[name], f"{name} after the round trip to {backend.spec} and back")
    _equal(_predict(model, ref), pred, "predictions after the round trip")
    model.to(backend)  # training continues where it stopped, momentum included
    with using(backend):
        _train(model, opt, backend, 1)
    with using("numpy"):
        _train(twin, twin_opt, ref, 1)
    _compare_step(dict(_model_arrays(model)), dict(_model_arrays(twin)), backend, lr=0.1)


def _compare_step(got: dict[str, Any], want: dict[str, Any], backend: Backend, lr: float) -> None:
    """The model's arrays after a training step on ``backend`` against numpy's.

    A gradient is a sum over the batch and the layers above it; a gradient that cancels
    to nearly 0 (a bias before a BatchNorm) still carries the rounding of its terms, so
    every gradient is bounded at the scale of the model's largest one, and a weight or a
    momentum buffer by its own rounding plus ``lr`` (or 1) times that.
    """
    want = {k: to_numpy(v) for k, v in want.items()}
    largest_grad = max(
        (float(np.abs(v).max()) for k, v in want.items() if k.endswith(".grad")), default=0.0
    )
    grad_bound = ulp_bound(largest_grad, ulps=4 * (_MLP_TERMS + 10))
    for name, b in want.items():
        if name.endswith(".grad"):
            bound = grad_bound
        elif "state[" in name:
            bound = ulp_bound(b, ulps=4) + grad_bound
        elif name.endswith(("weight", "bias")):
            bound = ulp_bound(b, ulps=4) + lr * grad_bound
        else:  # a buffer (running statistics): means over the batch of 10
            bound = ulp_bound(np.full(b.shape, np.abs(b).max()), ulps=4 * (_MLP_TERMS + 10))
        assert_within(got[name], b, bound, f"{name} after one more step on {backend.spec}")

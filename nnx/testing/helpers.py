"""Shared pieces of the checks: host data, comparisons, the small models, the check registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np  # host side only: reference values the backend under test must match

from nnx import layers, losses, optim
from nnx.backend import Backend, to_numpy
from nnx.layers.base import Layer, dtype_name
from nnx.testing.examples import SEED


class Skip(Exception):
    """Raised by a check that does not apply to this backend or this nnx."""


def _host(shape: tuple[int, ...], seed: int = SEED) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _copy(x: Any) -> np.ndarray:
    """A host copy that later in-place updates of ``x`` cannot change."""
    return np.array(to_numpy(x), copy=True)


def _equal(actual: Any, expected: Any, what: str) -> None:
    a, e = to_numpy(actual), to_numpy(expected)
    if a.dtype != e.dtype or a.shape != e.shape or not np.array_equal(a, e):
        raise AssertionError(
            f"{what} is not identical: {a.dtype}{a.shape} vs {e.dtype}{e.shape}, "
            f"max difference {float(np.max(np.abs(a - e))) if a.shape == e.shape else '-'}"
        )


def _has_float64(backend: Backend) -> bool:
    try:
        return dtype_name(backend.xp, backend.asarray(np.zeros(1), "float64").dtype) == "float64"
    except Exception:
        return False


def _mlp() -> Layer:
    """The small model of the checkpoint and to() checks."""
    return layers.Sequential(
        layers.Linear(6, 8), layers.BatchNorm1d(8), layers.ReLU(), layers.Linear(8, 3)
    )


def _train(model: Layer, opt: optim.Optimizer, backend: Backend, steps: int) -> Any:
    x = backend.asarray(_host((10, 6), 7))
    y = backend.asarray(np.random.default_rng(8).integers(0, 3, 10), "int64")
    loss_fn = losses.CrossEntropyLoss()
    loss = None
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()
    return loss


def _predict(model: Layer, backend: Backend) -> np.ndarray:
    was = model.training
    model.eval()
    try:
        return _copy(model(backend.asarray(_host((10, 6), 9))))
    finally:
        model.train(was)


def _model_arrays(model: Layer) -> Iterator[tuple[str, Any]]:
    """(name, array) for every parameter value, gradient, optimizer state and buffer."""
    for name, p in model.named_parameters():
        yield name, p.value
        if p.grad is not None:
            yield f"{name}.grad", p.grad
        for k, v in p.state.items():
            yield f"{name}.state[{k!r}]", v
    for name, owner, attr in model.named_buffers():
        yield name, getattr(owner, attr)


# -- the checks ---------------------------------------------------------------------------------

_STATIC: dict[str, Callable[[Backend], None]] = {}


def _check(name: str) -> Callable:
    def register(fn: Callable[[Backend], None]) -> Callable[[Backend], None]:
        _STATIC[name] = fn
        return fn

    return register

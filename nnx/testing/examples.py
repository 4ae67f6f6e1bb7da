"""The example tables the conformance kit and nnx's own tests use: one row per layer/loss/optimizer.

A layer, loss or optimizer that nnx exports without a row here is reported as
skipped by the kit, and tests/test_conformance.py fails until the row is added.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nnx import layers, losses, optim
from nnx.layers.base import Layer

SEED = 1234

# name in nnx.layers -> (constructor(nnx) -> Layer, input shape), one or more per layer.
# A layer that exists in nnx.layers.__all__ but has no row here is reported as skipped
# (and tests/test_conformance.py fails until the row is added).


def _batch_outer(layer: Any) -> Any:
    layer.batch_layout = "outer"  # the window layout NumPy picks for wide outputs
    return layer


LAYER_EXAMPLES: dict[str, list[tuple[Callable[[Any], Layer], tuple[int, ...]]]] = {
    "Identity": [(lambda m: m.Identity(), (3, 4))],
    "ReLU": [(lambda m: m.ReLU(), (3, 4))],
    "LeakyReLU": [(lambda m: m.LeakyReLU(0.1), (3, 4))],
    "Sigmoid": [(lambda m: m.Sigmoid(), (3, 4))],
    "Tanh": [(lambda m: m.Tanh(), (3, 4))],
    "GELU": [(lambda m: m.GELU(), (3, 4))],
    "Softmax": [(lambda m: m.Softmax(), (3, 4)), (lambda m: m.Softmax(axis=0), (3, 4))],
    "Linear": [(lambda m: m.Linear(4, 3), (5, 4)), (lambda m: m.Linear(4, 2, bias=False), (3, 4))],
    "Sequential": [(lambda m: m.Sequential(m.Linear(4, 5), m.Tanh(), m.Linear(5, 3)), (2, 4))],
    "Flatten": [(lambda m: m.Flatten(), (2, 3, 2, 2)), (lambda m: m.Flatten(), (2, 2, 3, 2))],
    "Dropout": [(lambda m: m.Dropout(0.5), (4, 6)), (lambda m: m.Dropout(0.4), (3, 2, 2, 3))],
    "BatchNorm1d": [
        (lambda m: m.BatchNorm1d(4), (6, 4)),
        (lambda m: m.BatchNorm1d(3), (5, 3)),
        (lambda m: m.BatchNorm1d(2), (3, 2, 4)),
    ],
    "BatchNorm2d": [
        (lambda m: m.BatchNorm2d(3), (4, 3, 3, 3)),
        (lambda m: m.BatchNorm2d(2), (3, 2, 3, 2)),
        (lambda m: m.BatchNorm2d(2, affine=False), (3, 2, 2, 2)),
    ],
    "Conv2d": [
        (lambda m: m.Conv2d(2, 3, 3, padding=1), (2, 2, 5, 5)),
        (lambda m: m.Conv2d(2, 2, (3, 2), stride=2), (2, 2, 5, 6)),
        (lambda m: m.Conv2d(2, 3, 3, stride=2, padding=1), (2, 2, 5, 4)),
        (lambda m: m.Conv2d(1, 2, (2, 3), bias=False), (2, 1, 4, 5)),
        (lambda m: m.Conv2d(2, 2, 2, stride=(1, 2), padding=(0, 1)), (1, 2, 3, 4)),
        (lambda m: _batch_outer(m.Conv2d(2, 2, 3, stride=2, padding=1)), (2, 2, 4, 5)),
    ],
    "MaxPool2d": [
        (lambda m: m.MaxPool2d(2), (2, 2, 4, 4)),
        (lambda m: m.MaxPool2d(2), (2, 2, 5, 4)),
        (lambda m: m.MaxPool2d(3, stride=2, padding=1), (2, 2, 5, 4)),
    ],
    "AvgPool2d": [
        (lambda m: m.AvgPool2d(2), (2, 2, 4, 4)),
        (lambda m: m.AvgPool2d(2), (2, 2, 5, 4)),
        (lambda m: m.AvgPool2d(3, stride=2, padding=1), (2, 2, 5, 4)),
    ],
}


def layer_example_ids() -> list[str]:
    """ "Conv2d#3", ...: one id per row of LAYER_EXAMPLES (for pytest parametrisation)."""
    return [f"{name}#{i}" for name, rows in LAYER_EXAMPLES.items() for i in range(len(rows))]


def layer_example(example_id: str) -> tuple[Callable[[Any], Layer], tuple[int, ...]]:
    """The (constructor, input shape) row named by :func:`layer_example_ids`."""
    name, _, i = example_id.partition("#")
    return LAYER_EXAMPLES[name][int(i)]


# name in nnx.losses -> (constructor, prediction shape, target maker(rng, shape))
LOSS_EXAMPLES: dict[str, list[tuple[Callable[[], Any], tuple[int, ...], Callable]]] = {
    "MSELoss": [
        (lambda: losses.MSELoss(), (4, 3), lambda r, s: r.standard_normal(s)),
        (lambda: losses.MSELoss("sum"), (4, 3), lambda r, s: r.standard_normal(s)),
    ],
    "BCEWithLogitsLoss": [
        (lambda: losses.BCEWithLogitsLoss(), (4, 3), lambda r, s: r.random(s)),
        (lambda: losses.BCEWithLogitsLoss("sum"), (4, 1), lambda r, s: r.integers(0, 2, s) * 1.0),
    ],
    "CrossEntropyLoss": [
        (lambda: losses.CrossEntropyLoss(), (5, 4), lambda r, s: r.integers(0, s[1], s[0])),
        (
            lambda: losses.CrossEntropyLoss("sum", label_smoothing=0.1),
            (5, 4),
            lambda r, s: r.integers(0, s[1], s[0]),
        ),
    ],
}

# check name -> (class name in nnx.optim, keyword arguments)
OPTIMIZER_EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "SGD": ("SGD", {"lr": 0.1}),
    "SGD(momentum)": ("SGD", {"lr": 0.1, "momentum": 0.9}),
    "SGD(nesterov)": ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    "SGD(weight_decay)": ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.05}),
    "Adam": ("Adam", {"lr": 0.01}),
    "Adam(weight_decay)": ("Adam", {"lr": 0.01, "weight_decay": 0.05}),
    "AdamW": ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    "RMSprop": ("RMSprop", {"lr": 0.01}),
    "RMSprop(momentum)": ("RMSprop", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01}),
}


def layer_classes() -> dict[str, type]:
    """Every concrete layer class exported by ``nnx.layers`` (name -> class)."""
    out = {}
    for name in layers.__all__:
        obj = getattr(layers, name, None)
        if isinstance(obj, type) and issubclass(obj, Layer) and obj is not Layer:
            out[name] = obj
    return out


def loss_classes() -> dict[str, type]:
    """Every concrete loss class in ``nnx.losses``."""
    return {
        name: obj
        for name, obj in vars(losses).items()
        if isinstance(obj, type) and issubclass(obj, losses.Loss) and obj is not losses.Loss
    }


def optimizer_classes() -> dict[str, type]:
    """Every concrete optimizer class in ``nnx.optim``."""
    return {
        name: obj
        for name, obj in vars(optim).items()
        if isinstance(obj, type) and issubclass(obj, optim.Optimizer) and obj is not optim.Optimizer
    }


# -- the report ------------------------------------------------------------------------------

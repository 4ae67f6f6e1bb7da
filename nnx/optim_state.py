"""Checking an optimizer state (from a checkpoint or a user) before any of it is applied."""

from __future__ import annotations

import math
from typing import Any

from nnx.backend import to_numpy

__all__ = ["check_hyperparameter", "check_optimizer_state"]


def check_hyperparameter(name: str, value: Any, current: Any) -> None:
    """Raise ValueError unless ``value`` is a valid setting ``name`` (``current``: its type)."""

    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    if isinstance(current, bool):
        ok = isinstance(value, bool)
    elif isinstance(current, tuple | list):
        ok = isinstance(value, list | tuple) and len(value) == len(current)
        ok = ok and all(number(v) and 0.0 <= v < 1.0 for v in value)
    elif number(current):
        low, high, low_open = _RANGES.get(name, (-math.inf, math.inf, False))
        ok = number(value) and (value > low if low_open else value >= low) and value <= high
    else:
        ok = type(value) is type(current)
    if not ok:
        raise ValueError(f"hyperparameter {name}={value!r} is out of range or of the wrong type")


# name -> (lowest, highest, lowest excluded)
_RANGES = {
    "lr": (0.0, math.inf, False),  # 0: where a schedule ends
    "eps": (0.0, math.inf, True),
    "momentum": (0.0, math.inf, False),
    "weight_decay": (0.0, math.inf, False),
    "alpha": (0.0, 1.0, False),
}


def check_optimizer_state(optimizer: Any, state: Any) -> None:
    """Raise ValueError naming the problem if ``state`` does not fit ``optimizer``."""
    if not isinstance(state, dict):
        raise ValueError(f"optimizer state must be a dict, got {type(state).__name__}")
    if state.get("type") != type(optimizer).__name__:
        raise ValueError(f"state is for {state.get('type')}, not {type(optimizer).__name__}")
    steps = state.get("steps")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"step count must be an integer >= 0, got {steps!r}")
    hyper = state.get("hyperparameters")
    own = optimizer.hyperparameters()
    if not isinstance(hyper, dict) or set(hyper) != set(own):
        found = sorted(hyper) if isinstance(hyper, dict) else hyper
        raise ValueError(f"hyperparameters must be exactly {sorted(own)}, got {found}")
    for name, value in hyper.items():
        check_hyperparameter(name, value, own[name])
    per_param = state.get("state")
    if not isinstance(per_param, list) or len(per_param) != len(optimizer.params):
        count = len(per_param) if isinstance(per_param, list) else per_param
        raise ValueError(f"state has {count} parameters, this optimizer {len(optimizer.params)}")
    for i, (p, saved) in enumerate(zip(optimizer.params, per_param, strict=True)):
        if not isinstance(saved, dict):
            raise ValueError(f"parameter {i}: state must be a dict, got {type(saved).__name__}")
        unknown = set(saved) - set(optimizer.state_names)
        if unknown:
            raise ValueError(
                f"parameter {i}: unknown state {sorted(unknown)} for {type(optimizer).__name__} "
                f"(it keeps {list(optimizer.state_names)})"
            )
        for k, v in saved.items():
            host = to_numpy(v)
            if tuple(host.shape) != tuple(p.shape) or host.dtype.kind != "f":
                raise ValueError(
                    f"parameter {i}: state {k!r} is {host.dtype} {tuple(host.shape)}, "
                    f"expected floating {tuple(p.shape)}"
                )

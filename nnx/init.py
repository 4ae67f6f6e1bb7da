"""Weight initialisers drawn from one seeded host generator.

Drawing on the host and copying once means the same seed gives bit-identical
initial weights on every backend (the array API has no random module).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

#: an initialiser: ``(shape, fan_in, fan_out) -> float32 host array``
Initialiser = Callable[[tuple[int, ...], int, int], np.ndarray]

_host = np.random.default_rng()


def seed(value: int) -> None:
    """Reseed the host generator used for every initial weight."""
    global _host
    _host = np.random.default_rng(value)


def generator() -> np.random.Generator:
    """The host generator used for initial weights."""
    return _host


def he_uniform(shape: tuple[int, ...], fan_in: int, fan_out: int = 0) -> np.ndarray:
    """He/Kaiming uniform, gain sqrt(2) (for ReLU): U(-b, b), b = sqrt(6 / fan_in)."""
    bound = math.sqrt(6.0 / fan_in)
    return _host.uniform(-bound, bound, size=shape).astype(np.float32)


def he_normal(shape: tuple[int, ...], fan_in: int, fan_out: int = 0) -> np.ndarray:
    """He/Kaiming normal: N(0, 2 / fan_in)."""
    return (_host.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)


def glorot_uniform(shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    """Glorot/Xavier uniform: U(-b, b), b = sqrt(6 / (fan_in + fan_out))."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return _host.uniform(-bound, bound, size=shape).astype(np.float32)


def glorot_normal(shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    """Glorot/Xavier normal: N(0, 2 / (fan_in + fan_out))."""
    return (_host.standard_normal(shape) * math.sqrt(2.0 / (fan_in + fan_out))).astype(np.float32)


def bias_uniform(shape: tuple[int, ...], fan_in: int, fan_out: int = 0) -> np.ndarray:
    """PyTorch's default bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return _host.uniform(-bound, bound, size=shape).astype(np.float32)


INITIALISERS: dict[str, Initialiser] = {
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
}


def zeros(shape: tuple[int, ...]) -> np.ndarray:
    """Zeros (the default bias)."""
    return np.zeros(shape, dtype=np.float32)


def draw(
    initialiser: Initialiser | str, shape: tuple[int, ...], fan_in: int, fan_out: int
) -> np.ndarray:
    """Initial weights of ``shape``: ``initialiser`` is a name in INITIALISERS or a callable
    ``(shape, fan_in, fan_out)``."""
    if isinstance(initialiser, str):
        if initialiser not in INITIALISERS:
            raise ValueError(
                f"unknown initialiser {initialiser!r}; choose one of {sorted(INITIALISERS)} "
                "or pass a callable (shape, fan_in, fan_out)"
            )
        initialiser = INITIALISERS[initialiser]
    elif not callable(initialiser):
        raise TypeError(
            f"an initialiser is a name or a callable (shape, fan_in, fan_out), got {initialiser!r}"
        )
    return initialiser(shape, fan_in, fan_out)


def standard_normal(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Float64 standard normal samples from a fresh generator (for checks, not weights)."""
    return np.random.default_rng(seed).standard_normal(shape)

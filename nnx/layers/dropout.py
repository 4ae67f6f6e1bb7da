"""Dropout: inverted dropout with masks from the backend's seeded generator."""

from __future__ import annotations

from typing import Any

from nnx.layers.base import Layer

_IDENTITY = object()  # what forward keeps when it passed the input through unchanged


class Dropout(Layer):
    """Zero each element with probability ``p`` in training, scaling the rest by 1 / (1 - p).

    Identity in eval mode.  The mask comes from ``self.backend.generator`` (read
    at call time, so ``nnx.manual_seed`` makes masks reproducible).
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout probability p must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: Any) -> Any:
        if not self.training:
            self.clear()
            return x
        if self.p == 0.0:
            self.save_for_backward(_IDENTITY)
            return x
        xp = self.xp
        u = self.backend.generator.uniform(tuple(x.shape), x.dtype)
        mask = xp.astype(u >= self.p, x.dtype) * (1.0 / (1.0 - self.p))
        self.save_for_backward(mask)
        return x * mask

    def backward(self, dy: Any) -> Any:
        (mask,) = self.saved()
        if not self.requires_input_grad:
            return None
        return dy if mask is _IDENTITY else dy * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"

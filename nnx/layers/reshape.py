"""Flatten: (N, d1, d2, ...) -> (N, d1 * d2 * ...)."""

from __future__ import annotations

import math
from typing import Any

from nnx.layers.base import Layer


class Flatten(Layer):
    """Merge dimensions ``start_dim`` .. ``end_dim`` into one (default: all but the batch)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Any) -> Any:
        shape = tuple(x.shape)
        nd = len(shape)
        if not (-nd <= self.start_dim < nd and -nd <= self.end_dim < nd):
            raise ValueError(f"{self.label()} cannot flatten an input of shape {shape}")
        start, end = self.start_dim % nd, self.end_dim % nd
        if start > end:
            raise ValueError(
                f"{self.label()}: start_dim {self.start_dim} comes after end_dim "
                f"{self.end_dim} for an input of shape {shape}"
            )
        merged = math.prod(shape[start : end + 1])
        self.save_for_backward(shape)
        return self.xp.reshape(x, (*shape[:start], merged, *shape[end + 1 :]))

    def backward(self, dy: Any) -> Any:
        (shape,) = self.saved()
        return self.xp.reshape(dy, shape) if self.requires_input_grad else None

    def extra_repr(self) -> str:
        if (self.start_dim, self.end_dim) == (1, -1):
            return ""
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

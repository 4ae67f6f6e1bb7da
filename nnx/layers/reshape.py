"""Flatten: (N, d1, d2, ...) -> (N, d1 * d2 * ...)."""

from __future__ import annotations

from typing import Any

from nnx.layers.base import Layer


class Flatten(Layer):
    """Merge dimensions ``start_dim`` .. ``end_dim`` into one (default: all but the batch)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim
        self._shape: tuple[int, ...] | None = None

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
        merged = 1
        for d in shape[start : end + 1]:
            merged *= d
        self._shape = shape if self.training else None
        return self.xp.reshape(x, (*shape[:start], merged, *shape[end + 1 :]))

    def backward(self, dy: Any) -> Any:
        if self._shape is None:
            raise self._no_forward()
        return self.xp.reshape(dy, self._shape) if self.requires_input_grad else None

    def clear(self) -> None:
        self._shape = None

    def extra_repr(self) -> str:
        if (self.start_dim, self.end_dim) == (1, -1):
            return ""
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

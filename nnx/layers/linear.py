"""Linear: y = x @ W.T + b (weights stored (out, in), as in PyTorch)."""

from __future__ import annotations

from typing import Any

import array_api_compat

from nnx import init
from nnx.layers.base import Layer, Parameter


class Linear(Layer):
    """Fully connected layer; ``init_name`` is "he_uniform" (default), "he_normal" or "glorot_*"."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, init_name: str = "he_uniform"
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        w = init.draw(init_name, (out_features, in_features), in_features, out_features)
        self.weight = Parameter(self.backend.asarray(w), "weight")
        zeros = init.zeros((out_features,))
        self.bias = Parameter(self.backend.asarray(zeros), "bias") if bias else None
        self._x: Any = None
        self._ones: Any = None  # (1, N) ones: the bias gradient as a product

    def forward(self, x: Any) -> Any:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"{self.label()} expects inputs of shape (N, {self.in_features}), "
                f"got {tuple(x.shape)}"
            )
        self._x = x if self.training else None
        y = x @ self.weight.value.T
        if self.bias is not None:
            y += self.bias.value
        return y

    def backward(self, dy: Any) -> Any:
        x = self._x
        if x is None:
            raise self._no_forward()
        self.weight.accumulate(dy.T @ x)
        if self.bias is not None:
            self.bias.accumulate(self._column_sums(dy))
        return dy @ self.weight.value if self.requires_input_grad else None

    def _column_sums(self, dy: Any) -> Any:
        """sum(dy, axis=0), spelled ones(1, N) @ dy: one BLAS call, 2-3x faster than the
        reduction on NumPy for small and mid-sized batches."""
        ones, n = self._ones, dy.shape[0]
        if ones is None or ones.shape[1] != n or ones.dtype != dy.dtype:
            device = array_api_compat.device(dy)
            ones = self._ones = self.xp.ones((1, n), dtype=dy.dtype, device=device)
        return (ones @ dy)[0, :]

    def clear(self) -> None:
        self._x = None
        self._ones = None

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}" + ("" if self.bias else ", bias=False")

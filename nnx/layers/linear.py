"""Linear: y = x @ W.T + b (weights stored (out, in), as in PyTorch)."""

from __future__ import annotations

from typing import Any

from nnx import init
from nnx.layers.base import Layer, Parameter
from nnx.window import count


class Linear(Layer):
    """Fully connected layer.

    ``init_name`` is an initialiser's name ("he_uniform", the default, "he_normal",
    "glorot_*") or any callable ``(shape, fan_in, fan_out) -> host array``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init_name: init.Initialiser | str = "he_uniform",
    ) -> None:
        super().__init__()
        in_features = count(in_features, "Linear in_features")
        out_features = count(out_features, "Linear out_features")
        self.in_features, self.out_features = in_features, out_features
        w = init.draw(init_name, (out_features, in_features), in_features, out_features)
        self.weight = Parameter(self.backend.asarray(w), "weight")
        zeros = init.zeros((out_features,))
        self.bias = Parameter(self.backend.asarray(zeros), "bias") if bias else None

    def forward(self, x: Any) -> Any:
        y = self.product(x)
        if self.bias is not None:
            y += self.bias.value
        return y

    def product(self, x: Any) -> Any:
        """``x @ W.T`` without the bias, keeping ``x`` for backward (the forward's first half)."""
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"{self.label()} expects inputs of shape (N, {self.in_features}), "
                f"got {tuple(x.shape)}"
            )
        self.save_for_backward(x)
        return x @ self.weight.value.T

    def backward(self, dy: Any) -> Any:
        bias_grad = None if self.bias is None else self.ops.sum_axis0(dy)
        return self.gradients(dy, bias_grad)

    def gradients(self, dy: Any, bias_grad: Any) -> Any:
        """Accumulate the weight gradient (and ``bias_grad``, the column sums of ``dy``, when
        there is a bias) and return the input gradient: backward with its bias sum given."""
        (x,) = self.saved()
        self.weight.accumulate(dy.T @ x)
        if self.bias is not None:
            self.bias.accumulate(bias_grad)
        return dy @ self.weight.value if self.requires_input_grad else None

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}" + ("" if self.bias else ", bias=False")

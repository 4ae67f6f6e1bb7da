"""Elementwise activations and Softmax, each with its explicit backward."""

from __future__ import annotations

import math
from typing import Any

from nnx.layers.base import Layer


class Activation(Layer):
    """An elementwise function; subclasses define ``fn`` and ``grad`` (from x and y)."""

    #: whether ``grad`` reads the input; those that need only the output set this False,
    #: so the input (often a large activation) is not held until the backward pass
    needs_input = True

    def forward(self, x: Any) -> Any:
        y = self.fn(x)
        self.save_for_backward(x if self.needs_input else None, y)
        return y

    def backward(self, dy: Any) -> Any:
        x, y = self.saved()
        return self.grad(dy, x, y)

    def fn(self, x: Any) -> Any:
        """The function itself."""
        raise NotImplementedError

    def grad(self, dy: Any, x: Any, y: Any) -> Any:
        """dy * f'(x), given the forward's input and output."""
        raise NotImplementedError


class Identity(Activation):
    """y = x."""

    needs_input = False

    def fn(self, x: Any) -> Any:
        return x

    def grad(self, dy: Any, x: Any, y: Any) -> Any:
        return dy


class ReLU(Activation):
    """y = max(x, 0)."""

    needs_input = False

    def fn(self, x: Any) -> Any:
        return self.ops.relu(x)

    def grad(self, dy: Any, x: Any, y: Any) -> Any:
        return self.ops.relu_backward(dy, y)


class LeakyReLU(Activation):
    """y = x for x > 0, else slope * x."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def fn(self, x: Any) -> Any:
        return self.xp.where(x > 0, x, x * self.negative_slope)

    def grad(self, dy: Any, x: Any, y: Any) -> Any:
        return self.xp.where(x > 0, dy, dy * self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Activation):
    """y = 1 / (1 + exp(-x)), computed as (1 + tanh(x / 2)) / 2: no overflow."""

    needs_input = False

    def fn(self, x: Any) -> Any:
        return 0.5 * self.xp.tanh(0.5 * x) + 0.5

    def grad(self, dy: Any, x: Any, y: Any) -> Any:
        return dy * y * (1.0 - y)


class Tanh(Activation):
    """y = tanh(x)."""

    needs_input = False

    def fn(self, x: Any) -> Any:
        return self.xp.tanh(x)

    def grad(self, dy: Any, x: Any, y: Any) -> Any:
        return dy * (1.0 - y * y)


_GELU_C = math.sqrt(2.0 / math.pi)


class GELU(Activation):
    """GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

    The array API has no ``erf``, so nnx uses the tanh approximation (PyTorch's
    ``approximate="tanh"``); it differs from the exact form by < 1e-3.
    """

    def fn(self, x: Any) -> Any:
        return 0.5 * x * (1.0 + self.xp.tanh(_GELU_C * (x + 0.044715 * x * x * x)))

    def grad(self, dy: Any, x: Any, y: Any) -> Any:
        t = self.xp.tanh(_GELU_C * (x + 0.044715 * x * x * x))
        dt = (1.0 - t * t) * _GELU_C * (1.0 + 3 * 0.044715 * x * x)
        return dy * (0.5 * (1.0 + t) + 0.5 * x * dt)


class Softmax(Activation):
    """Softmax along ``axis`` (shifted by the max: no overflow)."""

    needs_input = False

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = axis

    def fn(self, x: Any) -> Any:
        e = self.xp.exp(x - self.xp.max(x, axis=self.axis, keepdims=True))
        return e / self.xp.sum(e, axis=self.axis, keepdims=True)

    def grad(self, dy: Any, x: Any, y: Any) -> Any:
        return y * (dy - self.xp.sum(dy * y, axis=self.axis, keepdims=True))

    def extra_repr(self) -> str:
        return f"axis={self.axis}"

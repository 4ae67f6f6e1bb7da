"""Batch normalisation (PyTorch semantics): BatchNorm1d on (N, C) or (N, C, L), BatchNorm2d on NCHW.

Training normalises with the batch mean and the *biased* batch variance and
updates the running statistics with the *unbiased* variance:
``running = (1 - momentum) * running + momentum * batch``.  Evaluation
normalises with the running statistics.  ``running_mean`` / ``running_var`` are
buffers: saved by ``state_dict`` and moved by ``to()``.
"""

from __future__ import annotations

import math
from typing import Any

from nnx import init
from nnx.layers.base import Layer, Parameter

_SHAPES = {2: "(N, C)", 3: "(N, C, L)", 4: "(N, C, H, W)"}


class _BatchNorm(Layer):
    """Normalise each channel (axis 1) over every other axis."""

    ndims: tuple[int, ...] = ()

    def __init__(
        self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True
    ) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"{type(self).__name__} needs num_features >= 1, got {num_features}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1], got {momentum}")
        if eps <= 0:
            raise ValueError(f"{type(self).__name__}: eps must be > 0, got {eps}")
        self.num_features, self.eps = num_features, eps
        self.momentum, self.affine = momentum, affine
        zeros = init.zeros((num_features,))
        self.weight = Parameter(self.backend.asarray(zeros + 1.0), "weight") if affine else None
        self.bias = Parameter(self.backend.asarray(zeros), "bias") if affine else None
        self.running_mean = self.backend.asarray(zeros)
        self.running_var = self.backend.asarray(zeros + 1.0)
        self._buffers = ["running_mean", "running_var"]

    def _axes(self, x: Any) -> tuple[int, ...]:
        if x.ndim not in self.ndims or x.shape[1] != self.num_features:
            want = " or ".join(_SHAPES[n] for n in self.ndims)
            raise ValueError(
                f"{self.label()} expects inputs of shape {want} with C = {self.num_features}, "
                f"got {tuple(x.shape)}"
            )
        return (0, *range(2, x.ndim))

    def _channel(self, v: Any, ndim: int) -> Any:
        """A (C,) vector shaped to broadcast along axis 1 of an ndim-dimensional input."""
        return self.xp.reshape(v, (1, self.num_features) + (1,) * (ndim - 2))

    def forward(self, x: Any) -> Any:
        xp = self.xp
        axes = self._axes(x)
        if self.training:
            count = _count(x.shape, axes)
            if count < 2:
                raise ValueError(
                    f"{self.label()} needs more than one value per channel in training mode, "
                    f"got input {tuple(x.shape)}"
                )
            mean = xp.mean(x, axis=axes, keepdims=True)
            centred = x - mean
            var = xp.mean(centred * centred, axis=axes, keepdims=True)
            inv_std = 1.0 / xp.sqrt(var + self.eps)
            m = self.momentum
            self.running_mean = (1.0 - m) * self.running_mean + m * xp.reshape(mean, (-1,))
            unbiased = xp.reshape(var, (-1,)) * (count / (count - 1))
            self.running_var = (1.0 - m) * self.running_var + m * unbiased
            xhat = centred * inv_std
            self.save_for_backward(xhat, inv_std)
        else:
            inv_std = 1.0 / xp.sqrt(self._channel(self.running_var, x.ndim) + self.eps)
            xhat = (x - self._channel(self.running_mean, x.ndim)) * inv_std
            self.clear()
        if not self.affine:
            return xhat
        return xhat * self._channel(self.weight.value, x.ndim) + self._channel(
            self.bias.value, x.ndim
        )

    def backward(self, dy: Any) -> Any:
        xhat, inv_std = self.saved()
        xp = self.xp
        axes = (0, *range(2, dy.ndim))
        sum_dy = xp.sum(dy, axis=axes, keepdims=True)
        sum_dy_xhat = xp.sum(dy * xhat, axis=axes, keepdims=True)
        if self.affine:
            self.weight.accumulate(xp.reshape(sum_dy_xhat, (-1,)))
            self.bias.accumulate(xp.reshape(sum_dy, (-1,)))
        if not self.requires_input_grad:
            return None
        count = _count(xhat.shape, axes)
        scale = inv_std
        if self.affine:
            scale = scale * self._channel(self.weight.value, dy.ndim)
        return (dy - sum_dy / count - xhat * (sum_dy_xhat / count)) * scale

    def extra_repr(self) -> str:
        text = f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
        return text + ("" if self.affine else ", affine=False")


def _count(shape: tuple[int, ...], axes: tuple[int, ...]) -> int:
    return math.prod(shape[a] for a in axes)


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs over the batch (and length)."""

    ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of NCHW inputs over batch, height and width, per channel."""

    ndims = (4,)

"""Losses: ``loss = loss_fn(pred, target)`` is a 0-d array; ``loss_fn.backward()`` is d loss / d pred."""

from __future__ import annotations

import math
from typing import Any

from nnx.backend import Backend, OwnerCache
from nnx.backend.ops import Ops

REDUCTIONS = ("mean", "sum")


class Loss:
    """Base class: checks the reduction and keeps what backward needs."""

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self._grad: Any = None
        self.backend: Backend | None = None
        self.ops: Ops | None = None
        self._owner = OwnerCache()
        self._count_shape: Any = None
        self._count = 1

    def namespace(self, pred: Any) -> Any:
        """The namespace of the backend owning ``pred``; binds ``self.backend``/``self.ops``.

        Losses find their backend the way optimizers do (``nnx.backend.OwnerCache``),
        since a loss holds no arrays of its own.
        """
        backend = self._owner.of(pred)
        if backend is None:
            raise TypeError(
                f"{type(self).__name__} expects predictions on a started nnx backend, got "
                f"{type(pred).__name__}; convert them with nnx.asarray(x)"
            )
        if backend is not self.backend:
            self.backend, self.ops = backend, backend.ops
        return backend.xp

    def __call__(self, pred: Any, target: Any) -> Any:
        return self.forward(pred, target)

    def forward(self, pred: Any, target: Any) -> Any:
        """The loss value as a 0-d array."""
        raise NotImplementedError

    def backward(self) -> Any:
        """d loss / d pred for the last forward."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before computing the loss")
        grad, self._grad = self._grad, None
        return grad

    def _divisor(self, x: Any) -> int:
        """Elements of ``x`` for reduction="mean" (1 for "sum"), cached per shape."""
        if self.reduction != "mean":
            return 1
        if x.shape != self._count_shape:
            self._count = math.prod(x.shape)
            self._count_shape = x.shape
        return self._count

    def _reduce(self, xp: Any, per_sample: Any, n: int) -> Any:
        total = xp.sum(per_sample)
        return total / n if self.reduction == "mean" else total

    def _check_same_shape(self, pred: Any, target: Any) -> None:
        if tuple(pred.shape) != tuple(target.shape):
            raise ValueError(
                f"{type(self).__name__}: prediction shape {tuple(pred.shape)} and target shape "
                f"{tuple(target.shape)} differ; reshape the target (e.g. y[:, None])"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class MSELoss(Loss):
    """Mean squared error over every element."""

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self.namespace(pred)
        self._check_same_shape(pred, target)
        diff = pred - target
        n = self._divisor(diff)
        self._grad = diff * (2.0 / n)
        return xp.sum(diff * diff) / n


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits: max(z, 0) - z y + log(1 + exp(-|z|)), stable at any z."""

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self.namespace(pred)
        self._check_same_shape(pred, target)
        n = self._divisor(pred)
        per = xp.maximum(pred, 0.0) - pred * target + xp.log1p(xp.exp(-xp.abs(pred)))
        sigmoid = 0.5 * xp.tanh(0.5 * pred) + 0.5
        self._grad = (sigmoid - target) * (1.0 / n)
        return xp.sum(per) / n


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy from logits (N, C) and integer class labels (N,).

    ``label_smoothing`` mixes the one-hot target with the uniform distribution,
    as in PyTorch.  The gradient is fused: (softmax - target) / N.
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__(reduction)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self._classes: Any = None
        self._label_dtype: Any = None  # last label dtype that passed the check

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self.namespace(pred)
        if pred.ndim != 2 or target.ndim != 1 or target.shape[0] != pred.shape[0]:
            raise ValueError(
                f"CrossEntropyLoss expects logits (N, C) and integer labels (N,), got "
                f"{tuple(pred.shape)} and {tuple(target.shape)}"
            )
        if target.dtype != self._label_dtype:  # checked once per dtype, not every step
            if xp.isdtype(target.dtype, "real floating"):
                raise TypeError(
                    "CrossEntropyLoss takes integer class labels, got floating targets; "
                    "convert with nnx.asarray(labels, dtype='int64')"
                )
            self._label_dtype = target.dtype
        n, c = pred.shape
        shifted = pred - xp.max(pred, axis=1, keepdims=True)
        exp = xp.exp(shifted)
        total = self.ops.sum_axis1(exp, keepdims=True)  # (N, 1)
        onehot = self._onehot(xp, target, c, pred)
        eps = self.label_smoothing
        if eps:
            onehot = onehot * (1.0 - eps) + eps / c
        scale = 1.0 / n if self.reduction == "mean" else 1.0
        grad = exp / total
        grad -= onehot
        if scale != 1.0:
            grad *= scale
        self._grad = grad
        # -sum(onehot * log_softmax) with log_softmax = shifted - log(total) and every row
        # of onehot summing to 1 (smoothed too): sum(log(total)) - sum(onehot * shifted)
        return (xp.sum(xp.log(total)) - xp.sum(onehot * shifted)) * scale

    def _onehot(self, xp: Any, target: Any, c: int, like: Any) -> Any:
        classes = self._classes
        if classes is None or classes.shape[1] != c or classes.device != target.device:
            classes = xp.reshape(xp.arange(c, dtype=target.dtype, device=target.device), (1, c))
            self._classes = classes
        elif classes.dtype != target.dtype:
            classes = self._classes = xp.astype(classes, target.dtype)
        return xp.astype(target[:, None] == classes, like.dtype)

    def __repr__(self) -> str:
        return (
            f"CrossEntropyLoss(reduction={self.reduction!r}, "
            f"label_smoothing={self.label_smoothing})"
        )

"""Losses: ``loss = loss_fn(pred, target)`` is a 0-d array; ``loss_fn.backward()`` is d loss / d pred."""

from __future__ import annotations

import math
from typing import Any

import array_api_compat

from nnx.backend import Backend, OwnerCache, to_numpy
from nnx.backend.ops import Ops

REDUCTIONS = ("mean", "sum")
LABEL_CHECKS = ("auto", "every_batch", "deferred")


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
        backend = self._owner.of(pred)
        scope = None if backend is None else backend.device_scope
        if scope is None:  # no device to make current (or no backend: forward says so)
            return self.forward(pred, target)
        with scope:  # CuPy: the gradient and the loss are made on pred's device
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
        self.namespace(pred)  # binds self.ops
        self._check_same_shape(pred, target)
        n = self._divisor(pred)
        total, self._grad = self.ops.bce_with_logits(pred, target, 1.0 / n)
        return total / n


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy from logits (N, C) and integer class labels (N,).

    ``label_smoothing`` mixes the one-hot target with the uniform distribution,
    as in PyTorch.  The gradient is fused: (softmax - target) / N.  A logit of
    ``-inf`` (a masked class) gives the finite loss PyTorch gives.

    Labels are checked: an integer dtype (else TypeError), and every label in
    ``[0, C)`` (else ValueError naming the value).  Where the range is checked
    (``check_labels``):

    - ``"auto"`` (default): labels in host memory (the backend's
      ``host_memory``: NumPy, array-api-strict, torch and JAX on the CPU) are
      checked every batch, and the error names the
      value and its position in the batch; labels on an accelerator (CuPy,
      torch/JAX on a GPU) are checked as ``"deferred"``, so that no step waits
      for the device;
    - ``"deferred"``: a device-side flag (with the smallest and largest label)
      is accumulated and read by :meth:`check_pending_labels`, which
      :func:`nnx.fit` calls where it already reads the loss (every
      ``log_every`` steps and at the end of an epoch).  ``fit`` also checks a
      DataLoader's host labels once, against the model's class count, before
      training (see :meth:`nnx.DataLoader.check_labels`), which names the
      offending sample on any device;
    - ``"every_batch"``: always the immediate check (a device sync per step).
    """

    def __init__(
        self, reduction: str = "mean", label_smoothing: float = 0.0, check_labels: str = "auto"
    ) -> None:
        super().__init__(reduction)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if check_labels not in LABEL_CHECKS:
            raise ValueError(f"check_labels must be one of {LABEL_CHECKS}, got {check_labels!r}")
        self.label_smoothing = label_smoothing
        self.check_labels = check_labels
        self._label_dtype: Any = None  # last label dtype that passed the check
        self._pending: tuple[Any, Any, int] | None = None  # deferred (lowest, highest, C)

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self.namespace(pred)
        if not array_api_compat.is_array_api_obj(target):
            raise TypeError(
                f"CrossEntropyLoss takes labels as an array on the logits' device, got "
                f"{type(target).__name__}; convert with nnx.asarray(labels, dtype='int64')"
            )
        if pred.ndim != 2 or target.ndim != 1 or target.shape[0] != pred.shape[0]:
            raise ValueError(
                f"CrossEntropyLoss expects logits (N, C) and integer labels (N,), got "
                f"{tuple(pred.shape)} and {tuple(target.shape)}"
            )
        # `is None` first: NumPy's float64 dtype compares equal to None
        if self._label_dtype is None or target.dtype != self._label_dtype:
            if not xp.isdtype(target.dtype, "integral"):
                raise TypeError(
                    f"CrossEntropyLoss takes integer class labels, got {target.dtype} targets; "
                    "convert with nnx.asarray(labels, dtype='int64')"
                )
            self._label_dtype = target.dtype
        n, c = pred.shape
        if n == 0:
            raise ValueError(
                "CrossEntropyLoss got an empty batch (N = 0); give at least one sample"
            )
        self._check_range(xp, target, c)
        scale = 1.0 / n if self.reduction == "mean" else 1.0
        loss, self._grad = self.ops.cross_entropy(pred, target, self.label_smoothing, scale)
        return loss

    def _check_range(self, xp: Any, target: Any, c: int) -> None:
        mode = self.check_labels
        if mode == "auto":
            mode = "every_batch" if self.backend.host_memory else "deferred"
        if mode == "every_batch":
            i = self.ops.first_bad_label(target, c)
            if i >= 0:
                host = to_numpy(target)
                raise ValueError(
                    f"label {int(host[i])} at position {i} of the batch is outside [0, {c}) "
                    f"(the model has {c} classes); labels must be 0 .. {c - 1}"
                )
            return
        low, high = xp.min(target), xp.max(target)  # stay on the device: no sync
        pending = self._pending
        if pending is not None and (pending[2] != c or not self.backend.owns(pending[0])):
            self.check_pending_labels()  # another class count or device: read it before mixing
            pending = None
        if pending is not None:
            low, high = xp.minimum(low, pending[0]), xp.maximum(high, pending[1])
        self._pending = (low, high, c)

    def check_pending_labels(self) -> None:
        """Read the deferred label check (one small device read); raise if a label was out of range."""
        if self._pending is None:
            return
        low, high, c = self._pending
        self._pending = None
        low, high = int(to_numpy(low)), int(to_numpy(high))
        if low < 0 or high >= c:
            value = low if low < 0 else high
            raise ValueError(
                f"label {value} is outside [0, {c}) (the model has {c} classes); labels must "
                f"be 0 .. {c - 1} (found in a batch since the last check: labels on an "
                "accelerator are checked every log_every steps)"
            )

    def __repr__(self) -> str:
        return (
            f"CrossEntropyLoss(reduction={self.reduction!r}, "
            f"label_smoothing={self.label_smoothing}, check_labels={self.check_labels!r})"
        )

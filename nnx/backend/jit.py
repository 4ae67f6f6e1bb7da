"""JitOps: the NumPy kernel table with numba loops where one pass beats several ufunc sweeps.

Installed with the ``nnx[jit]`` extra (numba); without it the NumPy backend uses
:class:`~nnx.backend.numpy.NumpyOps`, which stays complete and is tested on its
own.  ``NNX_JIT=0`` turns the loops off; ``NNX_JIT=1`` insists on them (an error
naming the extra if numba is missing).  The loops take C-contiguous float32 or
float64 NumPy arrays; anything else (views, other dtypes, subclasses) goes to the
NumPy kernels, as does work that nnx's own thread pool would split (the loops run on
the calling thread; ``nnx.set_num_threads(n)`` with n > 1 asks for the split).  They
give the portable defaults' results bit for bit, except col2im, the bias sums of the
ReLU backward, cross-entropy and BCE-with-logits, which sum in another order and take
exp/log from the C library (equal to rounding); the conformance kit checks every one
against the default.

What one pass buys (``python benchmarks/kernels.py`` times each kernel both ways;
docs/performance.md has the results): the SGD momentum step reads and writes each
array once instead of five sweeps with a temporary; the ReLU forward runs at the
speed of a copy (NumPy's ``maximum`` is NaN-aware and slower than a copy); the ReLU
backward skips building a 0/1 mask; a Linear's bias add and the ReLU after it are one
pass over the product, and their backward computes the mask and the bias sums in one
loop; col2im adds every window offset in one loop instead of kh*kw strided ufunc
calls; 2x2 max-pooling reads each input once and keeps a byte per window (where its
first maximum is) instead of four tiles; a convolution's output with the batch
outermost is copied into NCHW with its bias in one loop (with the batch innermost the
loop's strided writes lose to NumPy's copy); softmax cross-entropy computes the loss
and its gradient in one loop over the rows, as does BCE-with-logits, and the Adam
step is one loop instead of eleven NumPy calls: at the small sizes where these run
(an MLP's 128 x 10 logits, XOR's 4 x 1), NumPy's time is all per-call overhead.
Other pooling windows stay with NumPy: a loop over a window size known only at run
time does not vectorise in numba and was slower than NumPy's copies and ``maximum``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy

from nnx.backend.numpy import NumpyOps
from nnx.window import Pair, output_size

ENV = "NNX_JIT"
FLOATS = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))


def jit_status() -> tuple[bool, str]:
    """``(on, why)``: whether the NumPy backend runs the numba loops, and why (or why not)."""
    env = os.environ.get(ENV, "").strip().lower()
    if env in ("0", "false", "off", "no"):
        return False, f"{ENV}={env}"
    if env not in ("", "1", "true", "on", "yes"):
        raise ValueError(f"{ENV} must be 0 or 1, got {os.environ[ENV]!r}; unset it or set {ENV}=0")
    try:
        import numba

        from nnx.backend import jit_kernels  # noqa: F401  (decorating them can fail too)
    except Exception as err:  # not installed, or installed but unusable (e.g. a too-new NumPy)
        missing = isinstance(err, ModuleNotFoundError) and err.name == "numba"
        why = "numba is not installed" if missing else f"numba does not load: {err}"
        if env:
            raise ImportError(
                f"{ENV}={env} asks for nnx's numba kernels but {why}: "
                "pip install 'nnx[jit]' (or unset NNX_JIT)"
            ) from None
        return False, f"{why} (pip install 'nnx[jit]')"
    if numba.config.DISABLE_JIT:  # the loops would run as plain Python: far slower than NumPy
        return False, "NUMBA_DISABLE_JIT is set"
    return True, f"numba {numba.__version__}"


def numpy_ops_class() -> type[NumpyOps]:
    """JitOps when numba is installed and not turned off, else NumpyOps."""
    return JitOps if jit_status()[0] else NumpyOps


def _plain(*arrays: Any) -> bool:
    """Whether the loops take these arrays: NumPy, C-contiguous, all of one float dtype."""
    dtype = arrays[0].dtype
    if dtype not in FLOATS:
        return False
    for a in arrays:  # a loop, not all(...): this runs on every kernel call, tiny arrays too
        if type(a) is not numpy.ndarray or a.dtype != dtype or not a.flags.c_contiguous:
            return False
    return True


def _int_labels(labels: Any) -> bool:
    """Whether the loops take these class labels: a 1-D NumPy array of signed integers."""
    return type(labels) is numpy.ndarray and labels.dtype.kind == "i" and labels.ndim == 1


class JitOps(NumpyOps):
    """NumpyOps with numba loops for the kernels listed in the module docstring."""

    def __init__(self, xp: Any, device: Any = None) -> None:
        super().__init__(xp, device)
        from nnx.backend import jit_kernels  # imports numba: only when this table is made

        self.k = jit_kernels

    def momentum_step(
        self, value: Any, buf: Any, g: Any, momentum: Any, lr: float
    ) -> tuple[Any, Any]:
        """Both SGD-momentum sweeps in one loop (bit-identical to the NumPy kernels)."""
        if (
            not (_plain(value, buf, g) and value.shape == buf.shape == g.shape)
            or not (value.flags.writeable and buf.flags.writeable)
            or self._split(3 * value.size)
        ):
            return super().momentum_step(value, buf, g, momentum, lr)
        t = value.dtype.type
        self.k.momentum_step(value.reshape(-1), buf.reshape(-1), g.reshape(-1), t(momentum), t(lr))
        return value, buf

    def adam_step(
        self,
        value: Any,
        m: Any,
        v: Any,
        g: Any,
        betas: tuple[Any, Any, Any, Any],
        step_size: float,
        eps_hat: float,
    ) -> tuple[Any, Any, Any]:
        """The Adam step in one loop instead of eleven NumPy calls (bit-identical)."""
        arrays = (value, m, v, g)
        if not (
            _plain(*arrays)
            and value.shape == m.shape == v.shape == g.shape
            and value.flags.writeable
            and m.flags.writeable
            and v.flags.writeable
        ):
            return super().adam_step(value, m, v, g, betas, step_size, eps_hat)
        b1, c1, b2, c2 = (float(b) for b in betas)  # the loop rounds them to the arrays' dtype
        self.k.adam_step(*arrays, b1, c1, b2, c2, float(step_size), float(eps_hat))
        return value, m, v

    def relu(self, x: Any) -> Any:
        """``maximum(x, 0)`` in one loop (NumPy's NaN-aware ``maximum`` is slower than a copy)."""
        if not _plain(x) or self._split(x.size):
            return super().relu(x)
        out = numpy.empty(x.shape, dtype=x.dtype)
        self.k.relu(x.reshape(-1), out.reshape(-1))
        return out

    def relu_backward(self, dy: Any, y: Any) -> Any:
        """``dy * (y > 0)`` in one loop."""
        if not (_plain(dy, y) and dy.shape == y.shape) or self._split(dy.size):
            return super().relu_backward(dy, y)
        out = numpy.empty(dy.shape, dtype=dy.dtype)
        self.k.relu_backward(dy.reshape(-1), y.reshape(-1), out.reshape(-1))
        return out

    def bias_relu(self, y: Any, bias: Any) -> Any:
        """The bias add and the ReLU in one pass over ``y``, in place."""
        if (
            bias is None
            or not (_plain(y, bias) and y.ndim == 2 and bias.shape == (y.shape[1],))
            or not y.flags.writeable
            or self._split(y.size)
        ):
            return super().bias_relu(y, bias)
        self.k.bias_relu(y, bias)
        return y

    def relu_backward_sum0(self, dy: Any, y: Any) -> tuple[Any, Any]:
        """The ReLU backward and the column sums in one loop (sums equal to rounding)."""
        if not (_plain(dy, y) and dy.ndim == 2 and dy.shape == y.shape) or self._split(dy.size):
            return super().relu_backward_sum0(dy, y)
        out = numpy.empty(dy.shape, dtype=dy.dtype)
        total = numpy.empty(dy.shape[1], dtype=dy.dtype)
        self.k.relu_backward_sum0(dy, y, out, total)
        return out, total

    def cross_entropy(
        self, logits: Any, labels: Any, smoothing: float, scale: float
    ) -> tuple[Any, Any]:
        """Loss and gradient in one loop over the rows (to rounding, the portable result)."""
        if not (_int_labels(labels) and _plain(logits)):
            return super().cross_entropy(logits, labels, smoothing, scale)
        grad = numpy.empty(logits.shape, dtype=logits.dtype)
        loss = self.k.cross_entropy(logits, labels, float(smoothing), float(scale), grad)
        return numpy.asarray(loss, dtype=logits.dtype), grad

    def bce_with_logits(self, logits: Any, target: Any, scale: float) -> tuple[Any, Any]:
        """Loss and gradient in one loop instead of sixteen NumPy calls (to rounding)."""
        if not (_plain(logits, target) and logits.shape == target.shape):
            return super().bce_with_logits(logits, target, scale)
        grad = numpy.empty(logits.shape, dtype=logits.dtype)
        t = logits.dtype.type
        loss = self.k.bce_with_logits(logits, target, t(scale), grad)
        return numpy.asarray(loss, dtype=logits.dtype), grad

    def first_bad_label(self, labels: Any, c: int) -> int:
        """One loop over the labels instead of four NumPy calls (the loss's check every batch)."""
        if not _int_labels(labels):
            return super().first_bad_label(labels, c)
        return int(self.k.first_bad_label(labels, c))

    def maxpool_forward(self, x: Any, kernel: Pair, oh: int, ow: int) -> tuple[Any, Any]:
        """2x2 windows: the maximum and, as what the backward needs, the position of each
        window's first maximum (int8), in one loop; other windows: NumPy's tiles.

        Keeping a byte per window instead of the four tiles (the input's size again)
        saves writing them in the forward and re-reading them in the backward.
        """
        if kernel != (2, 2) or not _plain(x) or self._split(x.size):
            return super().maxpool_forward(x, kernel, oh, ow)
        n, c, h, w = x.shape
        if (h, w) != (2 * oh, 2 * ow):  # floor mode: the rows and columns no window covers go
            x = numpy.ascontiguousarray(x[:, :, : 2 * oh, : 2 * ow])
        first = numpy.empty((n, c, oh, ow), dtype=numpy.int8)
        y = numpy.empty((n, c, oh, ow), dtype=x.dtype)
        self.k.maxpool2x2_forward(x.reshape(-1), first.reshape(-1), y.reshape(-1), n * c * oh, ow)
        return first, y

    def maxpool_backward(
        self, saved: Any, y: Any, dy: Any, kernel: Pair, shape: tuple[int, ...]
    ) -> Any:
        """From :meth:`maxpool_forward`'s first-maximum positions: the input gradient in one
        loop, straight into ``dx``; from tiles (the NumPy forward's): NumPy's kernel."""
        if not (kernel == (2, 2) and saved.dtype == numpy.int8 and saved.shape == y.shape):
            return super().maxpool_backward(saved, y, dy, kernel, shape)
        if not _plain(dy):  # a view or another dtype: the loop on a contiguous copy
            grad = numpy.ascontiguousarray(dy, dtype=dy.dtype if dy.dtype in FLOATS else y.dtype)
            return self.maxpool_backward(saved, y, grad, kernel, shape).astype(dy.dtype)
        n, c, h, w = shape
        oh, ow = y.shape[2:]
        dx = numpy.empty((n, c, 2 * oh, 2 * ow), dtype=dy.dtype)
        self.k.maxpool2x2_backward(
            numpy.ascontiguousarray(saved).reshape(-1),
            dy.reshape(-1),
            dx.reshape(-1),
            n * c * oh,
            ow,
        )
        if (h, w) == (2 * oh, 2 * ow):
            return dx
        full = numpy.zeros(shape, dtype=dy.dtype)  # floor mode: uncovered rows get nothing
        full[:, :, : 2 * oh, : 2 * ow] = dx
        return full

    def conv_output(
        self, y: Any, bias: Any | None, shape: tuple[int, int, int, int], batch_last: bool
    ) -> Any:
        """Batch outermost with a bias: the copy into NCHW and the bias in one loop."""
        if batch_last or bias is None or not _plain(y, bias) or self._split(y.size):
            return super().conv_output(y, bias, shape, batch_last)  # batch innermost: strided
        n, c, h, w = shape
        out = numpy.empty(shape, dtype=y.dtype)
        self.k.conv_output_batch_outer(y.reshape(-1), bias, out.reshape(-1), n, c, h * w)
        return out

    def col2im(
        self,
        cols: Any,
        shape: tuple[int, ...],
        kernel: Pair,
        stride: Pair,
        padding: Pair,
        batch_last: bool = True,
    ) -> Any:
        """Every window offset added in one loop into a padded buffer, then cropped to NCHW."""
        if not _plain(cols) or self._split(cols.size):
            return super().col2im(cols, shape, kernel, stride, padding, batch_last)
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        n, c, h, w = shape
        oh, ow = output_size((h, w), kernel, stride, padding)
        hp, wp = h + 2 * ph, w + 2 * pw
        if batch_last:
            buf = numpy.zeros((c, hp, wp, n), dtype=cols.dtype)
            self.k.col2im_batch_last(cols.reshape(c, kh, kw, oh, ow, n), buf, sh, sw)
            crop = buf[:, ph : ph + h, pw : pw + w, :].transpose(3, 0, 1, 2)
        else:
            buf = numpy.zeros((n, c, hp, wp), dtype=cols.dtype)
            self.k.col2im_batch_outer(cols.reshape(c, kh, kw, n, oh, ow), buf, sh, sw)
            crop = buf[:, :, ph : ph + h, pw : pw + w]
        return numpy.ascontiguousarray(crop)

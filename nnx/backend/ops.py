"""Ops: the table of kernels core code calls, each with a portable array-API default.

Layers, losses and optimizers call ``self.ops.<kernel>(...)`` (a layer caches
``backend.ops`` at construction and on ``.to()``); they never look a kernel up
by name.  A backend speeds a kernel up by subclassing :class:`Ops` and
overriding the method (NumPy's :class:`~nnx.backend.numpy.NumpyOps` does);
``nnx.testing`` finds every override and checks it against the default here.

Keep this to kernels: array in, array out, the same result as the default.
"""

from __future__ import annotations

from typing import Any

from nnx import window
from nnx.window import Pair


class Ops:
    """Portable kernels over the array-API namespace ``xp`` (arrays on ``device``)."""

    def __init__(self, xp: Any, device: Any = None) -> None:
        self.xp = xp
        self.device = device

    # -- reductions -----------------------------------------------------------------
    def sum_axis0(self, a: Any) -> Any:
        """Column sums of 2-D ``a``: ``sum(a, axis=0)``, shape (a.shape[1],) (bias gradients)."""
        return self.xp.sum(a, axis=0)

    def sum_axis1(self, a: Any, keepdims: bool = False) -> Any:
        """Row sums of 2-D ``a``: ``sum(a, axis=1)`` (conv bias gradients, softmax totals)."""
        return self.xp.sum(a, axis=1, keepdims=keepdims)

    # -- elementwise pieces of layers and optimizers ------------------------------------
    def relu(self, x: Any) -> Any:
        """``maximum(x, 0)``, a fresh array (the ReLU forward)."""
        return self.xp.maximum(x, 0.0)

    def relu_backward(self, dy: Any, y: Any) -> Any:
        """``dy`` where the ReLU output ``y`` is positive, else 0 (a 0/1 mask multiplied in).

        A 0/1 mask multiplied in is faster than ``where`` on NumPy; the one difference: a
        NaN/inf in ``dy`` at an inactive unit gives NaN here, where ``where`` drops it.
        """
        return dy * self.xp.astype(y > 0, dy.dtype)

    def bias_relu(self, y: Any, bias: Any) -> Any:
        """``relu(y + bias)``: a Linear layer's product, its bias (or None) and the ReLU after
        it, in one kernel; ``y`` is the caller's fresh product and may be overwritten."""
        if bias is not None:
            y += bias  # in place where writeable, a rebind where immutable
        return self.relu(y)

    def relu_backward_sum0(self, dy: Any, y: Any) -> tuple[Any, Any]:
        """``(dx, sum_axis0(dx))`` for ``dx = relu_backward(dy, y)``: a ReLU's input gradient
        and the bias gradient of the Linear layer before it, in one kernel."""
        dx = self.relu_backward(dy, y)
        return dx, self.sum_axis0(dx)

    def momentum_update(self, buf: Any, g: Any, momentum: Any) -> Any:
        """The momentum buffer after one step, ``buf * momentum + g``, in place where writeable."""
        buf *= momentum
        buf += g
        return buf

    def momentum_step(
        self, value: Any, buf: Any, g: Any, momentum: Any, lr: float
    ) -> tuple[Any, Any]:
        """One SGD-momentum step: ``buf = buf * momentum + g; value -= lr * buf``.

        Returns ``(value, buf)``, updated in place where writeable.
        """
        buf = self.momentum_update(buf, g, momentum)
        return self.sub_scaled(value, lr, buf), buf

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
        """One Adam step with its bias corrections folded into ``step_size`` and ``eps_hat``.

        ``betas`` is ``(b1, 1 - b1, b2, 1 - b2)``: ``m = b1 * m + (1 - b1) * g``,
        ``v = b2 * v + (1 - b2) * g * g``, ``value -= step_size * m / (sqrt(v) + eps_hat)``.
        Returns ``(value, m, v)``, updated in place where writeable.
        """
        b1, c1, b2, c2 = betas
        m *= b1
        m += c1 * g
        v *= b2
        v += c2 * (g * g)
        u = v**0.5
        u += eps_hat
        u = m / u
        u *= step_size
        value -= u
        return value, m, v

    def sub_scaled(self, value: Any, scale: float, g: Any) -> Any:
        """``value - scale * g`` (the SGD step), in place where writeable; returns the result."""
        value -= scale * g
        return value

    # -- losses ---------------------------------------------------------------------------
    def cross_entropy(
        self, logits: Any, labels: Any, smoothing: float, scale: float
    ) -> tuple[Any, Any]:
        """Softmax cross-entropy of logits (N, C) and integer labels (N,) in ``[0, C)``
        (the loss checks them first: :meth:`first_bad_label`).

        Returns ``(loss, grad)``: the 0-d sum over samples of ``-sum(target * log_softmax)``
        times ``scale``, and its gradient ``(softmax - target) * scale``, where target is
        the one-hot label mixed with ``smoothing`` of the uniform distribution.  A masked
        logit (``-inf``) where the target is 0 adds nothing (not NaN), as in PyTorch.
        """
        xp = self.xp
        n, c = logits.shape
        shifted = logits - xp.max(logits, axis=1, keepdims=True)
        exp = xp.exp(shifted)
        total = self.sum_axis1(exp, keepdims=True)  # (N, 1)
        target = xp.astype(labels[:, None] == self._classes(c, labels), logits.dtype)
        if smoothing:
            target = target * (1.0 - smoothing) + smoothing / c
        grad = exp / total
        grad -= target
        if scale != 1.0:
            grad *= scale
        # -sum(target * log_softmax) with log_softmax = shifted - log(total) and every row
        # of target summing to 1: sum(log(total)) - sum(target * shifted), where a 0 target
        # must give 0 even for a masked -inf logit (not nan)
        picked = xp.where(target != 0, shifted, xp.zeros_like(shifted)) * target
        return (xp.sum(xp.log(total)) - xp.sum(picked)) * scale, grad

    def bce_with_logits(self, logits: Any, target: Any, scale: float) -> tuple[Any, Any]:
        """Binary cross-entropy of ``logits`` against ``target`` (same shape, values in [0, 1]).

        Returns ``(loss, grad)``: the 0-d sum over elements of
        ``max(z, 0) - z * y + log(1 + exp(-|z|))`` (stable at any z) and its gradient
        ``(sigmoid(z) - y) * scale``, the sigmoid as ``0.5 * tanh(0.5 * z) + 0.5``.
        """
        xp = self.xp
        per = xp.maximum(logits, 0.0) - logits * target + xp.log1p(xp.exp(-xp.abs(logits)))
        sigmoid = 0.5 * xp.tanh(0.5 * logits) + 0.5
        return xp.sum(per), (sigmoid - target) * scale

    def first_bad_label(self, labels: Any, c: int) -> int:
        """Index of the first integer label outside ``[0, c)``, or -1 (a host read: it syncs)."""
        xp = self.xp
        bad = (labels < 0) | (labels >= c)
        if not bool(xp.any(bad)):
            return -1
        return int(xp.argmax(xp.astype(bad, xp.int8)))

    def _classes(self, c: int, labels: Any) -> Any:
        """``arange(c)`` as a (1, C) row of the labels' dtype, made once per (C, dtype)."""
        cache = self.__dict__.setdefault("_class_rows", {})  # a subclass may skip __init__
        key = (c, labels.dtype)
        row = cache.get(key)
        if row is None:
            if len(cache) > 8:  # many class counts: start over
                cache.clear()
            arange = self.xp.arange(c, dtype=labels.dtype, device=labels.device)
            row = cache[key] = self.xp.reshape(arange, (1, c))
        return row

    # -- convolution windows (layouts in nnx.window) ----------------------------------------
    def transpose2d(self, a: Any) -> Any:
        """The transpose of 2-D ``a`` (a backend may return a contiguous copy)."""
        return a.T

    def conv_batch_last(self, in_channels: int, out_channels: int, kernel: Pair, ow: int) -> bool:
        """The window layout for a convolution: True puts the batch innermost.

        The portable default always does; the NumPy ops choose by a measured cost model.
        """
        return True

    def im2col(
        self, x: Any, kernel: Pair, stride: Pair, padding: Pair, batch_last: bool = True
    ) -> Any:
        """NCHW ``x`` -> windows ``(C*kh*kw, pixels)`` in the ``batch_last`` column order."""
        return window.im2col(self.xp, x, kernel, stride, padding, batch_last)

    def col2im(
        self,
        cols: Any,
        shape: tuple[int, ...],
        kernel: Pair,
        stride: Pair,
        padding: Pair,
        batch_last: bool = True,
    ) -> Any:
        """Sum windows ``(C*kh*kw, pixels)`` back into an NCHW array of ``shape`` (im2col's adjoint)."""
        return window.col2im(self.xp, cols, shape, kernel, stride, padding, batch_last)

    def col2im_matmul(
        self,
        wt: Any,
        dy: Any,
        shape: tuple[int, ...],
        kernel: Pair,
        stride: Pair,
        padding: Pair,
        batch_last: bool = True,
    ) -> Any:
        """``col2im(wt @ dy, ...)``: a convolution's input gradient (a backend may fuse it).

        NumPy keeps this default: one matmul on all BLAS threads beats kh*kw small,
        badly shaped GEMMs, which the kernel thread pool could not run either.
        """
        return self.col2im(wt @ dy, shape, kernel, stride, padding, batch_last)

    def conv_weight_grad(self, dy: Any, cols: Any) -> Any:
        """``dy @ cols.T``: a convolution's weight gradient (O, C*kh*kw) from its output
        gradient ``dy`` (O, pixels) and its windows ``cols`` (C*kh*kw, pixels).

        Computed as ``(cols @ dy.T).T``, the orientation BLAS runs fastest with a long
        inner dimension.
        """
        return (cols @ dy.T).T

    def conv_output(
        self, y: Any, bias: Any | None, shape: tuple[int, int, int, int], batch_last: bool
    ) -> Any:
        """Window-layout ``y`` (C, pixels) plus ``bias`` (C,) or None -> C-contiguous NCHW."""
        if bias is not None:
            y = y + self.xp.reshape(bias, (-1, 1))
        return window.to_nchw(self.xp, y, shape, batch_last)

    def from_nchw(self, dy: Any, batch_last: bool) -> Any:
        """NCHW ``dy`` -> ``(C, OH*OW*N)`` (or ``(C, N*OH*OW)``), the layout of window.to_nchw."""
        xp = self.xp
        n, c = dy.shape[:2]
        if batch_last:  # (N, C*OH*OW) transposed
            return xp.reshape(self.transpose2d(xp.reshape(dy, (n, -1))), (c, -1))
        return xp.reshape(xp.permute_dims(dy, (1, 0, 2, 3)), (c, -1))

    # -- pooling tiles ----------------------------------------------------------------------
    def pool_tiles(self, x: Any, kernel: Pair, oh: int, ow: int) -> Any:
        """(kh*kw, N, C, OH, OW): the elements of non-overlapping windows, de-interleaved.

        One copy; afterwards every window position is a contiguous array, so the
        elementwise work of a pool runs at full speed (strided views such as
        ``x[:, :, 0::2, 0::2]`` are several times slower on NumPy).  Floor mode
        drops trailing rows and columns.
        """
        xp = self.xp
        (kh, kw), (n, c) = kernel, x.shape[:2]
        if x.shape[2] != oh * kh or x.shape[3] != ow * kw:
            x = x[:, :, : oh * kh, : ow * kw]
        x6 = xp.reshape(x, (n, c, oh, kh, ow, kw))
        return xp.reshape(xp.permute_dims(x6, (3, 5, 0, 1, 2, 4)), (kh * kw, n, c, oh, ow))

    def pool_untile(self, pieces: list[Any], kernel: Pair, shape: tuple[int, ...]) -> Any:
        """Inverse of :meth:`pool_tiles`: each (N, C, OH, OW) piece back in its window slot,
        zero rows and columns where floor mode dropped them, as NCHW of ``shape``."""
        xp = self.xp
        kh, kw = kernel
        n, c, h, w = shape
        oh, ow = pieces[0].shape[2:]
        rows = [xp.stack(pieces[i * kw : (i + 1) * kw], axis=4) for i in range(kh)]
        dx = xp.reshape(xp.stack(rows, axis=3), (n, c, oh * kh, ow * kw))
        return window.pad_axis(xp, window.pad_axis(xp, dx, 2, 0, h - oh * kh), 3, 0, w - ow * kw)

    def maxpool_forward(self, x: Any, kernel: Pair, oh: int, ow: int) -> tuple[Any, Any]:
        """``(saved, y)``: what :meth:`maxpool_backward` of the same table needs, and the
        windows' maximum ``y`` (N, C, OH, OW).

        Here ``saved`` is :meth:`pool_tiles` of ``x``; a backend may keep something
        smaller (JitOps: the position of each window's first maximum).
        """
        xp = self.xp
        tiles = self.pool_tiles(x, kernel, oh, ow)
        views = [tiles[k, ...] for k in range(tiles.shape[0])]
        while len(views) > 1:  # pairwise: the 2x2 case is max(max(a, b), max(c, d))
            pairs = [xp.maximum(a, b) for a, b in zip(views[::2], views[1::2], strict=False)]
            views = pairs + ([views[-1]] if len(views) % 2 else [])
        return tiles, views[0]

    def maxpool_backward(
        self, tiles: Any, y: Any, dy: Any, kernel: Pair, shape: tuple[int, ...]
    ) -> Any:
        """Max-pool input gradient from :meth:`maxpool_forward`'s ``(tiles, y)``.

        An override must also take the portable forward's tiles (its forward may hand
        some inputs to this default).

        Each window's gradient goes to its *first* maximum (row-major), as in PyTorch:
        0/1 masks multiplied in (``where`` is much slower on NumPy for random masks),
        what a position takes is subtracted from what later positions may take.
        """
        xp = self.xp
        pieces, rest = [], dy
        for k in range(tiles.shape[0] - 1):
            piece = rest * xp.astype(tiles[k, ...] == y, dy.dtype)
            pieces.append(piece)
            rest = rest - piece  # what is left for later positions: ties get nothing
        pieces.append(rest)
        return self.pool_untile(pieces, kernel, shape)

    def __deepcopy__(self, memo: dict[int, Any]) -> Ops:
        """The table itself: kernels hold no training state (see Backend.__deepcopy__)."""
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__} on {self.device}>"

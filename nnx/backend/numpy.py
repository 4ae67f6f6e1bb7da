"""NumPy on the CPU: the built-in default backend and its fast kernels (NumpyOps)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy

from nnx.backend.base import Backend, BackendError
from nnx.backend.numpy_kernels import ThreadedKernels
from nnx.window import Pair, output_size

#: multiply-adds (M*N*K) up to which OpenBLAS may take its small-matrix GEMM kernels
SMALL_GEMM = 1_000_000
#: narrowest slice of pixels worth a separate product (below it, one product)
MIN_SLICE = 1024


class NumpyOps(ThreadedKernels):
    """Ops with NumPy fast paths (same results and layouts as the portable defaults).

    Every kernel is written against ``self.np`` (the array module), not the
    global ``numpy``, so a CuPy subclass reuses them with ``np = cupy`` (and
    ``threaded = False``).  The elementwise and pooling kernels live in
    :mod:`nnx.backend.numpy_kernels`; large work is split across nnx's CPU threads.
    """

    def __init__(self, xp: Any, device: Any = None) -> None:
        super().__init__(xp, device)
        self._ones: dict[tuple[int, Any], Any] = {}

    # -- reductions as one BLAS call ----------------------------------------------------
    def ones(self, n: int, dtype: Any) -> Any:
        """A cached vector of ``n`` ones of ``dtype`` (read-only use: never write into it)."""
        key = (n, dtype)
        ones = self._ones.get(key)
        if ones is None:
            if len(self._ones) > 16:  # many batch sizes: start over
                self._ones.clear()
            ones = self._ones[key] = self.np.ones(n, dtype=dtype)
        return ones

    def sum_axis0(self, a: Any) -> Any:
        """``ones @ a``: one BLAS call, faster than ``sum(a, axis=0)`` on NumPy."""
        return self.ones(a.shape[0], a.dtype) @ a

    def sum_axis1(self, a: Any, keepdims: bool = False) -> Any:
        """``a @ ones``: one BLAS call, faster than ``sum(a, axis=1)`` on NumPy."""
        out = a @ self.ones(a.shape[1], a.dtype)
        return out[:, None] if keepdims else out

    # -- windows ------------------------------------------------------------------------
    def transpose2d(self, a: Any) -> Any:
        """A C-contiguous copy of the transpose of 2-D ``a``.

        When ``a``'s rows lie a multiple of 2 KiB apart, the column-wise reads of a
        plain transposing copy all fall into a few cache sets and evict each other;
        staging ``a`` in a buffer with an odd number of cache lines per row avoids it.
        """
        np = self.np
        m, n = a.shape
        if (n * a.itemsize) % 2048 == 0 and m > 1:
            lines = n * a.itemsize // 64 + 1
            buf = np.empty((m, lines * 64 // a.itemsize), dtype=a.dtype)
            buf[:, :n] = a
            a = buf[:, :n]
        return np.ascontiguousarray(a.T)

    def conv_batch_last(self, in_channels: int, out_channels: int, kernel: Pair, ow: int) -> bool:
        """Batch innermost unless O*OW >= 4*C*kh*kw (a rule fitted to timings on NumPy).

        Batch outermost, the window copies move short runs (OW elements, or OH*OW
        at row stride 1: :meth:`_im2col_rows`) and col2im adds runs of OW; batch
        innermost, runs of OW*N, but the output and its gradient (O*OH*OW*N
        elements) must be transposed to and from NCHW.  Batch outermost pays for
        e.g. LeNet's first conv (1 -> 8 channels, 5x5, 24 wide) but not its second
        (8 -> 16, 5x5, 8 wide), where it made the CNN steps slower.
        """
        return out_channels * ow < 4 * in_channels * kernel[0] * kernel[1]

    def im2col(
        self, x: Any, kernel: Pair, stride: Pair, padding: Pair, batch_last: bool = True
    ) -> Any:
        """NCHW ``x`` -> windows ``(C*kh*kw, pixels)``: one copy out of a sliding-window view,
        split over output rows (batch_last) or images (batch outer) across the threads."""
        np = self.np
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        n, c, h, w = x.shape
        oh, ow = output_size((h, w), kernel, stride, padding)
        # (C, H, W, N) or (C, N, H, W), contiguous: the window copy reads long runs
        if batch_last:
            xt = self.transpose2d(x.reshape(n, c * h * w)).reshape(c, h, w, n)
        else:
            xt = x.transpose(1, 0, 2, 3)
        a = 1 if batch_last else 2  # first spatial axis
        if ph or pw:
            shape = list(xt.shape)
            shape[a], shape[a + 1] = h + 2 * ph, w + 2 * pw
            padded = np.zeros(shape, dtype=x.dtype)
            index = [slice(None)] * 4
            index[a], index[a + 1] = slice(ph, ph + h), slice(pw, pw + w)
            padded[tuple(index)] = xt
            xt = padded
        else:
            xt = np.ascontiguousarray(xt)
        if not batch_last and sh == 1:
            return self._im2col_rows(xt, kernel, sw, oh, ow)
        win = np.lib.stride_tricks.sliding_window_view(xt, (kh, kw), axis=(a, a + 1))
        index = [slice(None)] * 4
        index[a], index[a + 1] = slice(0, sh * (oh - 1) + 1, sh), slice(0, sw * (ow - 1) + 1, sw)
        win = win[tuple(index)]  # (C, OH, OW, N, kh, kw) or (C, N, OH, OW, kh, kw)
        src = win.transpose(0, 4, 5, 1, 2, 3)  # (C, kh, kw, OH, OW, N) or (C, kh, kw, N, OH, OW)
        out = np.empty(src.shape, dtype=x.dtype)

        def copy(lo: int, hi: int) -> None:
            out[:, :, :, lo:hi] = src[:, :, :, lo:hi]

        self._parallel(src.shape[3], copy, out.size)
        return out.reshape(c * kh * kw, oh * ow * n)

    def _im2col_rows(self, xt: Any, kernel: Pair, sw: int, oh: int, ow: int) -> Any:
        """Batch-outer windows of (padded) ``xt`` (C, N, H, W) at row stride 1, in two copies.

        A one-copy im2col moves runs of only OW elements (C*kh*kw*N*OH of them: 38,400
        for LeNet's first conv), and its time is mostly the cost per run.  Copying the
        kw column shifts first, (C, kw, N, H, OW), makes every kernel row's windows one
        run of OH*OW elements in the second copy: far fewer, longer runs.
        """
        np = self.np
        (kh, kw), (c, n, h) = kernel, xt.shape[:3]
        shifted = np.empty((c, kw, n, h, ow), dtype=xt.dtype)
        out = np.empty((c, kh, kw, n, oh, ow), dtype=xt.dtype)

        def copy(lo: int, hi: int) -> None:
            for j in range(kw):
                shifted[:, j, lo:hi] = xt[:, lo:hi, :, j : j + sw * (ow - 1) + 1 : sw]
            for i in range(kh):
                out[:, i, :, lo:hi] = shifted[:, :, lo:hi, i : i + oh]

        self._parallel(n, copy, out.size)
        return out.reshape(c * kh * kw, n * oh * ow)

    def col2im(
        self,
        cols: Any,
        shape: tuple[int, ...],
        kernel: Pair,
        stride: Pair,
        padding: Pair,
        batch_last: bool = True,
    ) -> Any:
        """Sum windows ``(C*kh*kw, pixels)`` back into NCHW ``shape``: kh*kw in-place adds
        per channel, the channels split across the threads."""
        (kh, kw), (n, c) = kernel, shape[:2]
        oh, ow = output_size(shape[2:], kernel, stride, padding)
        if batch_last:
            d = cols.reshape(c, kh, kw, oh, ow, n)
            return self._sum_windows(
                lambda i, j, cs: d[cs, i, j], shape, kernel, stride, padding, True
            )
        d = cols.reshape(c, kh, kw, n, oh, ow).transpose(3, 0, 1, 2, 4, 5)
        return self._sum_windows(
            lambda i, j, cs: d[:, cs, i, j], shape, kernel, stride, padding, False
        )

    def _sum_windows(
        self,
        piece: Callable[[int, int, slice], Any],
        shape: tuple[int, ...],
        kernel: Pair,
        stride: Pair,
        padding: Pair,
        batch_last: bool,
    ) -> Any:
        """Add ``piece(i, j, channels)`` (the gradient of kernel offset i, j) into a padded
        image and write its crop into NCHW, one chunk of channels per thread."""
        np = self.np
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        n, c, h, w = shape
        oh, ow = output_size((h, w), kernel, stride, padding)
        hp, wp = h + 2 * ph, w + 2 * pw
        dtype = piece(0, 0, slice(0, 0)).dtype
        # (C, H, W, N) or NCHW padded buffer
        buf = np.zeros((c, hp, wp, n) if batch_last else (n, c, hp, wp), dtype)
        dx = np.empty((n, c, h, w), dtype)

        def add(lo: int, hi: int) -> None:
            cs = slice(lo, hi)
            out = buf[cs] if batch_last else buf[:, cs]
            a = 1 if batch_last else 2  # first spatial axis of out
            index = [slice(None)] * 4
            for i in range(kh):
                for j in range(kw):
                    index[a] = slice(i, i + sh * (oh - 1) + 1, sh)
                    index[a + 1] = slice(j, j + sw * (ow - 1) + 1, sw)
                    out[tuple(index)] += piece(i, j, cs)
            index[a], index[a + 1] = slice(ph, ph + h), slice(pw, pw + w)
            crop = out[tuple(index)]
            dx[:, cs] = crop.transpose(3, 0, 1, 2) if batch_last else crop

        self._parallel(c, add, buf.size * kh * kw)
        return dx

    def conv_weight_grad(self, dy: Any, cols: Any) -> Any:
        """``dy @ cols.T`` summed over slices of the pixels, each a small matrix product.

        A weight gradient multiplies two short, very wide matrices (LeNet's first conv:
        25 and 8 rows by 36,864 pixels).  OpenBLAS runs products of at most
        :data:`SMALL_GEMM` multiply-adds with its small-matrix kernels (no packing)
        on the cores that have them (SkylakeX and later), so slices under that size
        skip the packing that one wide product pays for; where OpenBLAS has no such
        kernels (core type Haswell) the slices are a little slower than one product.
        """
        k, m = cols.shape
        step = SMALL_GEMM // max(1, k * dy.shape[0])
        if step < MIN_SLICE or m <= step or self.np is not numpy:  # CupyOps: one product
            return super().conv_weight_grad(dy, cols)
        acc = cols[:, :step] @ dy[:, :step].T
        for lo in range(step, m, step):
            acc += cols[:, lo : lo + step] @ dy[:, lo : lo + step].T
        return acc.T

    def conv_output(
        self, y: Any, bias: Any | None, shape: tuple[int, int, int, int], batch_last: bool
    ) -> Any:
        """The bias added while copying into NCHW: one sweep, images split across threads."""
        np = self.np
        n, c, h, w = shape
        out = np.empty(shape, dtype=y.dtype)
        src = (
            y.reshape(c, h, w, n).transpose(3, 0, 1, 2)
            if batch_last
            else y.reshape(c, n, h, w).transpose(1, 0, 2, 3)
        )
        b = None if bias is None else bias.reshape(1, c, 1, 1)

        def body(lo: int, hi: int) -> None:
            if b is None:
                out[lo:hi] = src[lo:hi]
            else:
                np.add(src[lo:hi], b, out=out[lo:hi])

        self._parallel(n, body, out.size)
        return out


class NumpyBackend(Backend):
    """NumPy on the CPU: always available."""

    name = "numpy"
    xp = array_api_compat.array_namespace(numpy.empty(0))
    device = "cpu"
    array_type = numpy.ndarray

    @property
    def ops_class(self) -> type[NumpyOps]:  # type: ignore[override]
        """JitOps (numba loops, the ``nnx[jit]`` extra) when installed and not off, else NumpyOps."""
        from nnx.backend.jit import numpy_ops_class

        return numpy_ops_class()

    def __init__(self, device: str | None = None) -> None:
        if device not in (None, "", "cpu"):
            raise BackendError(f"numpy has only the device 'cpu', not {device!r}")
        super().__init__(device)

    def asarray(self, host: Any, dtype: Any = None) -> numpy.ndarray:
        return numpy.asarray(host, dtype=self.dtype(dtype))

    def _same_device(self, x: Any) -> bool:
        return True

    def to_numpy(self, x: Any) -> numpy.ndarray:
        return numpy.asarray(x)

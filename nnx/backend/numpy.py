"""NumPy on the CPU: the built-in default backend and its fast kernels (NumpyOps)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy

from nnx.backend.base import Backend, BackendError
from nnx.backend.ops import Ops
from nnx.backend.threads import parallel_for, worth_splitting
from nnx.window import Pair, output_size


class NumpyOps(Ops):
    """Ops with NumPy fast paths (same results and layouts as the portable defaults).

    Every kernel is written against ``self.np`` (the array module), not the
    global ``numpy``, so a CuPy subclass reuses them with ``np = cupy``.
    """

    np: Any = numpy
    #: split large kernels across nnx's CPU threads (see nnx.backend.threads);
    #: a subclass for a GPU library sets it False
    threaded: bool = True

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
        """``ones @ a``: one BLAS call, 2-3x faster than ``sum(a, axis=0)`` on NumPy."""
        return self.ones(a.shape[0], a.dtype) @ a

    def sum_axis1(self, a: Any, keepdims: bool = False) -> Any:
        """``a @ ones``: one BLAS call, 2-3x faster than ``sum(a, axis=1)`` on NumPy."""
        out = a @ self.ones(a.shape[1], a.dtype)
        return out[:, None] if keepdims else out

    # -- windows ------------------------------------------------------------------------
    def transpose2d(self, a: Any) -> Any:
        """A C-contiguous copy of the transpose of 2-D ``a``.

        When ``a``'s rows lie a multiple of 2 KiB apart, the column-wise reads of a
        plain transposing copy fall into a few cache sets and run ~5x slower;
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
        """Batch innermost unless O*OW >= 4*C*kh*kw (measured on NumPy).

        Batch outermost, each window copy moves runs of only OW elements
        (C*kh*kw*N*OH runs); batch innermost, runs of OW*N, but the output and
        its gradient (O*OH*OW*N elements) must be transposed to and from NCHW.
        Batch outermost pays for e.g. LeNet's first conv (1 -> 8 channels, 5x5,
        24 wide) but not its second (8 -> 16, 5x5, 8 wide).
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
        """``col2im(wt @ dy)``: one matmul on all BLAS threads, then the threaded col2im.

        (One matmul per kernel offset keeps each piece in cache but runs kh*kw
        tiny, badly shaped GEMMs, and BLAS cannot be called from the pool's threads.)
        """
        return self.col2im(wt @ dy, shape, kernel, stride, padding, batch_last)

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

    # -- elementwise ------------------------------------------------------------------------
    def _parallel(self, n: int, body: Callable[[int, int], None], work: int) -> None:
        """``parallel_for`` on the CPU; one call where ``threaded`` is off (a GPU subclass)."""
        if self.threaded:
            parallel_for(n, body, work)
        else:
            body(0, n)

    def _split(self, work: int) -> bool:
        """Whether a kernel of ``work`` elements is split (else it takes its plain path)."""
        return self.threaded and worth_splitting(work)

    @staticmethod
    def _flat(*arrays: Any) -> list[Any] | None:
        """1-D views of C-contiguous arrays of one shape, or None (then the plain kernel runs)."""
        shape = arrays[0].shape
        if all(a.flags.c_contiguous and a.shape == shape for a in arrays):
            return [a.reshape(-1) for a in arrays]
        return None

    def relu(self, x: Any) -> Any:
        """``maximum(x, 0)`` into a fresh array, split across the threads when large."""
        np = self.np
        if not self._split(x.size):
            return np.maximum(x, 0)
        y = np.empty(x.shape, dtype=x.dtype)
        flat = self._flat(x, y)
        if flat is None:
            return np.maximum(x, 0)
        xf, yf = flat

        def body(lo: int, hi: int) -> None:
            np.maximum(xf[lo:hi], 0, out=yf[lo:hi])

        self._parallel(xf.shape[0], body, xf.shape[0])
        return y

    def relu_backward(self, dy: Any, y: Any) -> Any:
        """``dy * (y > 0)``: the bool mask is cast inside the multiply, chunked across threads."""
        np = self.np
        if not self._split(dy.size) and dy.shape == y.shape:
            return np.multiply(dy, y > 0)
        dx = np.empty(dy.shape, dtype=dy.dtype)
        flat = self._flat(dy, y, dx)
        if flat is None:
            return super().relu_backward(dy, y)
        df, yf, of = flat

        def body(lo: int, hi: int) -> None:
            np.multiply(df[lo:hi], yf[lo:hi] > 0, out=of[lo:hi])

        self._parallel(df.shape[0], body, df.shape[0])
        return dx

    def momentum_update(self, buf: Any, g: Any, momentum: Any) -> Any:
        """``buf = buf * momentum + g`` in place, split across the threads when large."""
        np = self.np
        flat = self._flat(buf, g) if buf.flags.writeable else None
        if flat is None or not self._split(2 * buf.size):
            return super().momentum_update(buf, g, momentum)
        bf, gf = flat

        def body(lo: int, hi: int) -> None:
            b = bf[lo:hi]
            np.multiply(b, momentum, out=b)
            np.add(b, gf[lo:hi], out=b)

        self._parallel(bf.shape[0], body, 2 * bf.shape[0])
        return buf

    def sub_scaled(self, value: Any, scale: float, g: Any) -> Any:
        """``value -= scale * g`` in place, split across the threads when large."""
        np = self.np
        if not self._split(2 * value.size):
            return super().sub_scaled(value, scale, g)
        flat = self._flat(value, g) if value.flags.writeable else None
        if flat is None:
            return super().sub_scaled(value, scale, g)
        vf, gf = flat

        def body(lo: int, hi: int) -> None:
            np.subtract(vf[lo:hi], np.multiply(gf[lo:hi], scale), out=vf[lo:hi])

        self._parallel(vf.shape[0], body, 2 * vf.shape[0])
        return value

    def momentum_step(
        self, value: Any, buf: Any, g: Any, momentum: Any, lr: float
    ) -> tuple[Any, Any]:
        """Both SGD-momentum sweeps in one pass over each thread's chunk (one hand-off)."""
        np = self.np
        if not self._split(3 * value.size):
            return super().momentum_step(value, buf, g, momentum, lr)
        ok = value.flags.writeable and buf.flags.writeable
        flat = self._flat(value, buf, g) if ok else None
        if flat is None:
            return super().momentum_step(value, buf, g, momentum, lr)
        vf, bf, gf = flat

        def body(lo: int, hi: int) -> None:
            b = bf[lo:hi]
            np.multiply(b, momentum, out=b)
            np.add(b, gf[lo:hi], out=b)
            np.subtract(vf[lo:hi], np.multiply(b, lr), out=vf[lo:hi])

        self._parallel(vf.shape[0], body, 3 * vf.shape[0])
        return value, buf

    # -- pooling tiles ----------------------------------------------------------------------
    def pool_tiles(self, x: Any, kernel: Pair, oh: int, ow: int) -> Any:
        """(kh*kw, N, C, OH, OW) de-interleaved windows: one copy, images split across threads."""
        np = self.np
        (kh, kw), (n, c) = kernel, x.shape[:2]
        x6 = x[:, :, : oh * kh, : ow * kw].reshape(n, c, oh, kh, ow, kw)
        out = np.empty((kh, kw, n, c, oh, ow), dtype=x.dtype)
        view = x6.transpose(3, 5, 0, 1, 2, 4)

        def copy(lo: int, hi: int) -> None:
            out[:, :, lo:hi] = view[:, :, lo:hi]

        self._parallel(n, copy, out.size)
        return out.reshape(kh * kw, n, c, oh, ow)

    def maxpool_forward(self, x: Any, kernel: Pair, oh: int, ow: int) -> tuple[Any, Any]:
        """The tile copy and the maximum in one pass per thread's chunk of images."""
        np = self.np
        (kh, kw), (n, c) = kernel, x.shape[:2]
        x6 = x[:, :, : oh * kh, : ow * kw].reshape(n, c, oh, kh, ow, kw)
        tiles = np.empty((kh * kw, n, c, oh, ow), dtype=x.dtype)
        t6 = tiles.reshape(kh, kw, n, c, oh, ow)
        view = x6.transpose(3, 5, 0, 1, 2, 4)
        y = np.empty((n, c, oh, ow), dtype=x.dtype)

        def body(lo: int, hi: int) -> None:
            t6[:, :, lo:hi] = view[:, :, lo:hi]
            out = y[lo:hi]
            out[...] = tiles[0, lo:hi]
            for k in range(1, kh * kw):  # max is exact: the order does not change y
                np.maximum(out, tiles[k, lo:hi], out=out)

        self._parallel(n, body, tiles.size)
        return tiles, y

    def maxpool_backward(
        self, tiles: Any, y: Any, dy: Any, kernel: Pair, shape: tuple[int, ...]
    ) -> Any:
        """The portable masks, written straight into the strided slots of ``dx`` (no stack
        copies), images split across the threads."""
        np = self.np
        (kh, kw), (n, c, h, w) = kernel, shape
        oh, ow = y.shape[2:]
        if (h, w) != (oh * kh, ow * kw) or not dy.flags.c_contiguous:
            return super().maxpool_backward(tiles, y, dy, kernel, shape)
        dx = np.empty(shape, dtype=dy.dtype)
        dx6 = dx.reshape(n, c, oh, kh, ow, kw)

        def body(lo: int, hi: int) -> None:
            rest = dy[lo:hi]
            yy = y[lo:hi]
            for k in range(kh * kw - 1):
                slot = dx6[lo:hi, :, :, k // kw, :, k % kw]
                np.multiply(rest, tiles[k, lo:hi] == yy, out=slot)
                rest = rest - slot
            dx6[lo:hi, :, :, kh - 1, :, kw - 1] = rest

        self._parallel(n, body, dx.size)
        return dx


class NumpyBackend(Backend):
    """NumPy on the CPU: always available."""

    name = "numpy"
    xp = array_api_compat.array_namespace(numpy.empty(0))
    device = "cpu"
    array_type = numpy.ndarray
    ops_class = NumpyOps

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

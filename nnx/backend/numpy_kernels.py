"""NumpyOps' elementwise and pooling kernels, and the helpers that split work across threads.

NumPy releases the GIL inside copies and ufuncs, so large kernels run one chunk per
thread of :mod:`nnx.backend.threads`; small ones take the plain NumPy call.
Written against ``self.np`` like the rest of NumpyOps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy

from nnx.backend.ops import Ops
from nnx.backend.threads import parallel_for, worth_splitting
from nnx.window import Pair


class ThreadedKernels(Ops):
    """The elementwise and pooling half of :class:`~nnx.backend.numpy.NumpyOps`."""

    np: Any = numpy
    #: split large kernels across nnx's CPU threads (see nnx.backend.threads): None
    #: (the default) splits only when ``np`` is NumPy, so CupyOps (np = cupy) never does
    threaded: bool | None = None

    # -- elementwise ------------------------------------------------------------------------
    def _parallel(self, n: int, body: Callable[[int, int], None], work: int) -> None:
        """``parallel_for`` on the CPU; one call where ``threaded`` is off (a GPU subclass)."""
        if self._threaded():
            parallel_for(n, body, work)
        else:
            body(0, n)

    def _threaded(self) -> bool:
        return self.np is numpy if self.threaded is None else self.threaded

    def _split(self, work: int) -> bool:
        """Whether a kernel of ``work`` elements is split (else it takes its plain path)."""
        return self._threaded() and worth_splitting(work)

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
        """``dy * (y > 0)`` with a 0/1 mask of dy's dtype (casting the bool mask inside the
        multiply is slower on NumPy), chunked across the threads when large."""
        np = self.np
        if not self._split(dy.size):
            return super().relu_backward(dy, y)
        dx = np.empty(dy.shape, dtype=dy.dtype)
        flat = self._flat(dy, y, dx)
        if flat is None:
            return super().relu_backward(dy, y)
        df, yf, of = flat

        def body(lo: int, hi: int) -> None:
            np.multiply(df[lo:hi], (yf[lo:hi] > 0).astype(of.dtype), out=of[lo:hi])

        self._parallel(df.shape[0], body, df.shape[0])
        return dx

    def momentum_update(self, buf: Any, g: Any, momentum: Any) -> Any:
        """``buf = buf * momentum + g`` in place, split across the threads when large."""
        np = self.np
        if not self._split(2 * buf.size):
            return super().momentum_update(buf, g, momentum)
        flat = self._flat(buf, g) if buf.flags.writeable else None
        if flat is None:
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
                np.multiply(rest, (tiles[k, lo:hi] == yy).astype(dx.dtype), out=slot)
                rest = rest - slot
            dx6[lo:hi, :, :, kh - 1, :, kw - 1] = rest

        self._parallel(n, body, dx.size)
        return dx

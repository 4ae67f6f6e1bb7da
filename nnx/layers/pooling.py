"""MaxPool2d and AvgPool2d on NCHW inputs (PyTorch semantics, floor mode).

Non-overlapping windows without padding (kernel == stride, e.g. the usual
2x2 stride 2) are computed from the kh*kw "tiles" of the input, one per
window position (the four quadrants x[:, :, a::2, b::2] for 2x2): the max is
the pairwise maximum of the tiles, several times faster than a reshape and a
max over two axes.  The tiles are de-interleaved into contiguous arrays once
(one copy), because the elementwise work of the backward runs several times
faster on contiguous arrays than on strided views.  Other shapes gather
windows with the backend's im2col, as Conv2d does.  Max-pool backward routes each window's gradient to its
*first* maximum (row-major), as PyTorch does: with ties, such as the zero
background of MNIST, exactly one input per window receives the gradient.
What the forward keeps for that is the kernel table's choice (``ops.maxpool_forward``):
the tiles here, a byte per window (where its first maximum is) in the compiled kernels.
"""

from __future__ import annotations

import math
from typing import Any

from nnx.layers.base import Layer
from nnx.window import Pair, pad_axis, pair, to_nchw, window_output

__all__ = ["AvgPool2d", "MaxPool2d"]


class _Pool2d(Layer):
    """Shared set-up, shape checks and window plumbing of the 2-D pools."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding = pair(padding, "padding", minimum=0)
        kh, kw = self.kernel_size
        if self.padding[0] > kh // 2 or self.padding[1] > kw // 2:
            raise ValueError(
                f"{type(self).__name__}: padding {self.padding} must be at most half the "
                f"kernel size {self.kernel_size}"
            )
        self.tiles = self.stride == self.kernel_size and self.padding == (0, 0)

    def _out(self, x: Any) -> Pair:
        return window_output(self, x, self.kernel_size, self.stride, self.padding)

    def _cols(self, x: Any, fill: float) -> Any:
        """im2col of ``x`` padded with ``fill``: (C, kh*kw, OH*OW*N)."""
        xp = self.xp
        ph, pw = self.padding
        if fill != 0.0 and (ph or pw):
            x = pad_axis(xp, pad_axis(xp, x, 2, ph, ph, fill), 3, pw, pw, fill)
            padding = (0, 0)
        else:
            padding = self.padding
        cols = self.ops.im2col(x, self.kernel_size, self.stride, padding)
        c = x.shape[1]
        return xp.reshape(cols, (c, self.kernel_size[0] * self.kernel_size[1], -1))

    def _uncols(self, dcols: Any, fill: float, input_shape: tuple[int, ...]) -> Any:
        """col2im of (C, kh*kw, OH*OW*N) window gradients back to ``input_shape``."""
        xp = self.xp
        n, c, h, w = input_shape
        ph, pw = self.padding
        padded = fill != 0.0 and (ph or pw)
        shape = (n, c, h + 2 * ph, w + 2 * pw) if padded else input_shape
        padding = (0, 0) if padded else self.padding
        dcols = xp.reshape(dcols, (dcols.shape[0] * dcols.shape[1], -1))
        dx = self.ops.col2im(dcols, shape, self.kernel_size, self.stride, padding)
        return dx[:, :, ph : ph + h, pw : pw + w] if padded else dx

    def _to_nchw(self, flat: Any, n: int, oh: int, ow: int) -> Any:
        """(C, OH*OW*N) -> C-contiguous NCHW."""
        return to_nchw(self.xp, flat, (n, flat.shape[0], oh, ow), True)

    def _from_nchw(self, dy: Any) -> Any:
        """NCHW -> (C, 1, OH*OW*N)."""
        flat = self.ops.from_nchw(dy, True)
        return self.xp.reshape(flat, (dy.shape[1], 1, -1))

    def extra_repr(self) -> str:
        text = f"kernel_size={self.kernel_size}, stride={self.stride}"
        return text + (f", padding={self.padding}" if self.padding != (0, 0) else "")


class MaxPool2d(_Pool2d):
    """Max over kh x kw windows; padding counts as -inf; ties send the gradient to the first max."""

    def forward(self, x: Any) -> Any:
        xp = self.xp
        oh, ow = self._out(x)
        if self.tiles:
            saved, y = self.ops.maxpool_forward(x, self.kernel_size, oh, ow)
            self.save_for_backward(saved, y, tuple(x.shape))
        else:
            cols = self._cols(x, -math.inf)
            y = self._to_nchw(xp.max(cols, axis=1), x.shape[0], oh, ow)
            first_max = xp.argmax(cols, axis=1) if self.training else None
            self.save_for_backward(first_max, None, tuple(x.shape))
        return y

    def backward(self, dy: Any) -> Any:
        # tiles: what the ops' maxpool_forward kept, and y; else (argmax per window, None)
        windows, y, shape = self.saved()
        xp = self.xp
        if not self.requires_input_grad:
            return None
        if self.tiles:
            return self.ops.maxpool_backward(windows, y, dy, self.kernel_size, shape)
        index = windows  # (C, OH*OW*N): argmax gives the first maximum
        kk = self.kernel_size[0] * self.kernel_size[1]
        slots = xp.reshape(xp.arange(kk, dtype=index.dtype, device=dy.device), (1, kk, 1))
        dcols = xp.astype(slots == index[:, None, :], dy.dtype) * self._from_nchw(dy)
        return self._uncols(dcols, -math.inf, shape)


class AvgPool2d(_Pool2d):
    """Mean over kh x kw windows; zero padding counts in the mean (count_include_pad=True)."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__(kernel_size, stride, padding)
        self._scale = 1.0 / (self.kernel_size[0] * self.kernel_size[1])

    def forward(self, x: Any) -> Any:
        xp = self.xp
        oh, ow = self._out(x)
        if self.tiles:
            y = xp.sum(self.ops.pool_tiles(x, self.kernel_size, oh, ow), axis=0) * self._scale
        else:
            cols = self._cols(x, 0.0)
            y = self._to_nchw(xp.sum(cols, axis=1) * self._scale, x.shape[0], oh, ow)
        self.save_for_backward(tuple(x.shape))
        return y

    def backward(self, dy: Any) -> Any:
        (shape,) = self.saved()
        if not self.requires_input_grad:
            return None
        xp = self.xp
        g = dy * self._scale
        kk = self.kernel_size[0] * self.kernel_size[1]
        if self.tiles:  # every window element gets dy / (kh*kw): one broadcast copy
            (kh, kw), (n, c, h, w), (oh, ow) = self.kernel_size, shape, g.shape[2:]
            g6 = xp.broadcast_to(g[:, :, :, None, :, None], (n, c, oh, kh, ow, kw))
            dx = xp.reshape(g6, (n, c, oh * kh, ow * kw))
            return pad_axis(xp, pad_axis(xp, dx, 2, 0, h - oh * kh), 3, 0, w - ow * kw)
        g = self._from_nchw(g)
        return self._uncols(xp.broadcast_to(g, (g.shape[0], kk, g.shape[2])), 0.0, shape)

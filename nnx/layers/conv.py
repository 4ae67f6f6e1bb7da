"""Conv2d by im2col + one matmul, and the portable window gathering shared with pooling.

Layout.  Layers take and return C-contiguous NCHW arrays (PyTorch semantics).
Internally the window matrix is ``cols`` of shape ``(C*kh*kw, pixels)``: rows
ordered (channel, kernel row, kernel column) like ``weight.reshape(O, -1)``, so
the forward pass is the single matmul ``W @ cols``.  The pixel (column) order is
one of two, chosen per layer from the output width (``Conv2d.batch_last``):

* batch outermost, (sample, output row, output column): the output
  ``(O, N, OH, OW)`` becomes NCHW by a cheap block copy, but each window copy
  moves runs of only OW contiguous elements;
* batch innermost, (output row, output column, sample): each window copy moves
  runs of OW*N elements, but the output must be transposed back to NCHW.

A backend may offer ``im2col(x, kernel, stride, padding, batch_last)`` and
``col2im(cols, shape, kernel, stride, padding, batch_last)`` with exactly these
layouts (the NumPy backend does, with ``sliding_window_view``), and
``col2im_matmul(wt, dy, shape, ...)`` = ``col2im(wt @ dy, shape, ...)`` fused
(NumPy: one small matmul per kernel offset, added while still in cache);
otherwise the portable functions below are used.  They only stack and concatenate, never
assign into an array, so they run on immutable arrays (JAX) too.
"""

from __future__ import annotations

from typing import Any

from nnx import init
from nnx.layers.base import Layer, Parameter

Pair = tuple[int, int]


def pair(value: int | tuple[int, int], what: str, minimum: int = 1) -> Pair:
    """``value`` as an (height, width) pair of ints >= ``minimum`` (ValueError otherwise)."""
    if isinstance(value, int) and not isinstance(value, bool):
        out = (value, value)
    else:
        try:
            out = tuple(int(v) for v in value)  # type: ignore[union-attr]
        except TypeError:
            raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}") from None
        if len(out) != 2:
            raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")
    if min(out) < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value!r}")
    return out  # type: ignore[return-value]


def output_size(size: Pair, kernel: Pair, stride: Pair, padding: Pair) -> Pair:
    """(OH, OW) of a sliding window over an input of spatial ``size`` (floor mode)."""
    return tuple(  # type: ignore[return-value]
        (size[a] + 2 * padding[a] - kernel[a]) // stride[a] + 1 for a in range(2)
    )


def window_output(
    layer: Any, x: Any, kernel: Pair, stride: Pair, padding: Pair, channels: int | None = None
) -> Pair:
    """(OH, OW) for NCHW input ``x``, or a ValueError naming ``layer`` and what is wrong."""
    if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        c = "C" if channels is None else channels
        raise ValueError(
            f"{layer.label()} expects inputs of shape (N, {c}, H, W), got {tuple(x.shape)}"
        )
    oh, ow = output_size(tuple(x.shape[2:]), kernel, stride, padding)
    if oh < 1 or ow < 1:
        raise ValueError(
            f"{layer.label()}: input {tuple(x.shape)} is smaller than the window {kernel} "
            f"(with padding {padding})"
        )
    return oh, ow


def pad_axis(xp: Any, a: Any, axis: int, before: int, after: int, fill: float = 0.0) -> Any:
    """``a`` with ``before``/``after`` entries of ``fill`` concatenated along ``axis``."""
    if before == 0 and after == 0:
        return a
    parts = []
    for n in (before, after):
        shape = list(a.shape)
        shape[axis] = n
        parts.append(xp.full(tuple(shape), fill, dtype=a.dtype, device=a.device) if n else None)
    return xp.concat([p for p in (parts[0], a, parts[1]) if p is not None], axis=axis)


def _dilate(xp: Any, a: Any, axis: int, step: int) -> Any:
    """Insert ``step - 1`` zeros between consecutive entries along ``axis``."""
    n = a.shape[axis]
    if step == 1 or n == 1:
        return a
    zeros = xp.zeros(a.shape, dtype=a.dtype, device=a.device)
    stacked = xp.stack([a] + [zeros] * (step - 1), axis=axis + 1)
    shape = list(a.shape)
    shape[axis] = n * step
    merged = xp.reshape(stacked, tuple(shape))
    index = [slice(None)] * a.ndim
    index[axis] = slice(0, (n - 1) * step + 1)
    return merged[tuple(index)]


def _layout(batch_last: bool) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(NCHW -> internal permutation, its inverse, first spatial axis of the internal order)."""
    if batch_last:
        return (1, 2, 3, 0), (3, 0, 1, 2), 1  # (C, H, W, N)
    return (1, 0, 2, 3), (1, 0, 2, 3), 2  # (C, N, H, W)


def im2col(
    xp: Any, x: Any, kernel: Pair, stride: Pair, padding: Pair, batch_last: bool = True
) -> Any:
    """Portable im2col: NCHW ``x`` -> ``(C*kh*kw, OH*OW*N)`` by kh*kw strided slices.

    Columns are ordered (output row, output column, sample) when ``batch_last``,
    else (sample, output row, output column).
    """
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = output_size((h, w), kernel, stride, padding)
    perm, _, sp = _layout(batch_last)
    xt = xp.permute_dims(x, perm)
    xt = pad_axis(xp, pad_axis(xp, xt, sp, ph, ph), sp + 1, pw, pw)
    index = [slice(None)] * 4
    slices = []
    for i in range(kh):
        for j in range(kw):
            index[sp] = slice(i, i + sh * (oh - 1) + 1, sh)
            index[sp + 1] = slice(j, j + sw * (ow - 1) + 1, sw)
            slices.append(xt[tuple(index)])
    return xp.reshape(xp.stack(slices, axis=1), (c * kh * kw, oh * ow * n))


def col2im(
    xp: Any,
    cols: Any,
    shape: tuple[int, ...],
    kernel: Pair,
    stride: Pair,
    padding: Pair,
    batch_last: bool = True,
) -> Any:
    """Portable col2im: sum the windows of ``cols`` back into an NCHW array of ``shape``.

    The adjoint of :func:`im2col` (same ``batch_last`` column order).  Built from
    zero-padded (concatenated) copies, row by row, so it needs no item
    assignment; overlapping windows add up.
    """
    n, c, h, w = shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = output_size((h, w), kernel, stride, padding)
    hp, wp = h + 2 * ph, w + 2 * pw
    _, inverse, sp = _layout(batch_last)
    rest = (oh, ow, n) if batch_last else (n, oh, ow)
    d = xp.reshape(cols, (c, kh, kw, *rest))
    d = _dilate(xp, _dilate(xp, d, sp + 2, sh), sp + 3, sw)
    lh, lw = d.shape[sp + 2], d.shape[sp + 3]
    total = None
    for i in range(kh):
        row = None
        for j in range(kw):
            piece = pad_axis(xp, d[:, i, j, ...], sp + 1, j, wp - j - lw)
            row = piece if row is None else row + piece
        row = pad_axis(xp, row, sp, i, hp - i - lh)
        total = row if total is None else total + row
    index = [slice(None)] * 4
    index[sp], index[sp + 1] = slice(ph, ph + h), slice(pw, pw + w)
    return xp.permute_dims(total[tuple(index)], inverse)


def to_nchw(xp: Any, flat: Any, shape: tuple[int, int, int, int], batch_last: bool) -> Any:
    """Conv output ``(C, OH*OW*N)`` (or ``(C, N*OH*OW)``) -> NCHW, materialised in NCHW order.

    Flattening the permuted view forces the copy where the library makes one
    (NumPy, torch), so the next layers see an ordinary C-contiguous array:
    elementwise ops such as ``where`` are several times slower on permuted views.
    """
    n, c, h, w = shape
    _, inverse, _ = _layout(batch_last)
    inner = (c, h, w, n) if batch_last else (c, n, h, w)
    t = xp.permute_dims(xp.reshape(flat, inner), inverse)
    return xp.reshape(xp.reshape(t, (-1,)), shape)


def from_nchw(xp: Any, dy: Any, batch_last: bool, transpose2d: Any = None) -> Any:
    """NCHW ``dy`` -> ``(C, OH*OW*N)`` (or ``(C, N*OH*OW)``), the layout of :func:`to_nchw`.

    ``transpose2d`` (a backend's fast contiguous 2-D transpose) is used when given.
    """
    n, c = dy.shape[:2]
    if batch_last:  # (N, C*OH*OW) transposed
        flat = xp.reshape(dy, (n, -1))
        return xp.reshape(transpose2d(flat) if transpose2d is not None else flat.T, (c, -1))
    return xp.reshape(xp.permute_dims(dy, (1, 0, 2, 3)), (c, -1))


class Conv2d(Layer):
    """2-D convolution (cross-correlation, as PyTorch) on NCHW inputs via im2col + one matmul.

    Weights (out, in, kh, kw) are drawn by ``init_name`` (He uniform by default,
    fan_in = in * kh * kw); the bias starts at zero, like nnx's Linear (PyTorch
    draws it uniformly instead).
    """

    #: window layout: "auto" (by the cost model of ``batch_last``), "inner" or "outer"
    batch_layout = "auto"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        init_name: str = "he_uniform",
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"Conv2d needs positive channel counts, got {in_channels} -> {out_channels}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding", minimum=0)
        kh, kw = self.kernel_size
        fan_in, fan_out = in_channels * kh * kw, out_channels * kh * kw
        w = init.draw(init_name, (out_channels, in_channels, kh, kw), fan_in, fan_out)
        self.weight = Parameter(self.backend.asarray(w), "weight")
        zeros = init.zeros((out_channels,))
        self.bias = Parameter(self.backend.asarray(zeros), "bias") if bias else None
        self._cols: Any = None
        self._shape: tuple[int, ...] = ()
        self._batch_last = True
        self._ones: Any = None

    def _check(self, x: Any) -> Pair:
        return window_output(self, x, self.kernel_size, self.stride, self.padding, self.in_channels)

    def batch_last(self, ow: int) -> bool:
        """Window layout for output width ``ow``: True puts the batch innermost.

        Batch outermost, each window copy moves runs of only OW elements
        (C*kh*kw*N*OH runs); batch innermost, runs of OW*N, but the output and
        its gradient (O*OH*OW*N elements) must be transposed to and from NCHW.
        Measured on NumPy, batch outermost pays when O*OW >= 4*C*kh*kw, e.g.
        LeNet's first conv (1 -> 8 channels, 5x5, 24 wide) but not its second
        (8 -> 16, 5x5, 8 wide).
        """
        if self.batch_layout != "auto":
            return self.batch_layout == "inner"
        kh, kw = self.kernel_size
        return self.out_channels * ow < 4 * self.in_channels * kh * kw

    def forward(self, x: Any) -> Any:
        xp = self.xp
        oh, ow = self._check(x)
        n, o = x.shape[0], self.out_channels
        batch_last = self.batch_last(ow)
        args = (self.kernel_size, self.stride, self.padding, batch_last)
        fast = getattr(self.backend, "im2col", None)
        cols = fast(x, *args) if fast is not None else im2col(xp, x, *args)
        y = xp.reshape(self.weight.value, (o, -1)) @ cols  # one matmul: (O, pixels)
        if self.bias is not None:
            y += xp.reshape(self.bias.value, (o, 1))
        if self.training:
            self._cols, self._shape, self._batch_last = cols, tuple(x.shape), batch_last
        else:
            self._cols = None
        return to_nchw(xp, y, (n, o, oh, ow), batch_last)

    def backward(self, dy: Any) -> Any:
        cols = self._cols
        if cols is None:
            raise self._no_forward()
        xp, o = self.xp, self.out_channels
        transpose2d = getattr(self.backend, "transpose2d", None)
        dy2 = from_nchw(xp, dy, self._batch_last, transpose2d)  # (O, pixels), as cols
        # (cols @ dy2^T)^T: the orientation BLAS runs fastest with a long inner dimension
        self.weight.accumulate(xp.reshape((cols @ dy2.T).T, self.weight.shape))
        if self.bias is not None:
            self.bias.accumulate(dy2 @ self._ones_like_columns(dy2))
        if not self.requires_input_grad:
            return None
        wt = xp.reshape(self.weight.value, (o, -1)).T
        args = (self._shape, self.kernel_size, self.stride, self.padding, self._batch_last)
        fused = getattr(self.backend, "col2im_matmul", None)
        if fused is not None:
            return fused(wt, dy2, *args)
        fast = getattr(self.backend, "col2im", None)
        return fast(wt @ dy2, *args) if fast is not None else col2im(xp, wt @ dy2, *args)

    def _ones_like_columns(self, a: Any) -> Any:
        """A cached vector of ones, one per column of ``a``: ``a @ ones`` sums the rows
        as one BLAS call, 2-3x faster than ``sum(a, axis=1)`` on NumPy."""
        ones = self._ones
        if ones is None or ones.shape[0] != a.shape[1] or ones.dtype != a.dtype:
            ones = self._ones = self.xp.ones((a.shape[1],), dtype=a.dtype, device=a.device)
        return ones

    def clear(self) -> None:
        self._cols = None
        self._ones = None

    def extra_repr(self) -> str:
        kh, kw = self.kernel_size
        text = f"{self.in_channels}, {self.out_channels}, kernel_size=({kh}, {kw})"
        if self.stride != (1, 1):
            text += f", stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        return text + ("" if self.bias is not None else ", bias=False")

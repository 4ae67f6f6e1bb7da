"""Conv2d by im2col + one matmul, and the portable window gathering shared with pooling.

Layout.  Layers take and return NCHW arrays (PyTorch semantics).  Internally the
window matrix is ``cols`` of shape ``(C*kh*kw, OH*OW*N)``: rows ordered
(channel, kernel row, kernel column) like ``weight.reshape(O, -1)``, columns
ordered (output row, output column, sample).  Keeping the batch innermost makes
every window copy a run of ``OW*N`` contiguous elements instead of ``OW``, and the
conv output ``W @ cols`` is ``(O, OH, OW, N)``, returned as an NCHW *view*
(``permute_dims``).  On NumPy the activations of a CNN therefore live in
channel-height-width-batch memory order end to end, so no layer pays a transpose.

A backend may offer ``im2col(x, kernel, stride, padding)`` and
``col2im(cols, shape, kernel, stride, padding)`` with exactly these layouts (the
NumPy backend does, with ``sliding_window_view``); otherwise the portable
functions below are used.  They only stack and concatenate, never assign into
an array, so they run on immutable arrays (JAX) too.
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


def im2col(xp: Any, x: Any, kernel: Pair, stride: Pair, padding: Pair) -> Any:
    """Portable im2col: NCHW ``x`` -> ``(C*kh*kw, OH*OW*N)`` by kh*kw strided slices."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = output_size((h, w), kernel, stride, padding)
    xt = xp.permute_dims(x, (1, 2, 3, 0))  # (C, H, W, N)
    xt = pad_axis(xp, pad_axis(xp, xt, 1, ph, ph), 2, pw, pw)
    slices = [
        xt[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    return xp.reshape(xp.stack(slices, axis=1), (c * kh * kw, oh * ow * n))


def col2im(
    xp: Any, cols: Any, shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair
) -> Any:
    """Portable col2im: sum the windows of ``cols`` back into an NCHW array of ``shape``.

    Built from zero-padded (concatenated) copies, row by row, so it needs no item
    assignment; overlapping windows add up.
    """
    n, c, h, w = shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = output_size((h, w), kernel, stride, padding)
    hp, wp = h + 2 * ph, w + 2 * pw
    d6 = xp.reshape(cols, (c, kh, kw, oh, ow, n))
    d6 = _dilate(xp, _dilate(xp, d6, 3, sh), 4, sw)
    lh, lw = d6.shape[3], d6.shape[4]
    total = None
    for i in range(kh):
        row = None
        for j in range(kw):
            piece = pad_axis(xp, d6[:, i, j, ...], 2, j, wp - j - lw)
            row = piece if row is None else row + piece
        row = pad_axis(xp, row, 1, i, hp - i - lh)
        total = row if total is None else total + row
    total = total[:, ph : ph + h, pw : pw + w, :]
    return xp.permute_dims(total, (3, 0, 1, 2))


class Conv2d(Layer):
    """2-D convolution (cross-correlation, as PyTorch) on NCHW inputs via im2col + one matmul.

    Weights (out, in, kh, kw) are drawn by ``init_name`` (He uniform by default,
    fan_in = in * kh * kw); the bias starts at zero, like nnx's Linear (PyTorch
    draws it uniformly instead).
    """

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

    def _check(self, x: Any) -> Pair:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.label()} expects inputs of shape (N, {self.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        oh, ow = output_size(tuple(x.shape[2:]), self.kernel_size, self.stride, self.padding)
        if oh < 1 or ow < 1:
            raise ValueError(
                f"{self.label()}: input {tuple(x.shape)} is smaller than the kernel "
                f"{self.kernel_size} (with padding {self.padding})"
            )
        return oh, ow

    def forward(self, x: Any) -> Any:
        xp = self.xp
        oh, ow = self._check(x)
        n = x.shape[0]
        fast = getattr(self.backend, "im2col", None)
        args = (self.kernel_size, self.stride, self.padding)
        cols = fast(x, *args) if fast is not None else im2col(xp, x, *args)
        o = self.out_channels
        y = xp.reshape(self.weight.value, (o, -1)) @ cols  # (O, OH*OW*N)
        if self.bias is not None:
            y += xp.reshape(self.bias.value, (o, 1))
        if self.training:
            self._cols, self._shape = cols, tuple(x.shape)
        else:
            self._cols = None
        return xp.permute_dims(xp.reshape(y, (o, oh, ow, n)), (3, 0, 1, 2))

    def backward(self, dy: Any) -> Any:
        cols = self._cols
        if cols is None:
            raise self._no_forward()
        xp, o = self.xp, self.out_channels
        dy2 = xp.reshape(xp.permute_dims(dy, (1, 2, 3, 0)), (o, -1))  # (O, OH*OW*N)
        self.weight.accumulate(xp.reshape(dy2 @ cols.T, self.weight.shape))
        if self.bias is not None:
            self.bias.accumulate(xp.sum(dy2, axis=1))
        if not self.requires_input_grad:
            return None
        dcols = xp.reshape(self.weight.value, (o, -1)).T @ dy2
        args = (self._shape, self.kernel_size, self.stride, self.padding)
        fast = getattr(self.backend, "col2im", None)
        return fast(dcols, *args) if fast is not None else col2im(xp, dcols, *args)

    def clear(self) -> None:
        self._cols = None

    def extra_repr(self) -> str:
        kh, kw = self.kernel_size
        text = f"{self.in_channels}, {self.out_channels}, kernel_size=({kh}, {kw})"
        if self.stride != (1, 1):
            text += f", stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        return text + ("" if self.bias is not None else ", bias=False")

"""Sliding-window helpers shared by convolution and pooling, on the array API only.

Layout.  Layers take and return C-contiguous NCHW arrays (PyTorch semantics).
The window matrix ``cols`` has shape ``(C*kh*kw, pixels)``: rows ordered
(channel, kernel row, kernel column) like ``weight.reshape(O, -1)``, so a
convolution is the single matmul ``W @ cols``.  The pixel (column) order is one
of two (``batch_last``):

* batch innermost, (output row, output column, sample): each window copy moves
  runs of OW*N elements, but the output must be transposed back to NCHW;
* batch outermost, (sample, output row, output column): the output becomes
  NCHW by a cheap block copy, but each window copy moves runs of only OW.

The portable :func:`im2col` / :func:`col2im` here only slice, stack and
concatenate, never assign into an array, so they run on immutable arrays (JAX)
too.  Backends speed them up through their :class:`nnx.backend.Ops`.
"""

from __future__ import annotations

import operator
from typing import Any

Pair = tuple[int, int]


def count(value: Any, what: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``; ints and NumPy integers only (2.7, "3", True refused)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {number}")
    return number


def pair(value: int | tuple[int, int], what: str, minimum: int = 1) -> Pair:
    """``value`` as an (height, width) pair of ints >= ``minimum`` (ValueError otherwise).

    Never truncates: a kernel of 2.7 or (2.7, 2.7) is an error, not 2.
    """
    if isinstance(value, str) or not hasattr(value, "__len__"):
        items: Any = (value, value)
    elif len(value) == 2:
        items = value
    else:
        raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")
    try:
        return (count(items[0], what, minimum), count(items[1], what, minimum))
    except ValueError as err:
        if "integer" in str(err):
            raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}") from None
        raise


def output_size(size: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair) -> Pair:
    """(OH, OW) of a sliding window over spatial ``size`` (floor mode): the one formula."""
    return (
        (size[0] + 2 * padding[0] - kernel[0]) // stride[0] + 1,
        (size[1] + 2 * padding[1] - kernel[1]) // stride[1] + 1,
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


def layout(batch_last: bool) -> tuple[tuple[int, ...], tuple[int, ...], int]:
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
    perm, _, sp = layout(batch_last)
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
    _, inverse, sp = layout(batch_last)
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
    """Window-layout output ``(C, OH*OW*N)`` (or ``(C, N*OH*OW)``) -> C-contiguous NCHW.

    Flattening the permuted view forces the copy where the library makes one
    (NumPy, torch), so the next layers see an ordinary C-contiguous array:
    elementwise ops such as ``where`` are several times slower on permuted views.
    """
    n, c, h, w = shape
    _, inverse, _ = layout(batch_last)
    inner = (c, h, w, n) if batch_last else (c, n, h, w)
    t = xp.permute_dims(xp.reshape(flat, inner), inverse)
    return xp.reshape(xp.reshape(t, (-1,)), shape)

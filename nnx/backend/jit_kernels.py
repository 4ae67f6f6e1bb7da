"""Numba loops behind :class:`~nnx.backend.jit.JitOps` (imported only when numba is installed).

Each loop does in one pass over memory what the NumPy kernel does in several
ufunc sweeps, and does the arithmetic in the same order, so results match the
portable defaults exactly (no ``fastmath``: no reassociation, no fused
multiply-add); col2im, the column sums of ``relu_backward_sum0``, cross-entropy and
BCE-with-logits sum in another order and match to rounding.  Arguments are
C-contiguous arrays of one float dtype; JitOps checks that and hands anything else
to the NumPy kernels.  Compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

jit = numba.njit(cache=True, nogil=True, boundscheck=False)


@jit
def momentum_step(value, buf, g, momentum, lr):  # pragma: no cover - compiled
    """buf = buf * momentum + g; value -= lr * buf (flat arrays, in place)."""
    for i in range(value.size):
        b = buf[i] * momentum + g[i]
        buf[i] = b
        value[i] -= lr * b


@jit
def adam_step(value, m, v, g, b1, c1, b2, c2, step_size, eps_hat):  # pragma: no cover
    """m = m * b1 + c1 * g; v = v * b2 + c2 * (g * g);
    value -= (m / (sqrt(v) + eps_hat)) * step_size (C-contiguous arrays, in place)."""
    n = value.size
    value, m, v, g = value.reshape(n), m.reshape(n), v.reshape(n), g.reshape(n)
    t = value.dtype.type  # the scalars come as Python floats: rounded to the arrays' dtype
    b1, c1, b2, c2, step_size, eps_hat = t(b1), t(c1), t(b2), t(c2), t(step_size), t(eps_hat)
    for i in range(n):
        gi = g[i]
        mi = m[i] * b1 + c1 * gi
        vi = v[i] * b2 + c2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        value[i] -= (mi / (np.sqrt(vi) + eps_hat)) * step_size


@jit
def relu(x, out):  # pragma: no cover - compiled
    """out = maximum(x, 0): 0 where x <= 0, x elsewhere (NaN stays NaN, as in ``maximum``)."""
    zero = x.dtype.type(0)
    for i in range(x.size):
        v = x[i]
        out[i] = zero if v <= zero else v


@jit
def relu_backward(dy, y, out):  # pragma: no cover - compiled
    """out = dy * (y > 0), the 0/1 mask multiplied in as the default does (NaN * 0 is NaN)."""
    zero, one = dy.dtype.type(0), dy.dtype.type(1)
    for i in range(dy.size):
        out[i] = dy[i] * (one if y[i] > 0 else zero)


@jit
def bias_relu(y, bias):  # pragma: no cover - compiled
    """y = maximum(y + bias, 0) in place, y (N, C) and bias (C,), as ``relu`` rounds it."""
    zero = y.dtype.type(0)
    n, c = y.shape
    for i in range(n):
        for j in range(c):
            v = y[i, j] + bias[j]
            y[i, j] = zero if v <= zero else v


@jit
def relu_backward_sum0(dy, y, out, total):  # pragma: no cover - compiled
    """out = dy * (y > 0) as ``relu_backward``, and total = its column sums (row by row)."""
    zero, one = dy.dtype.type(0), dy.dtype.type(1)
    n, c = dy.shape
    for j in range(c):
        total[j] = zero
    for i in range(n):
        for j in range(c):
            v = dy[i, j] * (one if y[i, j] > 0 else zero)
            out[i, j] = v
            total[j] += v


@jit
def cross_entropy(logits, labels, smoothing, scale, grad):  # pragma: no cover - compiled
    """Softmax cross-entropy rows (see Ops.cross_entropy): fills ``grad``, returns the loss.

    Per row: the maximum, exp of the shifted logits into ``grad``, their sum, then
    ``grad = (exp / total - target) * scale`` and the row's loss
    ``log(total) - sum(target * shifted)`` over the classes whose target is not 0.
    """
    n, c = logits.shape
    off = smoothing / c
    hit = 1.0 - smoothing + off  # the label's target; the others get ``off``
    loss = 0.0
    for i in range(n):
        top = logits[i, 0]
        for k in range(1, c):
            if logits[i, k] > top:
                top = logits[i, k]
        total = logits.dtype.type(0)
        for k in range(c):
            e = np.exp(logits[i, k] - top)
            grad[i, k] = e
            total += e
        label = labels[i]
        picked = 0.0
        for k in range(c):
            t = hit if k == label else off
            grad[i, k] = (grad[i, k] / total - t) * scale
            if t != 0.0:
                picked += t * (logits[i, k] - top)
        loss += np.log(total) - picked
    return loss * scale


@jit
def bce_with_logits(z, y, scale, grad):  # pragma: no cover - compiled
    """Binary cross-entropy on logits (see Ops.bce_with_logits): fills ``grad``, returns the
    loss summed over the elements (in float64, then rounded by the caller)."""
    n = z.size
    z, y, grad = z.reshape(n), y.reshape(n), grad.reshape(n)
    zero, half = z.dtype.type(0), z.dtype.type(0.5)
    total = 0.0
    for i in range(n):
        zi, yi = z[i], y[i]
        total += (zi if zi > zero else zero) - zi * yi + np.log1p(np.exp(-abs(zi)))
        grad[i] = (half * np.tanh(half * zi) + half - yi) * scale
    return total


@jit
def first_bad_label(labels, c):  # pragma: no cover - compiled
    """Index of the first label outside [0, c), or -1."""
    for i in range(labels.size):
        if labels[i] < 0 or labels[i] >= c:
            return i
    return -1


@jit
def maxpool2x2_forward(x, first, y, rows, ow):  # pragma: no cover - compiled
    """2x2 windows, stride 2, flat arrays: each window's maximum, as the default's pairwise
    max(max(t0, t1), max(t2, t3)) with a NaN winning as in ``maximum``, and in ``first`` the
    position (0-3, row-major) of the first element equal to it (3 when none is: a NaN).
    ``x`` has 2*rows rows of 2*ow; ``y`` and ``first`` have rows rows of ow."""
    w = 2 * ow
    for r in range(rows):
        top = 2 * r * w
        bottom = top + w
        o = r * ow
        for j in range(ow):
            a = x[top + 2 * j]
            b = x[top + 2 * j + 1]
            c = x[bottom + 2 * j]
            d = x[bottom + 2 * j + 1]
            ab = a if (a >= b or a != a) else b
            if b != b:
                ab = b
            cd = c if (c >= d or c != c) else d
            if d != d:
                cd = d
            m = ab if (ab >= cd or ab != ab) else cd
            if cd != cd:
                m = cd
            y[o + j] = m
            first[o + j] = 0 if a == m else (1 if b == m else (2 if c == m else 3))


@jit
def maxpool2x2_backward(first, dy, dx, rows, ow):  # pragma: no cover - compiled
    """2x2 windows: each window's gradient to its first maximum, by the default's
    arithmetic (piece = rest * mask; rest = rest - piece; the last position takes rest),
    the masks read from ``first`` (the tiles equal to the maximum before it are none)."""
    w = 2 * ow
    zero = dy.dtype.type(0)
    one = dy.dtype.type(1)
    for r in range(rows):
        top = 2 * r * w
        bottom = top + w
        o = r * ow
        for j in range(ow):
            k = first[o + j]
            rest = dy[o + j]
            p = rest * (one if k == 0 else zero)
            dx[top + 2 * j] = p
            rest = rest - p
            p = rest * (one if k == 1 else zero)
            dx[top + 2 * j + 1] = p
            rest = rest - p
            p = rest * (one if k == 2 else zero)
            dx[bottom + 2 * j] = p
            rest = rest - p
            dx[bottom + 2 * j + 1] = rest


@jit
def conv_output_batch_outer(y, bias, out, n, c, hw):  # pragma: no cover - compiled
    """out[p, q, :] = y[q, p, :] + bias[q]: (C, N, H*W) to NCHW with the bias, flat arrays."""
    for p in range(n):
        for q in range(c):
            src = (q * n + p) * hw
            dst = (p * c + q) * hw
            b = bias[q]
            for s in range(hw):
                out[dst + s] = y[src + s] + b


@jit
def col2im_batch_last(cols, buf, sh, sw):  # pragma: no cover - compiled
    """buf[c, i+sh*y, j+sw*x, :] += cols[c, i, j, y, x, :] (buf: padded (C, Hp, Wp, N), zeroed)."""
    c, kh, kw, oh, ow, n = cols.shape
    for q in range(c):
        for i in range(kh):
            for j in range(kw):
                for y in range(oh):
                    r = i + sh * y
                    for x in range(ow):
                        s = j + sw * x
                        for p in range(n):
                            buf[q, r, s, p] += cols[q, i, j, y, x, p]


@jit
def col2im_batch_outer(cols, buf, sh, sw):  # pragma: no cover - compiled
    """buf[n, c, i+sh*y, j+sw*x] += cols[c, i, j, n, y, x] (buf: padded NCHW, zeroed)."""
    c, kh, kw, n, oh, ow = cols.shape
    for q in range(c):
        for i in range(kh):
            for j in range(kw):
                for p in range(n):
                    for y in range(oh):
                        r = i + sh * y
                        for x in range(ow):
                            buf[p, q, r, j + sw * x] += cols[q, i, j, p, y, x]

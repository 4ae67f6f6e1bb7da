"""The ``ops`` check: every kernel a backend's Ops subclass overrides agrees with the default.

The kit finds the overrides itself (methods of ``type(backend.ops)`` that are not
``Ops``'s own) and runs each, and the portable default, on the cases below.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import array_api_compat
import numpy as np

from nnx.backend import Backend, Ops, threads, to_numpy
from nnx.testing.helpers import Skip, _check, _host
from nnx.testing.tolerances import assert_within, product_bound, sum_bound, ulp_bound

Case = tuple[str, tuple[Any, ...], dict[str, Any]]

#: (shape, kernel, stride, padding): a padded 3x3 and a strided, unevenly padded window
WINDOWS = [((2, 3, 6, 5), (3, 3), (1, 1), (1, 1)), ((2, 2, 7, 6), (3, 2), (2, 3), (0, 1))]


def kernel_names() -> list[str]:
    """The kernels of the Ops table (its public methods)."""
    return [n for n, f in inspect.getmembers(Ops, inspect.isfunction) if not n.startswith("_")]


def overridden(ops: Ops) -> list[str]:
    """The kernels ``type(ops)`` overrides."""
    return [n for n in kernel_names() if getattr(type(ops), n) is not getattr(Ops, n)]


def _windows(b: Backend) -> Iterator[tuple[str, Any, tuple[Any, ...], bool]]:
    for shape, k, s, p in WINDOWS:
        for batch_last in (True, False):
            what = f"{shape}, kernel {k}, stride {s}, padding {p}, batch_last={batch_last}"
            yield what, b.asarray(_host(shape)), (k, s, p), batch_last


def _cases(name: str, b: Backend, ref: Ops) -> Iterator[Case]:
    """(description, args, kwargs) for kernel ``name``; arrays fresh for every call."""
    if name in ("sum_axis0", "sum_axis1"):
        for shape in ((5, 3), (1, 7), (64, 33)):
            kw = [{}] if name == "sum_axis0" else [{}, {"keepdims": True}]
            for k in kw:
                yield f"{shape} {k}", (b.asarray(_host(shape)),), k
    elif name == "conv_output":
        for shape in ((2, 3, 4, 5), (3, 4, 2, 1)):
            n, c, h, w = shape
            for last in (True, False):
                y = b.asarray(_host((c, n * h * w), 1))
                for bias in (b.asarray(_host((c,), 2)), None):
                    what = f"{shape}, batch_last={last}, bias={bias is not None}"
                    yield what, (y, bias, shape, last), {}
    elif name == "relu":
        for shape in ((6, 5), (2, 3, 4, 5)):
            yield f"{shape}", (b.asarray(_host(shape, 1)),), {}
    elif name == "relu_backward":
        for shape in ((6, 5), (2, 3, 4, 5)):
            yield f"{shape}", (b.asarray(_host(shape, 1)), b.asarray(_host(shape, 2))), {}
    elif name == "bias_relu":  # a product through its bias and ReLU, or no bias
        for shape in ((6, 5), (64, 33)):
            y = _host(shape, 1)
            y[0, :3] = (-1.0, 0.0, 1.0)  # exact ties at zero once the bias is added
            bias = _host(shape[1:], 2)
            bias[:3] = (1.0, 0.0, -1.0)
            for with_bias in (True, False):
                what = f"{shape}, bias={with_bias}"
                yield what, (b.asarray(y), b.asarray(bias) if with_bias else None), {}
    elif name == "relu_backward_sum0":
        for shape in ((6, 5), (64, 33)):
            yield f"{shape}", (b.asarray(_host(shape, 1)), b.asarray(_host(shape, 2))), {}
    elif name == "momentum_update":
        mu = b.asarray(0.9)
        for shape in ((4, 3), (7, 9)):
            yield f"{shape}", (b.asarray(_host(shape, 1)), b.asarray(_host(shape, 2)), mu), {}
    elif name == "sub_scaled":
        for shape in ((4, 3), (13, 7)):
            yield f"{shape}", (b.asarray(_host(shape, 1)), 0.05, b.asarray(_host(shape, 2))), {}
    elif name == "momentum_step":
        mu = b.asarray(0.9)
        for shape in ((4, 3), (13, 7)):
            v, buf, g = (b.asarray(_host(shape, k)) for k in (1, 2, 3))
            yield f"{shape}", (v, buf, g, mu, 0.05), {}
    elif name == "adam_step":
        betas = tuple(b.asarray(x) for x in (0.9, 0.1, 0.999, 0.001))
        for shape in ((4, 3), (13, 7)):
            value, m, g = (b.asarray(_host(shape, k)) for k in (1, 2, 3))
            v = b.asarray(np.abs(_host(shape, 4)))  # a second moment: never negative
            yield f"{shape}", (value, m, v, g, betas, 0.01, 1e-8), {}
    elif name in ("maxpool_forward", "maxpool_backward"):
        # a ReLU-like input with many ties at 0 (the first maximum takes the gradient);
        # 5x7 with 2x2 windows: floor mode drops a row and a column; each table's
        # backward gets what its own forward kept (see _compare_maxpool)
        for shape, k in (((2, 3, 4, 6), (2, 2)), ((2, 2, 5, 7), (2, 2)), ((2, 1, 7, 5), (3, 2)),
                         ((3, 2, 6, 6), (3, 3)), ((3, 2, 3, 3), (1, 1))):  # fmt: skip
            oh, ow = shape[2] // k[0], shape[3] // k[1]
            x = ref.relu(b.asarray(_host(shape, 3)))
            dy = b.asarray(_host((shape[0], shape[1], oh, ow), 4))
            yield f"{shape}, kernel {k}", (x, dy, k, oh, ow), {}
    elif name == "transpose2d":  # rows of 512 float32 (2 KiB) take NumPy's staged path
        for shape in ((3, 5), (4, 512)):
            yield f"{shape}", (b.asarray(_host(shape)),), {}
    elif name in ("im2col", "from_nchw"):
        for what, x, (k, s, p), last in _windows(b):
            if name == "im2col":
                yield what, (x, k, s, p, last), {}
            else:
                yield f"{tuple(x.shape)}, batch_last={last}", (x, last), {}
    elif name in ("col2im", "col2im_matmul"):
        for what, x, (k, s, p), last in _windows(b):
            cols = ref.im2col(x, k, s, p, last)
            shape = tuple(x.shape)
            if name == "col2im":
                yield what, (b.asarray(_host(tuple(cols.shape), 4)), shape, k, s, p, last), {}
            else:  # col2im(wt @ dy) of a conv with 4 output channels
                wt = b.asarray(_host((cols.shape[0], 4), 5))
                dy = b.asarray(_host((4, cols.shape[1]), 6))
                yield what, (wt, dy, shape, k, s, p, last), {}
    elif name == "pool_tiles":
        for shape, k in (((2, 3, 4, 6), (2, 2)), ((2, 1, 7, 5), (3, 2))):
            oh, ow = shape[2] // k[0], shape[3] // k[1]
            yield f"{shape}, kernel {k}", (b.asarray(_host(shape)), k, oh, ow), {}
    elif name == "pool_untile":
        for shape, k in (((2, 3, 4, 6), (2, 2)), ((2, 1, 7, 5), (3, 2))):
            oh, ow = shape[2] // k[0], shape[3] // k[1]
            pieces = [b.asarray(_host((shape[0], shape[1], oh, ow), i)) for i in range(k[0] * k[1])]
            yield f"{shape}, kernel {k}", (pieces, k, shape), {}
    elif name == "cross_entropy":
        for n, c in ((5, 3), (64, 10)):
            labels = b.asarray((np.arange(n) * 7) % c, "int64")  # row 0's label is 0
            for smoothing, scale in ((0.0, 1.0 / n), (0.1, 1.0)):
                logits = _host((n, c), 7)
                if not smoothing:  # a masked class where the target is 0: adds nothing
                    logits[0, 2] = -np.inf
                what = f"({n}, {c}), smoothing {smoothing}, scale {scale:g}"
                yield what, (b.asarray(logits), labels, smoothing, scale), {}
    elif name == "bce_with_logits":
        for shape in ((4, 1), (16, 3)):
            logits = _host(shape, 7) * 20.0  # large |z|: the stable form matters
            logits.flat[0] = 0.0
            target = (_host(shape, 8) > 0).astype(np.float32)
            target.flat[-1] = 0.25  # soft targets are allowed
            yield f"{shape}", (b.asarray(logits), b.asarray(target), 1.0 / logits.size), {}
    elif name == "conv_weight_grad":  # wide enough to be summed in slices on NumPy
        for k, o, m in ((6, 4, 50), (25, 8, 9216)):
            what = f"windows ({k}, {m}), gradient ({o}, {m})"
            yield what, (b.asarray(_host((o, m), 8)), b.asarray(_host((k, m), 9))), {}
    elif name == "first_bad_label":
        for labels, c in (([0, 3, 2, 1], 4), ([0, 4, 1, 9], 4), ([2, 1, -1, 7], 3), ([5], 5)):
            yield f"{labels}, {c} classes", (b.asarray(np.array(labels), "int64"), c), {}
    elif name == "conv_batch_last":
        yield "(1 -> 8, 5x5, 24 wide)", (1, 8, (5, 5), 24), {}
    else:
        raise AssertionError(f"nnx.testing has no cases for the kernel {name!r}; add them")


def _compare_maxpool(fast: Any, slow: Any, case: Case) -> None:
    """Max-pool forward and backward as a pair: what a forward keeps is the table's own
    business; the pooled output and the input gradient must be the default's exactly,
    and an overriding backward must also take the default forward's tiles."""
    what, (x, dy, k, oh, ow), _ = case
    saved, y = fast.maxpool_forward(x, k, oh, ow)
    tiles, want_y = slow.maxpool_forward(x * 1.0, k, oh, ow)
    assert_within(y, want_y, 0.0, f"maxpool_forward({what})")
    shape = tuple(x.shape)
    want = slow.maxpool_backward(tiles, want_y, dy, k, shape)
    got = fast.maxpool_backward(saved, y, dy, k, shape)
    assert_within(got, want, 0.0, f"maxpool_backward({what})")
    got = fast.maxpool_backward(tiles, want_y, dy, k, shape)
    assert_within(got, want, 0.0, f"maxpool_backward({what}, the default forward's tiles)")


#: kernels whose result is exact: copies, a comparison, one correctly rounded operation
EXACT = {
    "transpose2d", "im2col", "from_nchw", "pool_tiles", "pool_untile",
    "relu", "relu_backward", "bias_relu", "conv_output",
}  # fmt: skip

#: the portable kernels on float64 host arrays: the magnitudes the roundings scale with
_HOST = Ops(array_api_compat.numpy)


def _abs64(a: Any) -> np.ndarray:
    return np.abs(np.asarray(to_numpy(a), np.float64))


def _bounds(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """How far a correct override may be from the default, result by result (see
    :mod:`nnx.testing.tolerances`): 0 for exact kernels, else the rounding bound of its
    sums (terms and magnitudes of this case) or of its elementwise formula."""
    if name in EXACT:
        return [0.0]
    a = [_abs64(x) if hasattr(x, "shape") else x for x in args]
    if name in ("sum_axis0", "sum_axis1"):
        axis = 0 if name == "sum_axis0" else 1
        bound = sum_bound(
            a[0].sum(axis=axis, keepdims=kwargs.get("keepdims", False)), a[0].shape[axis]
        )
        return [bound]
    if name == "relu_backward_sum0":
        dx = a[0] * (np.asarray(to_numpy(args[1])) > 0)
        return [0.0, sum_bound(dx.sum(axis=0), dx.shape[0])]
    if name == "momentum_update":
        buf, g, mu = a
        return [ulp_bound(buf * mu, g, ulps=2)]
    if name == "sub_scaled":
        value, scale, g = a
        return [ulp_bound(value, scale * g, ulps=2)]
    if name == "momentum_step":
        value, buf, g, mu, lr = a
        new = buf * mu + g
        return [
            ulp_bound(value, lr * new, lr * buf * mu, lr * g, ulps=2),
            ulp_bound(buf * mu, g, ulps=2),
        ]
    if name == "adam_step":
        value, m, v, g, betas, step_size, eps_hat = a
        b1, c1, b2, c2 = (float(to_numpy(b)) for b in betas)
        m2, v2 = b1 * m + c1 * g, b2 * v + c2 * g * g
        update = step_size * m2 / (np.sqrt(v2) + eps_hat)
        return [ulp_bound(value, update, ulps=8), ulp_bound(b1 * m, c1 * g, ulps=2),
                ulp_bound(b2 * v, c2 * g * g, ulps=3)]  # fmt: skip
    if name == "cross_entropy":
        labels, smoothing, scale = np.asarray(to_numpy(args[1])), args[2], args[3]
        z = np.asarray(to_numpy(args[0]), np.float64)
        n, c = z.shape
        shifted = z - z.max(axis=1, keepdims=True)
        target = (labels[:, None] == np.arange(c)).astype(np.float64) * (
            1 - smoothing
        ) + smoothing / c
        soft = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        picked = np.where(target != 0, np.abs(shifted), 0.0) * target
        log_total = np.log(np.exp(shifted).sum(axis=1))
        # the softmax total of C positive terms, then a log and the picked sum per row
        per_row = np.abs(log_total) + picked.sum(axis=1) + 4 * np.sqrt(c)
        loss = abs(scale) * (sum_bound(per_row.sum(), n * (c + 1)) + ulp_bound(per_row.sum()))
        grad = abs(scale) * ulp_bound(soft * (1 + np.sqrt(c)), target, ulps=4)
        return [loss, grad]
    if name == "bce_with_logits":
        z, y, scale = np.asarray(to_numpy(args[0]), np.float64), a[1], args[2]
        soft = np.log1p(np.exp(-np.abs(z)))
        per = np.maximum(z, 0) + np.abs(z * y) + soft
        loss = sum_bound(per.sum(), z.size) + ulp_bound(soft.sum(), ulps=4)
        # the sigmoid as 0.5 * tanh(0.5 * z) + 0.5: its terms are of size 0.5 however small it is
        halves = 0.5 * np.abs(np.tanh(0.5 * z)) + 0.5
        return [loss, abs(scale) * ulp_bound(halves, y, ulps=4)]
    if name == "conv_weight_grad":
        dy, cols = args
        return [product_bound(dy, np.asarray(to_numpy(cols)).T)]
    if name == "col2im":
        cols, shape, k, s, p, last = args
        windows = _HOST.col2im(a[0], shape, k, s, p, last)
        return [sum_bound(windows, k[0] * k[1])]
    if name == "col2im_matmul":
        wt, dy, shape, k, s, p, last = args
        windows = _HOST.col2im(a[0] @ a[1], shape, k, s, p, last)
        return [sum_bound(windows, wt.shape[1] * k[0] * k[1])]
    raise AssertionError(f"nnx.testing has no rounding bound for the kernel {name!r}; add one")


def _fresh(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Copies of the floating arrays among ``args`` (the others as they are)."""
    out = []
    for a in args:
        floating = hasattr(a, "dtype") and array_api_compat.array_namespace(a).isdtype(
            a.dtype, "real floating"
        )
        out.append(a * 1.0 if floating else a)
    return tuple(out)


def _compare(name: str, fast: Callable, slow: Callable, case: Case) -> None:
    what, args, kwargs = case
    if name in ("maxpool_forward", "maxpool_backward"):
        _compare_maxpool(fast.__self__, slow.__self__, case)
        return
    if name == "first_bad_label":  # an index, exactly
        got, want = fast(*args, **kwargs), slow(*args, **kwargs)
        if got != want or type(got) is not int:
            raise AssertionError(f"first_bad_label({what}) gave {got!r}, the default {want!r}")
        return
    if name == "conv_batch_last":  # a layout choice: any bool is right
        got = fast(*args, **kwargs)
        if not isinstance(got, bool):
            raise AssertionError(f"conv_batch_last({what}) returned {got!r}, not a bool")
        return
    # in-place kernels (momentum_update) get their own copies of the arrays
    bounds = _bounds(name, _fresh(args), kwargs)  # before the kernels update them in place
    fresh = _fresh(args)
    got = fast(*args, **kwargs)
    want = slow(*fresh, **kwargs)
    if not isinstance(want, tuple):
        got, want = (got,), (want,)
    for k, (g, w, bound) in enumerate(zip(got, want, bounds, strict=True)):
        label = f"{name}({what})" + (f"[{k}]" if len(want) > 1 else "")
        assert_within(g, w, bound, label)


@_check("ops")
def _ops(backend: Backend) -> None:
    ops = backend.ops
    if not isinstance(ops, Ops):
        raise AssertionError(f"backend.ops is a {type(ops).__name__}, not an nnx.backend.Ops")
    names = overridden(ops)
    if not names:
        raise Skip(f"{type(ops).__name__} overrides no kernel of Ops")
    ref = Ops(backend.xp, backend.device)
    # once as configured (small cases: one thread), once with every kernel split over
    # threads however small, so the parallel paths of a CPU backend are checked too
    for split in (False, True):
        with threads.forced(3) if split else contextlib.nullcontext():
            for name in names:
                for case in _cases(name, backend, ref):
                    _compare(name, getattr(ops, name), getattr(ref, name), case)

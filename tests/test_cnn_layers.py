"""CNN layers (Conv2d, pools, BatchNorm, Dropout, Flatten) on every backend.

Forward values are checked against hand-written NumPy loops (and against
torch.nn.functional when torch is importable), gradients with nnx.gradcheck.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_rounded, dtype_name, host, magnitudes

import nnx
from nnx import window
from nnx.backend import Ops

RNG = np.random.default_rng(1234)


def data(*shape: int, seed: int = 0) -> np.ndarray:
    """Float32 standard normal host data."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# -- independent references: plain loops over output pixels -----------------------------------


def pad(x: np.ndarray, p: tuple[int, int], value: float = 0.0) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=value)


def windows(x: np.ndarray, k: tuple[int, int], s: tuple[int, int]):
    """Yield (i, j, window) for every output position of an already padded NCHW x."""
    oh = (x.shape[2] - k[0]) // s[0] + 1
    ow = (x.shape[3] - k[1]) // s[1] + 1
    for i in range(oh):
        for j in range(ow):
            yield i, j, x[:, :, i * s[0] : i * s[0] + k[0], j * s[1] : j * s[1] + k[1]]


def conv_ref(x, w, b, stride=(1, 1), padding=(0, 0)) -> np.ndarray:
    x = pad(x.astype(np.float64), padding)
    k = w.shape[2:]
    oh = (x.shape[2] - k[0]) // stride[0] + 1
    ow = (x.shape[3] - k[1]) // stride[1] + 1
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for i, j, win in windows(x, k, stride):
        out[:, :, i, j] = np.einsum("nchw,ochw->no", win, w)
    return out + (0 if b is None else b[None, :, None, None])


def pool_ref(x, kernel, stride, padding, how) -> np.ndarray:
    x = pad(x.astype(np.float64), padding, -np.inf if how == "max" else 0.0)
    oh = (x.shape[2] - kernel[0]) // stride[0] + 1
    ow = (x.shape[3] - kernel[1]) // stride[1] + 1
    out = np.zeros((x.shape[0], x.shape[1], oh, ow))
    for i, j, win in windows(x, kernel, stride):
        out[:, :, i, j] = win.max(axis=(2, 3)) if how == "max" else win.mean(axis=(2, 3))
    return out


def batchnorm_ref(x, gamma, beta, eps, axes):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    shape = [1] * x.ndim
    shape[1] = -1
    return (x - mean) / np.sqrt(var + eps) * gamma.reshape(shape) + beta.reshape(shape)


def assert_batchnorm(y, x, gamma, beta, eps, axes, expected=None) -> None:
    """BatchNorm's training output equals ``expected`` (default: the float64 reference) to
    the rounding of its two means over ``count`` values: an error of the mean or the
    variance moves every normalised value by the same fraction, at the scale of
    ``|gamma| * (|xhat| + 1) + |beta|``."""
    shape = [1] * x.ndim
    shape[1] = -1
    g, b = np.abs(gamma).reshape(shape), np.abs(beta).reshape(shape)
    ref = batchnorm_ref(x, gamma, beta, eps, axes)
    xhat = np.abs(batchnorm_ref(x, np.ones_like(gamma), np.zeros_like(beta), eps, axes))
    count = int(np.prod([x.shape[a] for a in axes]))
    want = ref if expected is None else expected
    assert_rounded(y, want, count, g * (xhat + 1) + b, "BatchNorm in training mode")


# -- gradients -------------------------------------------------------------------------------


# gradient checks of every Conv2d/pool/BatchNorm example: tests/test_layers.py, over the one
# table in nnx.testing.examples


def test_gradcheck_small_cnn(backend):
    """The layers composed: layouts handed between them (views, permutations) stay right."""
    model = nnx.Sequential(
        nnx.Conv2d(1, 2, 3, padding=1),
        nnx.BatchNorm2d(2),
        nnx.ReLU(),
        nnx.MaxPool2d(2),
        nnx.Conv2d(2, 2, 2),
        nnx.AvgPool2d(1),
        nnx.Flatten(),
        nnx.Dropout(0.2),
        nnx.Linear(2, 2),
    )
    x = np.random.default_rng(5).standard_normal((2, 1, 4, 4))
    result = nnx.gradcheck(model, x)
    assert result.ok, str(result)


# -- forward values against the references ----------------------------------------------------


@pytest.mark.parametrize(
    "cin, cout, kernel, stride, padding, hw",
    [
        (1, 4, (5, 5), (1, 1), (0, 0), (9, 8)),
        (3, 2, (3, 3), (2, 2), (1, 1), (7, 6)),
        (2, 3, (2, 3), (1, 2), (0, 1), (5, 6)),
        (2, 2, (1, 1), (3, 3), (0, 0), (7, 7)),
    ],
)
@pytest.mark.parametrize("layout", ["outer", "inner"])
def test_conv_forward_matches_reference(backend, cin, cout, kernel, stride, padding, hw, layout):
    layer = nnx.Conv2d(cin, cout, kernel, stride=stride, padding=padding)
    layer.batch_layout = layout  # force either window layout
    b = data(cout, seed=9)
    layer.bias.value = nnx.asarray(b)
    x = data(3, cin, *hw)
    y = layer(nnx.asarray(x))
    w = host(layer.weight.value)
    expected = conv_ref(x, w, b, stride, padding)
    assert tuple(y.shape) == expected.shape
    assert dtype_name(y) == "float32" and backend.owns(y)
    size = conv_ref(np.abs(x), np.abs(w), np.abs(b), stride, padding)
    assert_rounded(y, expected, cin * w.shape[2] * w.shape[3] + 1, size, "Conv2d(x)")


def test_conv_layout_choice():
    """LeNet's wide first conv puts the batch outermost, its narrow second conv innermost."""
    assert not nnx.Conv2d(1, 8, 5).batch_last(24)
    assert nnx.Conv2d(8, 16, 5).batch_last(8)


def test_conv_backward_dtype_device_and_shapes(backend):
    layer = nnx.Conv2d(2, 3, 3, stride=2, padding=1)
    x = nnx.asarray(data(2, 2, 6, 5))
    y = layer(x)
    dx = layer.backward(nnx.asarray(np.ones(tuple(y.shape), np.float32)))
    assert tuple(dx.shape) == (2, 2, 6, 5)
    for a in (y, dx, layer.weight.grad, layer.bias.grad):
        assert dtype_name(a) == "float32" and backend.owns(a)
    assert tuple(layer.weight.grad.shape) == (3, 2, 3, 3)
    # d sum(y) / d bias = number of output pixels per sample times batch
    np.testing.assert_allclose(host(layer.bias.grad), np.full(3, 2 * 3 * 3), rtol=1e-6)


def test_conv_wrong_channel_count_names_layer_and_shapes(backend):
    layer = nnx.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4.*\(N, 3, H, W\).*\(2, 1, 8, 8\)"):
        layer(nnx.asarray(np.zeros((2, 1, 8, 8), np.float32)))
    with pytest.raises(ValueError, match="smaller than the window"):
        layer(nnx.asarray(np.zeros((1, 3, 2, 2), np.float32)))
    with pytest.raises(ValueError, match="kernel_size"):
        nnx.Conv2d(1, 1, 0)


@pytest.mark.parametrize(
    "kernel, stride, padding, hw",
    [
        ((2, 2), (2, 2), (0, 0), (6, 8)),
        ((2, 2), (2, 2), (0, 0), (7, 5)),  # odd sizes: the last row/column is dropped
        ((3, 3), (3, 3), (0, 0), (7, 9)),
        ((3, 3), (2, 2), (1, 1), (7, 6)),
        ((2, 3), (1, 2), (1, 1), (5, 6)),
    ],
)
@pytest.mark.parametrize("how", ["max", "avg"])
def test_pool_forward_matches_reference(backend, kernel, stride, padding, hw, how):
    cls = nnx.MaxPool2d if how == "max" else nnx.AvgPool2d
    layer = cls(kernel, stride=stride, padding=padding)
    x = data(2, 3, *hw)
    y = layer(nnx.asarray(x))
    expected = pool_ref(x, kernel, stride, padding, how)
    assert tuple(y.shape) == expected.shape
    assert dtype_name(y) == "float32" and backend.owns(y)
    if how == "max":  # a maximum is exact
        np.testing.assert_array_equal(host(y), expected)
    else:
        size = pool_ref(np.abs(x), kernel, stride, padding, how)
        assert_rounded(y, expected, int(np.prod(kernel)), size, "AvgPool2d(x)")
    dx = layer.backward(nnx.asarray(np.ones(expected.shape, np.float32)))
    assert tuple(dx.shape) == x.shape
    assert dtype_name(dx) == "float32" and backend.owns(dx)


@pytest.mark.parametrize("kernel, hw", [(2, (6, 6)), (2, (7, 5)), (3, (9, 7))])
def test_maxpool_ties_route_to_the_first_maximum_only(backend, kernel, hw):
    layer = nnx.MaxPool2d(kernel)
    x = nnx.asarray(np.zeros((2, 3, *hw), np.float32))
    y = layer(x)
    dx = host(layer.backward(nnx.asarray(np.ones(tuple(y.shape), np.float32))))
    oh, ow = hw[0] // kernel, hw[1] // kernel
    expected = np.zeros((2, 3, *hw), np.float32)
    expected[:, :, : oh * kernel : kernel, : ow * kernel : kernel] = 1.0  # top-left of each window
    np.testing.assert_array_equal(dx, expected)
    for _, _, win in windows(dx, (kernel, kernel), (kernel, kernel)):
        assert (win.sum(axis=(2, 3)) == 1).all()


def test_maxpool_general_path_ties(backend):
    """Overlapping and padded windows go through im2col; ties still pick the first maximum."""
    layer = nnx.MaxPool2d(2, stride=1)
    x = nnx.asarray(np.zeros((1, 1, 4, 4), np.float32))
    dx = host(layer.backward(nnx.asarray(np.ones(tuple(layer(x).shape), np.float32))))
    expected = np.zeros((1, 1, 4, 4), np.float32)
    expected[:, :, :3, :3] = 1.0  # every window's first element is its top-left
    np.testing.assert_array_equal(dx, expected)
    layer = nnx.MaxPool2d(3, stride=3, padding=1)  # -inf padding never wins
    dx = host(layer.backward(nnx.asarray(np.ones(tuple(layer(x).shape), np.float32))))
    expected = np.zeros((1, 1, 4, 4), np.float32)
    expected[0, 0, [0, 0, 2, 2], [0, 2, 0, 2]] = 1.0  # padded rows/columns -1 and 4 never win
    np.testing.assert_array_equal(dx, expected)


def test_maxpool_backward_matches_reference_routing(backend):
    x = data(2, 2, 6, 6, seed=4)
    x[0, 0, :2, :2] = 5.0  # a tie inside one window
    layer = nnx.MaxPool2d(2)
    y = layer(nnx.asarray(x))
    dy = data(*y.shape, seed=5)
    dx = host(layer.backward(nnx.asarray(dy)))
    expected = np.zeros_like(x)
    for i, j, win in windows(x, (2, 2), (2, 2)):
        flat = win.reshape(2, 2, 4).argmax(axis=2)  # numpy's argmax: the first maximum
        for n in range(2):
            for c in range(2):
                a, b = divmod(int(flat[n, c]), 2)
                expected[n, c, 2 * i + a, 2 * j + b] = dy[n, c, i, j]
    np.testing.assert_array_equal(dx, expected)


def test_pool_argument_checks(backend):
    with pytest.raises(ValueError, match="half the kernel"):
        nnx.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match=r"MaxPool2d.*\(N, C, H, W\)"):
        nnx.MaxPool2d(2)(nnx.asarray(np.zeros((2, 4), np.float32)))
    assert nnx.AvgPool2d(3).stride == (3, 3)


# -- batch norm ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, shape, axes",
    [
        (nnx.BatchNorm2d, (4, 3, 5, 2), (0, 2, 3)),
        (nnx.BatchNorm1d, (6, 3), (0,)),
        (nnx.BatchNorm1d, (4, 3, 5), (0, 2)),
    ],
)
def test_batchnorm_train_and_eval_match_reference(backend, cls, shape, axes):
    layer = cls(3, eps=1e-3, momentum=0.2)
    gamma, beta = data(3, seed=1) + 2.0, data(3, seed=2)
    layer.weight.value, layer.bias.value = nnx.asarray(gamma), nnx.asarray(beta)
    x1, x2 = data(*shape, seed=3) * 2 + 1, data(*shape, seed=4) - 0.5
    count = int(np.prod([shape[a] for a in axes]))
    y1 = layer(nnx.asarray(x1))
    assert dtype_name(y1) == "float32" and backend.owns(y1)
    assert_batchnorm(y1, x1, gamma, beta, 1e-3, axes)
    layer(nnx.asarray(x2))
    rm, rv = np.zeros(3), np.ones(3)
    for x in (x1, x2):  # PyTorch: unbiased variance for the running estimate
        rm = 0.8 * rm + 0.2 * x.mean(axis=axes)
        rv = 0.8 * rv + 0.2 * x.var(axis=axes, ddof=1)
    for buf, want in ((layer.running_mean, rm), (layer.running_var, rv)):
        assert dtype_name(buf) == "float32" and backend.owns(buf)
        # means over count values of the inputs (or their squared deviations)
        size = np.abs(want) + (x1**2).mean() + (x2**2).mean()
        assert_rounded(buf, want, count, size, "running statistics")
    layer.eval()
    y = layer(nnx.asarray(x1))
    bshape = [1] * len(shape)
    bshape[1] = 3
    expected = (x1 - rm.reshape(bshape)) / np.sqrt(rv.reshape(bshape) + 1e-3)
    expected = expected * gamma.reshape(bshape) + beta.reshape(bshape)
    # the running statistics carry the rounding of count-term means into the output
    size = np.abs(gamma.reshape(bshape)) * (np.abs(expected) + 1) + np.abs(beta.reshape(bshape))
    assert_rounded(y, expected, count, size, "BatchNorm in eval mode")
    np.testing.assert_allclose(host(layer.running_mean), rm, rtol=1e-5)  # eval updates nothing
    with pytest.raises(RuntimeError, match="eval mode"):
        layer.backward(nnx.asarray(np.ones(shape, np.float32)))


def test_batchnorm_buffers_in_state_dict_and_checks(backend):
    model = nnx.Sequential(nnx.Conv2d(1, 2, 3), nnx.BatchNorm2d(2))
    state = model.state_dict()
    assert {"1.running_mean", "1.running_var", "1.weight", "1.bias"} <= set(state)
    model(nnx.asarray(data(4, 1, 5, 5)))
    other = nnx.Sequential(nnx.Conv2d(1, 2, 3), nnx.BatchNorm2d(2))
    other.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(host(other[1].running_var), host(model[1].running_var))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(2.*\(N, C, H, W\).*\(4, 3, 5, 5\)"):
        model[1](nnx.asarray(np.zeros((4, 3, 5, 5), np.float32)))
    with pytest.raises(ValueError, match="more than one value per channel"):
        nnx.BatchNorm1d(2)(nnx.asarray(np.zeros((1, 2), np.float32)))


# -- dropout and flatten ---------------------------------------------------------------------------


def test_dropout_eval_is_identity_and_keeps_nothing(backend):
    layer = nnx.Dropout(0.5).eval()
    x = nnx.asarray(data(4, 5))
    np.testing.assert_array_equal(host(layer(x)), host(x))
    with pytest.raises(RuntimeError, match="eval mode"):
        layer.backward(x)
    layer = nnx.Dropout(0.0)
    np.testing.assert_array_equal(host(layer(x)), host(x))
    np.testing.assert_array_equal(host(layer.backward(x)), host(x))


def test_dropout_train_scales_kept_units_and_masks_gradient(backend):
    p = 0.25
    layer = nnx.Dropout(p)
    x = data(50, 40) + 5.0  # no zeros in the input
    y = host(layer(nnx.asarray(x)))
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-6)
    assert abs(kept.mean() - (1 - p)) < 0.05
    dx = host(layer.backward(nnx.asarray(np.ones(x.shape, np.float32))))
    np.testing.assert_allclose(dx, np.where(kept, 1 / (1 - p), 0.0), rtol=1e-6)
    assert dtype_name(layer(nnx.asarray(x))) == "float32"


def test_dropout_same_seed_same_mask(backend):
    layer = nnx.Dropout(0.5)
    x = nnx.asarray(np.ones((8, 8), np.float32))
    nnx.manual_seed(7)
    first = host(layer(x))
    second = host(layer(x))
    nnx.manual_seed(7)
    again = host(layer(x))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, second)  # a fresh mask every step


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_rejects_bad_probability(p):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        nnx.Dropout(p)


def test_flatten(backend):
    layer = nnx.Flatten()
    x = data(2, 3, 4, 5)
    y = layer(nnx.asarray(x))
    np.testing.assert_array_equal(host(y), x.reshape(2, -1))
    dx = layer.backward(y)
    np.testing.assert_array_equal(host(dx), x)
    assert tuple(nnx.Flatten(2)(nnx.asarray(x)).shape) == (2, 3, 20)
    with pytest.raises(ValueError, match="cannot flatten"):
        layer(nnx.asarray(np.zeros(3, np.float32)))


@pytest.mark.parametrize(
    "make",
    [
        lambda: nnx.Conv2d(2, 2, 3),
        lambda: nnx.MaxPool2d(2),
        lambda: nnx.MaxPool2d(3, stride=1),
        lambda: nnx.AvgPool2d(2),
        lambda: nnx.BatchNorm2d(2),
        lambda: nnx.Dropout(0.3),
        lambda: nnx.Flatten(),
    ],
)
def test_backward_without_forward_and_eval_keeps_nothing(backend, make):
    layer = make()
    with pytest.raises(RuntimeError, match="without a forward pass"):
        layer.backward(nnx.asarray(np.ones((2, 2, 2, 2), np.float32)))
    layer.train()
    layer(nnx.asarray(data(2, 2, 6, 6)))
    layer.clear()
    with pytest.raises(RuntimeError, match="without a forward pass"):
        layer.backward(nnx.asarray(np.ones((2, 2, 2, 2), np.float32)))
    layer.eval()
    y = layer(nnx.asarray(data(2, 2, 6, 6)))
    assert dtype_name(y) == "float32" and backend.owns(y)
    with pytest.raises(RuntimeError, match="eval mode"):
        layer.backward(y)


# -- im2col fast path vs portable spelling -----------------------------------------------------


@pytest.mark.parametrize(
    "shape, kernel, stride, padding",
    [
        ((3, 2, 7, 6), (3, 3), (1, 1), (0, 0)),
        ((3, 2, 7, 6), (3, 3), (2, 2), (1, 1)),
        ((2, 3, 8, 9), (2, 3), (1, 2), (0, 1)),
        ((2, 1, 9, 9), (5, 5), (3, 2), (2, 2)),
        ((4, 2, 5, 5), (1, 1), (1, 1), (0, 0)),
    ],
)
@pytest.mark.parametrize("batch_last", [True, False])
def test_numpy_im2col_fast_path_matches_portable(shape, kernel, stride, padding, batch_last):
    fast = nnx.get_backend("numpy").ops
    xp = fast.xp
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(np.float32)
    args = (kernel, stride, padding, batch_last)
    cols_fast = fast.im2col(x, *args)
    cols_portable = window.im2col(xp, x, *args)
    np.testing.assert_array_equal(cols_fast, cols_portable)
    # a non-contiguous input (what a conv hands on) gives the same windows
    xt = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    np.testing.assert_array_equal(fast.im2col(xt, *args), cols_portable)
    c = rng.standard_normal(cols_fast.shape).astype(np.float32)
    back_fast = fast.col2im(c, shape, *args)
    back_portable = window.col2im(xp, c, shape, *args)
    kk = kernel[0] * kernel[1]  # at most kk windows overlap at an input pixel
    size = window.col2im(xp, np.abs(c).astype(np.float64), shape, *args)
    assert_rounded(back_fast, back_portable, kk, size, "col2im")
    # the fused col2im(wt @ dy) of the conv backward agrees with the two-step spelling
    wt = rng.standard_normal((cols_fast.shape[0], 3)).astype(np.float32)
    dy = rng.standard_normal((3, cols_fast.shape[1])).astype(np.float32)
    size = window.col2im(xp, np.abs(wt).astype(np.float64) @ np.abs(dy), shape, *args)
    assert_rounded(
        fast.col2im_matmul(wt, dy, shape, *args),
        window.col2im(xp, wt @ dy, shape, *args),
        3 * kk, size, "col2im_matmul",
    )  # fmt: skip
    # col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>
    lhs = float(np.sum(cols_fast.astype(np.float64) * c))
    rhs = float(np.sum(x.astype(np.float64) * back_fast))
    assert abs(lhs - rhs) < 1e-3 * max(1.0, abs(lhs))


@pytest.mark.parametrize("shape", [(64, 1024), (3, 512), (5, 7), (1, 2048)])
def test_numpy_transpose2d(shape):
    """The staged transpose (rows a multiple of 2 KiB apart) is still just the transpose."""
    a = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    t = nnx.get_backend("numpy").ops.transpose2d(a)
    assert t.flags.c_contiguous
    np.testing.assert_array_equal(t, a.T)


@pytest.mark.parametrize("layout", ["outer", "inner"])
def test_conv_portable_path_used_without_fast_path(backend, monkeypatch, layout):
    """The portable Ops defaults give what the backend's own ops give."""
    layer = nnx.Conv2d(2, 2, 3, padding=1)
    layer.batch_layout = layout
    x = nnx.asarray(data(2, 2, 5, 5))
    ones = np.ones((2, 2, 5, 5), np.float32)
    y_default = host(layer(x))
    dx_default = host(layer.backward(nnx.asarray(ones)))
    size_y, size_dx, _ = magnitudes(layer, x, ones)
    layer.ops = Ops(backend.xp, backend.device)
    layer.zero_grad()
    assert_rounded(layer(x), y_default, 2 * 9, size_y, "the portable forward")
    dx = layer.backward(nnx.asarray(ones))
    assert_rounded(dx, dx_default, 2 * 9, size_dx, "the portable input gradient")


# -- against PyTorch, when it is importable ------------------------------------------------------


def test_matches_torch_functional(backend):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = data(3, 2, 9, 8, seed=21)
    tx = torch.from_numpy(x)
    conv = nnx.Conv2d(2, 4, 3, stride=2, padding=1)
    w = host(conv.weight.value)
    b = data(4, seed=22)
    conv.bias.value = nnx.asarray(b)
    got = host(conv(nnx.asarray(x)))
    want = F.conv2d(tx, torch.from_numpy(w), torch.from_numpy(b), stride=2, padding=1)
    size = conv_ref(np.abs(x), np.abs(w), np.abs(b), (2, 2), (1, 1))
    assert_rounded(got, want.numpy(), 2 * 9 + 1, size, "Conv2d against torch")
    for layer, fn in [
        (nnx.MaxPool2d(3, 2, 1), lambda t: F.max_pool2d(t, 3, 2, 1)),
        (nnx.MaxPool2d(2), lambda t: F.max_pool2d(t, 2)),
        (nnx.AvgPool2d(3, 2, 1), lambda t: F.avg_pool2d(t, 3, 2, 1)),
        (nnx.AvgPool2d(2), lambda t: F.avg_pool2d(t, 2)),
    ]:
        kk = int(np.prod(layer.kernel_size))
        size = fn(torch.from_numpy(np.abs(x))).numpy()
        assert_rounded(layer(nnx.asarray(x)), fn(tx).numpy(), kk, size, layer.label())
    # max-pool gradient routing with ties, as PyTorch routes it
    z = torch.zeros(1, 1, 6, 6, requires_grad=True)
    F.max_pool2d(z, 2).sum().backward()
    mp = nnx.MaxPool2d(2)
    mp(nnx.asarray(np.zeros((1, 1, 6, 6), np.float32)))
    np.testing.assert_array_equal(
        host(mp.backward(nnx.asarray(np.ones((1, 1, 3, 3), np.float32)))), z.grad.numpy()
    )
    bn, tbn = nnx.BatchNorm2d(2), torch.nn.BatchNorm2d(2)
    for seed in (1, 2):
        xi = data(4, 2, 3, 3, seed=seed)
        want = tbn(torch.from_numpy(xi)).detach().numpy()
        assert_batchnorm(bn(nnx.asarray(xi)), xi, np.ones(2), np.zeros(2), 1e-5, (0, 2, 3), want)
    var = tbn.running_var.numpy()
    assert_rounded(bn.running_var, var, 4 * 9, np.abs(var) + 1, "running_var against torch")
    bn.eval(), tbn.eval()
    want = tbn(tx).detach().numpy()
    assert_rounded(bn(nnx.asarray(x)), want, 4 * 9, np.abs(want) + 1, "BatchNorm eval vs torch")


def test_lenet_training_matches_torch_in_float64():
    """Ten SGD steps of a LeNet-like CNN follow PyTorch's trajectory to float64 rounding."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((10, 16, 1, 28, 28)), 0.0)  # ReLU-like zeros: ties
    y = rng.integers(0, 10, (10, 16))
    torch.manual_seed(0)
    reference = nn.Sequential(
        nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 5), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 10),
    ).double()  # fmt: skip
    with nnx.using("numpy"):
        model = nnx.Sequential(
            nnx.Conv2d(1, 4, 5), nnx.ReLU(), nnx.MaxPool2d(2), nnx.Conv2d(4, 8, 5), nnx.ReLU(),
            nnx.MaxPool2d(2), nnx.Flatten(), nnx.Linear(128, 10),
        ).to("numpy", "float64")  # fmt: skip
    names = [name for name, _ in model.named_parameters()]
    weights = [p.detach().numpy() for p in reference.parameters()]
    model.load_state_dict(dict(zip(names, weights, strict=True)))
    model.requires_input_grad = False
    t_opt = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9)
    opt = nnx.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    t_loss_fn, loss_fn = nn.CrossEntropyLoss(), nnx.CrossEntropyLoss()
    for xb, yb in zip(x, y, strict=True):
        t_opt.zero_grad()
        t_loss = t_loss_fn(reference(torch.from_numpy(xb)), torch.from_numpy(yb))
        t_loss.backward()
        t_opt.step()
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        model.backward(loss_fn.backward())
        opt.step()
        assert abs(float(loss) - t_loss.item()) < 1e-10
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        np.testing.assert_allclose(p.value, q.detach().numpy(), rtol=0, atol=1e-12)

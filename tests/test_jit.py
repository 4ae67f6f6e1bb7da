"""The NumPy backend's two kernel tables: NumpyOps (NumPy only) and JitOps (numba loops).

With numba installed (the ``nnx[jit]`` extra) the ``numpy`` backend of every other
test runs JitOps; the whole conformance kit runs here on NumpyOps too, so the
NumPy-only path stays complete and checked either way.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import training_bound

import nnx
from nnx.backend import NumpyBackend, NumpyOps, registry
from nnx.backend.jit import JitOps, jit_status, numpy_ops_class
from nnx.testing import assert_within, check_backend, sum_bound

try:
    import numba  # noqa: F401

    HAVE_NUMBA = True
except ImportError:
    HAVE_NUMBA = False

needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed (nnx[jit])")


class PlainNumpy(NumpyBackend):
    """The numpy backend with the NumPy-only kernel table, whatever is installed."""

    name = "numpy_plain"
    ops_class = NumpyOps  # type: ignore[assignment]


class JitNumpy(NumpyBackend):
    """The numpy backend with the numba kernel table."""

    name = "numpy_jit"
    ops_class = JitOps  # type: ignore[assignment]


@pytest.fixture
def registered(monkeypatch):
    """PlainNumpy registered as ``numpy_plain`` for the test (the registry is restored)."""
    for attr in ("_factories", "_sources", "_instances"):
        monkeypatch.setattr(registry, attr, dict(getattr(registry, attr)))
    nnx.register_backend("numpy_plain", PlainNumpy, source="test")


def test_the_numpy_only_table_passes_the_whole_kit(registered):
    report = check_backend("numpy_plain")
    assert type(nnx.get_backend("numpy_plain").ops) is NumpyOps
    assert report.ok, str(report)


@needs_numba
def test_the_numba_table_matches_the_portable_kernels():
    report = check_backend(JitNumpy(), only=["ops"])
    assert report.ok, str(report)
    assert type(nnx.get_backend("numpy").ops) is JitOps or jit_status()[0] is False


@needs_numba
def test_training_is_bit_identical_with_either_table():
    """SGD momentum, ReLU and max-pool backward, conv input gradients: same weights after 5 steps."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 1, 12, 12)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    weights = []
    for backend in (PlainNumpy(), JitNumpy()):
        with nnx.using(backend):
            nnx.manual_seed(3)
            model = nnx.Sequential(
                nnx.Conv2d(1, 4, 3), nnx.ReLU(), nnx.MaxPool2d(2),
                nnx.Conv2d(4, 6, 3, padding=1), nnx.ReLU(), nnx.Flatten(), nnx.Linear(150, 10),
            )  # fmt: skip
            opt = nnx.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            loss_fn = nnx.CrossEntropyLoss()
            for _ in range(5):
                opt.zero_grad()
                loss_fn(model(nnx.asarray(x)), nnx.asarray(y))
                model.backward(loss_fn.backward())
                opt.step()
            weights.append([nnx.to_numpy(p.value) for p in model.parameters()])
    # col2im and the losses sum in another order: 5 steps of the model's sums (fan-ins
    # 9, 36, 150 and the batch of 16) at most
    for a, b in zip(*weights, strict=True):
        assert_within(a, b, training_bound(b, 9 + 36 + 150 + 16, 5), "weights after 5 steps")


@needs_numba
def test_the_adam_loop_gives_the_numpy_kernels_bits():
    """Same float32 operations in the same order: equal bits over many steps."""
    rng = np.random.default_rng(1)
    plain, jit = NumpyOps(NumpyBackend.xp), JitOps(NumpyBackend.xp)
    betas = tuple(np.asarray(b, np.float32) for b in (0.9, 0.1, 0.999, 0.001))
    start = [rng.standard_normal((7, 13)).astype(np.float32) for _ in range(2)]
    runs = []
    for ops in (plain, jit):
        value, m, v = start[0].copy(), start[1].copy(), np.zeros((7, 13), np.float32)
        for t in range(1, 30):
            g = np.random.default_rng(t).standard_normal((7, 13)).astype(np.float32)
            value, m, v = ops.adam_step(value, m, v, g, betas, 1e-2 / t, 1e-8 / t)
        runs.append((value, m, v))
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


@needs_numba
def test_arrays_the_loops_do_not_take_go_to_numpy():
    ops = JitOps(NumpyBackend.xp)
    dy = np.arange(12, dtype=np.float16).reshape(3, 4) - 5
    y = np.arange(12, dtype=np.float16).reshape(3, 4)[:, ::-1]  # a view, float16
    np.testing.assert_array_equal(ops.relu_backward(dy, y), dy * (y > 0))
    value = np.ones((4, 4), np.float32)[:, ::2]  # not contiguous: NumPy's kernel, same result
    buf, g = np.ones((4, 2), np.float32), np.full((4, 2), 2.0, np.float32)
    v, b = ops.momentum_step(value, buf, g, np.float32(0.5), 0.1)
    np.testing.assert_allclose(b, 2.5)
    np.testing.assert_allclose(v, 1 - 0.1 * 2.5)


def test_nnx_jit_0_turns_the_loops_off(monkeypatch):
    monkeypatch.setenv("NNX_JIT", "0")
    assert numpy_ops_class() is NumpyOps
    assert jit_status() == (False, "NNX_JIT=0")


def test_a_bad_nnx_jit_value_is_named(monkeypatch):
    monkeypatch.setenv("NNX_JIT", "fast")
    with pytest.raises(ValueError, match="NNX_JIT must be 0 or 1, got 'fast'"):
        numpy_ops_class()


def test_without_numba_the_numpy_table_is_used_and_nnx_jit_1_names_the_extra():
    code = (
        "import sys; sys.modules['numba'] = None\n"
        "import os, nnx\n"
        "from nnx.backend import NumpyOps\n"
        "assert type(nnx.get_backend('numpy').ops) is NumpyOps\n"
        "os.environ['NNX_JIT'] = '1'\n"
        "from nnx.backend.jit import numpy_ops_class\n"
        "try:\n"
        "    numpy_ops_class()\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "pip install 'nnx[jit]'" in out.stdout, out.stdout + out.stderr


@needs_numba
def test_numba_disable_jit_means_the_numpy_table(monkeypatch):
    import numba

    monkeypatch.setattr(numba.config, "DISABLE_JIT", True)
    assert numpy_ops_class() is NumpyOps
    assert jit_status() == (False, "NUMBA_DISABLE_JIT is set")


@needs_numba
def test_relu_keeps_what_maximum_does_with_nan_infinities_and_signed_zeros():
    ops = JitOps(NumpyBackend.xp)
    for dtype in (np.float32, np.float64):
        x = np.array([np.nan, -np.inf, np.inf, -0.0, 0.0, -1.5, 2.5, -np.nan], dtype)
        got = ops.relu(x)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, np.maximum(x, 0))  # NaN where NaN, 0 for -inf
        assert not np.signbit(got[3])  # relu(-0.0) is a zero; NumPy's sign differs by version


@needs_numba
def test_an_ndarray_subclass_goes_to_numpy(tmp_path):
    ops = JitOps(NumpyBackend.xp)
    y = np.memmap(tmp_path / "y.dat", dtype=np.float32, mode="w+", shape=(3, 4))
    y[:] = np.arange(12, dtype=np.float32).reshape(3, 4) - 6
    dy = np.ones((3, 4), np.float32)
    np.testing.assert_array_equal(ops.relu_backward(dy, y), (np.asarray(y) > 0).astype(np.float32))


@needs_numba
def test_loops_equal_the_numpy_kernels_on_random_shapes():
    """2x2 max-pool (odd sizes, ties at 0, NaN), col2im (any window, stride, padding)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    plain, jit = NumpyOps(NumpyBackend.xp), JitOps(NumpyBackend.xp)

    @settings(max_examples=40, deadline=None, derandomize=True)
    @given(
        n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(2, 9), w=st.integers(2, 9),
        nan=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
    )  # fmt: skip
    def pools(n, c, h, w, nan, dtype):
        rng = np.random.default_rng(h * 10 + w)
        x = np.maximum(rng.standard_normal((n, c, h, w)), 0).astype(dtype)  # ties at 0
        if nan:
            x[0, 0, 0, 0] = np.nan
        oh, ow = h // 2, w // 2
        # the numba forward keeps first-maximum positions, NumPy's the tiles: same y, same dx
        (t1, y1), (t2, y2) = (ops.maxpool_forward(x, (2, 2), oh, ow) for ops in (plain, jit))
        np.testing.assert_array_equal(y1, y2)
        dy = rng.standard_normal(y1.shape).astype(dtype)
        want = plain.maxpool_backward(t1, y1, dy, (2, 2), x.shape)
        np.testing.assert_array_equal(jit.maxpool_backward(t2, y2, dy, (2, 2), x.shape), want)
        np.testing.assert_array_equal(jit.maxpool_backward(t1, y1, dy, (2, 2), x.shape), want)
        dy_view = np.asfortranarray(dy)  # not C-contiguous: a contiguous copy, same bits
        np.testing.assert_array_equal(jit.maxpool_backward(t2, y2, dy_view, (2, 2), x.shape), want)

    @settings(max_examples=40, deadline=None, derandomize=True)
    @given(
        k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
        s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
        p=st.tuples(st.integers(0, 2), st.integers(0, 2)),
        size=st.tuples(st.integers(1, 9), st.integers(1, 9)), last=st.booleans(),
    )  # fmt: skip
    def col2im(k, s, p, size, last):
        if size[0] + 2 * p[0] < k[0] or size[1] + 2 * p[1] < k[1]:
            return
        x = np.ones((2, 3, *size), np.float32)
        cols = plain.im2col(x, k, s, p, last)
        d = np.random.default_rng(0).standard_normal(cols.shape).astype(np.float32)
        size = plain.col2im(np.abs(d).astype(np.float64), x.shape, k, s, p, last)
        assert_within(
            jit.col2im(d, x.shape, k, s, p, last),
            plain.col2im(d, x.shape, k, s, p, last),
            sum_bound(size, k[0] * k[1]), "col2im",
        )  # fmt: skip

    pools()
    col2im()


@needs_numba
def test_work_the_thread_pool_would_split_takes_the_threaded_numpy_kernels(monkeypatch):
    from nnx.backend import jit_kernels, threads

    ops = JitOps(NumpyBackend.xp)
    calls = []
    monkeypatch.setattr(jit_kernels, "momentum_step", lambda *a: calls.append(a))
    v, b, g = (np.ones(64, np.float32) for _ in range(3))
    ops.momentum_step(v, b, g, np.float32(0.5), 0.1)
    assert len(calls) == 1  # one thread (the default): the numba loop
    with threads.forced(2):
        value, buf = ops.momentum_step(v, b, g, np.float32(0.5), 0.1)
    assert len(calls) == 1  # split across threads by the NumPy kernel instead
    np.testing.assert_allclose(buf, 1.5)

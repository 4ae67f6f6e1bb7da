"""Issue 13's findings, each checked without a GPU through the CuPy-shaped stand-in
(tests/fake_cupy.py): the CuPy backend's own code on a second fake GPU."""

from __future__ import annotations

import sys
from pathlib import Path

import array_api_strict as strict
import fake_cupy
import numpy as np
import pytest

import nnx
from nnx import io
from nnx.backend import CupyBackend, NumpyBackend, owner_of, registry
from nnx.backend.registry import started
from nnx.gradcheck import gradcheck
from nnx.optim import SGD, Adam
from nnx.testing import check_backend

ROOT = Path(__file__).resolve().parents[1]


def _mlp() -> nnx.Sequential:
    return nnx.Sequential(nnx.Linear(4, 8), nnx.ReLU(), nnx.Dropout(0.2), nnx.Linear(8, 3))


def _cnn() -> nnx.Sequential:
    return nnx.Sequential(
        nnx.Conv2d(1, 4, 3, padding=1), nnx.ReLU(), nnx.MaxPool2d(2), nnx.Flatten(),
        nnx.Linear(4 * 3 * 3, 3),
    )  # fmt: skip


def _data(shape: tuple[int, ...], n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    x.reshape(n, -1)[:, :3] += 2.0 * y[:, None]  # the class shows in the first values
    return x, y


# -- finding 1: a CuPy generator's state is saved and restored ------------------------------
def test_finding1_cupy_generator_state_round_trips():
    backend = nnx.get_backend("fakecupy:1")
    gen = backend.rng(7)
    state = gen.get_state()
    assert state is not None, "a CuPy generator must have a state for checkpoints"
    first = np.asarray(nnx.to_numpy(gen.uniform((5,))))
    gen.set_state(state)
    again = np.asarray(nnx.to_numpy(gen.normal((1,))))  # a different draw: state moves on
    gen.set_state(state)
    np.testing.assert_array_equal(nnx.to_numpy(gen.uniform((5,))), first)
    assert again.shape == (1,)
    # the same seed gives the same numbers as the NumPy backend (the host generator)
    np.testing.assert_array_equal(nnx.to_numpy(NumpyBackend().rng(7).uniform((5,))), first)


def test_finding1_checkpoint_resumes_the_cupy_generator(tmp_path):
    with nnx.using("fakecupy:1") as backend:
        model = _mlp()
        backend.generator = backend.rng(3)
        io.save(tmp_path / "ck.npz", model)
        expected = nnx.to_numpy(backend.generator.uniform((6,)))
        backend.generator.uniform((100,))  # move on
        io.load(tmp_path / "ck.npz", model)
        np.testing.assert_array_equal(nnx.to_numpy(backend.generator.uniform((6,))), expected)


# -- finding 2: cuda:1 works whatever device is current ------------------------------------
@pytest.mark.parametrize("make, shape", [(_mlp, (4,)), (_cnn, (1, 6, 6))])
def test_finding2_cuda1_trains_on_device_1_while_device_0_is_current(make, shape):
    assert fake_cupy.current() == 0
    nnx.manual_seed(0)
    backend = nnx.get_backend("fakecupy:1")
    with nnx.using("numpy"):
        model = make()
    model.to("fakecupy:1")  # the README's model.to("cuda:1")
    x, y = _data(shape)
    history = nnx.fit(
        model, nnx.CrossEntropyLoss(), Adam(model.parameters(), lr=0.01), (x, y),
        epochs=4, batch_size=16, progress=False, val_data=(x, y),
    )  # fmt: skip
    assert history["loss"][-1] < history["loss"][0]
    for p in model.parameters():
        assert backend.owns(p.value) and backend.owns(p.grad)
        for state in p.state.values():
            assert backend.owns(state)
    assert nnx.predict(model, x).shape == (len(x), 3)
    assert gradcheck(model, x[:2], dtype="float64").ok
    assert "fakecupy:1" in model.summary((2, *shape))
    assert fake_cupy.current() == 0  # every scope was left


def test_finding2_one_loss_and_optimizer_serve_two_gpus():
    """CuPy arrays on GPU 0 and GPU 1 have one type: the owner is found by device too."""
    gpus = [nnx.get_backend("fakecupy:0"), nnx.get_backend("fakecupy:1")]
    loss = nnx.CrossEntropyLoss()
    x, y = _data((4,), n=8)
    opt = None
    for backend in [*gpus, *gpus]:
        # current, so array_api_strict:device1 (whose arrays the stand-in's GPU 1 shares)
        # is not asked first; the loss's cached backend (the other GPU) is asked before it
        with nnx.using(backend):
            model = _mlp()
            value = loss(model(backend.asarray(x)), backend.asarray(y, "int64"))
            assert loss.backend is backend and backend.owns(value)
            model.backward(loss.backward())
            if opt is None:
                opt = Adam(model.parameters(), lr=0.01)
            else:  # the same optimizer object, its parameters now on another GPU
                opt.params = model.parameters()
            opt.step()
            assert all(backend.owns(p.value) for p in model.parameters())


def test_finding2_the_standin_catches_work_done_off_the_device(monkeypatch):
    """Without the device scope, arrays made inside a layer land on GPU 0 and the stand-in
    refuses to mix them with GPU 1's, as CuPy does (this is main before the fix)."""
    backend = nnx.get_backend("fakecupy:1")
    monkeypatch.setattr(backend, "device_scope", None)
    with nnx.using(backend):  # the loss finds this backend (the current one) first
        model = _mlp()
        x = backend.asarray(_data((4,))[0][:8])
        with pytest.raises(ValueError, match="device"):
            loss = nnx.CrossEntropyLoss()
            loss(model(x), backend.asarray(np.zeros(8, np.int64), "int64"))


# -- finding 3: to_numpy / asarray of arrays no started backend owns -------------------------
def test_finding3_to_numpy_of_a_gpu_array_no_backend_owns():
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    gpu = fake_cupy.GpuArray(host)
    assert owner_of(gpu) is None
    np.testing.assert_array_equal(nnx.to_numpy(gpu), host)
    moved = nnx.asarray(gpu, "numpy")
    np.testing.assert_array_equal(moved, host)


@pytest.mark.parametrize("library", ["torch", "jax", "array_api_strict"])
def test_finding3_to_numpy_of_other_libraries_arrays(library):
    host = np.array([[1.5, -2.0], [0.25, 4.0]], dtype=np.float32)
    if library == "array_api_strict":
        x = strict.asarray(host, device=strict.Device("device2"))
    else:
        lib = pytest.importorskip(library)
        x = lib.numpy.asarray(host) if library == "jax" else lib.asarray(host)
    np.testing.assert_array_equal(nnx.to_numpy(x), host)
    np.testing.assert_array_equal(nnx.to_numpy(nnx.asarray(x, "fakecupy:1")), host)


@pytest.mark.parametrize("thing", [object(), None, {"a": 1}])
def test_to_numpy_of_something_that_is_no_array_is_a_type_error(thing):
    with pytest.raises(TypeError, match="cannot copy this .* to the host"):
        nnx.to_numpy(thing)


def test_nnx_info_lists_the_gpus_cupy_sees():
    lines = fake_cupy.FakeCupyBackend.device_lines()
    assert lines == [
        "CUDA runtime 12.8, driver 12.9, CuPy 14.0.0-fake",
        "cuda:0  Fake GPU, 16.0 GiB, compute 9.0",
        "cuda:1  Fake GPU, 16.0 GiB, compute 9.0",
    ]


# -- finding 4: available() compiles a kernel and names the missing library ------------------
def test_finding4_available_names_a_missing_nvrtc_and_its_install_command():
    module = fake_cupy.make_module()
    module.nvrtc_missing = True

    class NoNvrtc(fake_cupy.FakeCupyBackend):
        @classmethod
        def module(cls):
            return module

    ok, why = NoNvrtc.available("1")
    assert not ok
    assert "NVRTC" in why and "libnvrtc.so.12" in why
    assert "pip install 'nnx[cuda12]'" in why and "cuda-toolkit[nvrtc]==12.*" in why
    with pytest.raises(nnx.BackendError, match="NVRTC"):
        NoNvrtc("1")
    assert fake_cupy.FakeCupyBackend.available("1") == (True, "")
    assert not fake_cupy.FakeCupyBackend.available("2")[0]  # two fake GPUs only


def test_finding4_cuda_extras_pull_cupys_toolkit_extra():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(r.startswith("cupy-cuda12x[ctk]") for r in extras["cuda12"])
    assert any(r.startswith("cupy-cuda13x[ctk]") for r in extras["cuda13"])


def test_finding4_availability_is_cheap_without_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    ok, why = CupyBackend.available()
    assert not ok and "pip install 'nnx[cuda12]'" in why


# -- finding 5: unhashable devices, one backend per device, one gradcheck generator ---------
class _UnhashableDevice:
    __hash__ = None  # type: ignore[assignment]  # as cupy.cuda.Device

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _UnhashableDevice)


class _DeviceArray(np.ndarray):
    """A NumPy array that says it lives on an unhashable device (like a CuPy array)."""

    @property
    def device(self):  # noqa: D102
        return _UnhashableDevice()


class _UnhashableDeviceBackend(NumpyBackend):
    name = "unhashable-device"
    array_type = _DeviceArray
    device = _UnhashableDevice()

    def asarray(self, host, dtype=None):
        return np.asarray(host, dtype=self.dtype(dtype)).view(_DeviceArray)


def test_finding5_optimizer_constants_are_cached_on_unhashable_devices():
    registry.register_backend("unhashable-device", _UnhashableDeviceBackend)
    try:
        backend = nnx.get_backend("unhashable-device")
        p = nnx.Parameter(backend.asarray(np.ones(3, np.float32)))
        p.grad = backend.asarray(np.ones(3, np.float32))
        opt = SGD([p], lr=0.1, momentum=0.9)
        (mu,) = opt._constants(p, (0.9,))
        assert backend.owns(mu) and float(mu) == pytest.approx(0.9)
        assert opt._constants(p, (0.9,))[0] is mu  # made once, then reused
        opt.step()
        np.testing.assert_allclose(np.asarray(p.value), 0.9)
    finally:
        registry._factories.pop("unhashable-device", None)
        registry._instances.pop(("unhashable-device", ""), None)


@pytest.fixture
def cupy_is_the_standin():
    """The built-in "cupy" name (and its aliases) served by the stand-in for one test."""

    def forget() -> None:
        for key in [k for k in registry._instances if k[0] == "cupy"]:
            del registry._instances[key]

    forget()
    registry.register_backend("cupy", fake_cupy.FakeCupyBackend, source="built-in")
    yield
    registry.register_backend("cupy", CupyBackend, source="built-in")
    forget()


def test_finding5_one_backend_per_device_whatever_the_spelling(cupy_is_the_standin):
    first = nnx.get_backend("cupy")
    for spec in ("cuda", "cuda:0", "gpu", "cupy:0", "CUDA:0", "cupy:cuda:0"):
        assert nnx.get_backend(spec) is first, spec
    second = nnx.get_backend("cuda:1")
    assert second is not first and nnx.get_backend("cupy:1") is second
    assert sum(b is first for b in started()) == 1


@pytest.mark.parametrize("spec", ["numpy", "fakecupy:1"])
def test_finding5_gradcheck_builds_one_generator(monkeypatch, spec):
    backend = nnx.get_backend(spec)
    assert backend.generator is not None  # made on first use: made now, before counting
    made = []
    real = backend.rng
    monkeypatch.setattr(backend, "rng", lambda seed: made.append(seed) or real(seed))
    with nnx.using(backend):
        layer = nnx.Dropout(0.5)
    x = np.random.default_rng(0).normal(size=(3, 4))
    assert gradcheck(layer, x).ok
    assert len(made) == 1


# -- CupyOps: the NumPy kernels over the module, checked by the kit with numpy --------------
class _NumpyWithCupyOps(NumpyBackend):
    name = "numpy-cupyops"

    @staticmethod
    def ops_class(xp, device):  # noqa: D102
        from nnx.backend.cupy_ops import CupyOps

        return CupyOps(xp, device, np=np)


def test_cupy_ops_pass_the_kit_with_numpy_as_the_module():
    backend = _NumpyWithCupyOps()
    assert type(backend.ops).__name__ == "CupyOps" and backend.ops.np is np
    report = check_backend(backend, only=["ops"])
    assert all(r.ok for r in report.results), report
    buf = np.ones(3, np.float32)
    out = backend.ops.momentum_update(buf, np.full(3, 2.0, np.float32), np.float32(0.5))
    np.testing.assert_allclose(out, 2.5)


def test_cupy_ops_compute_a_weight_gradient_in_one_product(monkeypatch):
    """The pixel slices are an OpenBLAS rule: with cupy as the module, one product."""
    import types

    from nnx.backend import Ops
    from nnx.backend.cupy_ops import CupyOps

    calls = []

    def default(self, dy, cols):
        calls.append(1)
        return (cols @ dy.T).T

    monkeypatch.setattr(Ops, "conv_weight_grad", default)
    dy, cols = np.ones((8, 9216), np.float32), np.ones((25, 9216), np.float32)
    not_numpy = types.SimpleNamespace(empty=np.empty, zeros=np.zeros)
    CupyOps(NumpyBackend.xp, None, np=not_numpy).conv_weight_grad(dy, cols)
    assert calls == [1]
    got = CupyOps(NumpyBackend.xp, None, np=np).conv_weight_grad(dy, cols)  # NumPy: slices
    assert calls == [1]
    np.testing.assert_allclose(got, np.full((8, 25), 9216.0))

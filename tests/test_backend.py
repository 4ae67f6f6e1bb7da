"""The backend switch: registry, selection order, device specs and the errors users see."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import numpy as np
import pytest
from helpers import dtype_name

import nnx
from nnx.backend import NumpyBackend, context
from nnx.backend import registry as nb


def test_backends_lists_known_with_reasons():
    rows = {b.name: b for b in nnx.backends()}
    assert rows["numpy"].available and rows["numpy"].source == "built-in"
    assert "cupy" in rows
    if not rows["cupy"].available:
        assert rows["cupy"].reason
    assert rows["array_api_strict"].source.startswith("plugin")  # found by entry point


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("cpu", ("numpy", "")),
        ("numpy", ("numpy", "")),
        ("gpu", ("cupy", "0")),
        ("cuda", ("cupy", "0")),
        ("cuda:1", ("cupy", "1")),
        ("cupy:2", ("cupy", "2")),
        ("torch:cuda:0", ("torch", "cuda:0")),
        ("array_api_strict:device1", ("array_api_strict", "device1")),
    ],
)
def test_device_specs(spec, expected):
    assert nb.parse_spec(spec) == expected


def test_selection_order(monkeypatch):
    monkeypatch.setattr(context, "_default", None)
    monkeypatch.delenv("NNX_BACKEND", raising=False)
    assert nnx.current().name == "numpy"
    monkeypatch.setenv("NNX_BACKEND", "array_api_strict:device2")
    assert nnx.current().spec == "array_api_strict:device2"  # read at use, not at import
    nnx.use("array_api_strict:device1")
    try:
        assert nnx.current().spec == "array_api_strict:device1"  # use() beats the variable
        with nnx.using("numpy"):
            assert nnx.current().name == "numpy"  # using() beats use()
            layer = nnx.Linear(2, 2)
            layer.to("array_api_strict:device2")  # an explicit argument beats everything
            assert layer.backend.spec == "array_api_strict:device2"
        assert nnx.current().spec == "array_api_strict:device1"
    finally:
        nnx.use(None)


def test_env_variable_in_a_fresh_process():
    code = "import nnx; print(nnx.current().spec)"
    env = {"NNX_BACKEND": "array_api_strict:device1", "PATH": ""}
    if "PYTHONPATH" in os.environ:  # this tree's nnx and plugins, not an installed copy
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "array_api_strict:device1", out.stderr


def test_unknown_backend_lists_known_ones():
    with pytest.raises(nnx.BackendError, match=r"unknown backend .tpu.*array_api_strict.*numpy"):
        nnx.get_backend("tpu")


def test_cuda_without_cupy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    nb._instances.pop(("cupy", "0"), None)
    with pytest.raises(nnx.BackendError, match=r"pip install 'nnx\[cuda12\]'"):
        nnx.get_backend("cuda")


def test_cupy_without_device_gives_cuda_message(monkeypatch):
    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    nb._instances.pop(("cupy", "0"), None)
    with pytest.raises(nnx.BackendError, match="CUDA does not answer: cudaErrorNoDevice"):
        nnx.get_backend("cuda:0")
    info = {b.name: b for b in nnx.backends()}["cupy"]
    assert not info.available and "cudaErrorNoDevice" in info.reason


def test_bad_device_of_a_known_backend():
    with pytest.raises(nnx.BackendError, match="device3"):
        nnx.get_backend("array_api_strict:device3")
    with pytest.raises(nnx.BackendError, match="only the device 'cpu'"):
        nnx.get_backend("numpy:1")


def test_input_on_another_device_names_both():
    with nnx.using("array_api_strict:device1"):
        model = nnx.Sequential(nnx.Linear(2, 2))
    other = nnx.asarray(np.ones((1, 2)), device="array_api_strict:device2")
    with pytest.raises(TypeError, match=r"array_api_strict:device1.*device2.*model\.to\("):
        model(other)
    with pytest.raises(TypeError, match=r"an array on numpy:cpu.*nnx\.asarray"):
        model(np.ones((1, 2), np.float32))
    with pytest.raises(TypeError, match="convert it with nnx.asarray"):
        model([[1.0, 2.0]])


def test_wrong_input_width_names_layer_and_shapes(backend):
    model = nnx.Sequential(nnx.Linear(4, 3), nnx.ReLU(), nnx.Linear(3, 2))
    with pytest.raises(
        ValueError, match=r"Linear\(4 -> 3\) expects inputs of shape \(N, 4\), got \(5, 7\)"
    ):
        model(nnx.asarray(np.ones((5, 7))))


def test_register_backend_by_hand():
    class Float64Numpy(NumpyBackend):
        name = "numpy64"

    nnx.register_backend("numpy64", Float64Numpy)
    try:
        assert nnx.get_backend("numpy64").name == "numpy64"
        assert "numpy64" in {b.name for b in nnx.backends()}
        with pytest.raises(ValueError, match="contain no ':'"):
            nnx.register_backend("a:b", Float64Numpy)
    finally:
        nb._factories.pop("numpy64")
        nb._instances.pop(("numpy64", ""), None)


def test_broken_plugin_is_reported_not_raised(monkeypatch):
    monkeypatch.setitem(
        nb._factories, "broken", nb._broken("broken", "plugin failed to load: boom")
    )
    monkeypatch.setitem(nb._sources, "broken", "plugin test")
    row = {b.name: b for b in nnx.backends()}["broken"]
    assert not row.available and "boom" in row.reason
    with pytest.raises(nnx.BackendError, match="boom"):
        nnx.get_backend("broken")


def test_rng_is_seeded_and_on_device(backend):
    a = backend.rng(3).uniform((4,))
    b = backend.rng(3).uniform((4,))
    c = backend.rng(4).uniform((4,))
    assert backend.owns(a)
    np.testing.assert_array_equal(nnx.to_numpy(a), nnx.to_numpy(b))
    assert not np.array_equal(nnx.to_numpy(a), nnx.to_numpy(c))


def test_asarray_defaults(backend):
    x = nnx.asarray(np.ones(3))
    assert backend.owns(x) and str(nnx.to_numpy(x).dtype) == "float32"
    labels = nnx.asarray(np.array([1, 2]))
    assert str(nnx.to_numpy(labels).dtype) == "int64"


SEEDED_RUN = """
import numpy as np
import nnx
nnx.manual_seed(0)  # before any backend exists, as in the README's tour
model = nnx.Sequential(nnx.Linear(8, 16), nnx.ReLU(), nnx.Dropout(0.5), nnx.Linear(16, 3))
x = nnx.asarray(np.ones((32, 8), np.float32))
y = nnx.asarray(np.arange(32) % 3)
loss_fn = nnx.CrossEntropyLoss()
opt = nnx.optim.SGD(model.parameters(), lr=0.1)
for _ in range(3):
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    opt.step()
    print(repr(float(nnx.to_numpy(loss))))
"""


def test_manual_seed_before_any_backend_makes_fresh_processes_agree():
    """nnx.manual_seed seeds the generators of backends started after it (dropout masks)."""

    def run() -> str:
        out = subprocess.run(
            [sys.executable, "-c", SEEDED_RUN], capture_output=True, text=True, env=os.environ
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    first, second = run(), run()
    assert len(first.split()) == 3
    assert first == second


def test_manual_seed_also_seeds_backends_started_later():
    nnx.manual_seed(5)
    nb._instances.pop(("numpy64b", ""), None)

    class Later(NumpyBackend):
        name = "numpy64b"

    nnx.register_backend("numpy64b", Later)
    try:
        draws = nnx.to_numpy(nnx.get_backend("numpy64b").generator.uniform((5,)))
        np.testing.assert_array_equal(draws, np.random.default_rng(5).random(5, dtype=np.float32))
    finally:
        nb._factories.pop("numpy64b")
        nb._sources.pop("numpy64b")
        nb._instances.pop(("numpy64b", ""), None)


def test_discovery_is_thread_safe(monkeypatch):
    """Two threads asking for a plugin the first time both get it (no spurious 'unknown')."""
    import threading
    import time

    class SlowEntryPoint:
        name, value = "slowplugin", "tests:SlowPlugin"

        def load(self):
            time.sleep(0.3)  # a plugin importing a big library
            return type("SlowPlugin", (NumpyBackend,), {"name": "slowplugin"})

    for attr in ("_factories", "_sources", "_instances"):
        monkeypatch.setattr(nb, attr, dict(getattr(nb, attr)))
    monkeypatch.setattr(nb, "_discovered", False)
    monkeypatch.setattr(nb.metadata, "entry_points", lambda group: [SlowEntryPoint()])
    results: list[object] = []

    def ask() -> None:
        try:
            results.append(nnx.get_backend("slowplugin").name)
        except Exception as err:
            results.append(err)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert results == ["slowplugin", "slowplugin"]


def test_asarray_honours_the_dtype_asked_for(backend):
    """``nnx.asarray(x, dtype=...)`` casts host data and arrays already on the device."""
    from nnx.testing.helpers import _has_float64

    host_data = np.arange(6, dtype=np.float64).reshape(2, 3) / 4
    assert dtype_name(nnx.asarray(host_data)) == "float32"  # the default
    assert dtype_name(nnx.asarray(host_data, dtype="int32")) == "int32"
    on_device = nnx.asarray(host_data)
    assert nnx.asarray(on_device) is on_device
    assert dtype_name(nnx.asarray(on_device, dtype="int64")) == "int64"
    if _has_float64(backend):
        got = nnx.asarray(host_data, dtype="float64")
        assert dtype_name(got) == "float64"
        np.testing.assert_array_equal(nnx.to_numpy(got), host_data)

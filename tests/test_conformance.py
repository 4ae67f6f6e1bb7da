"""The backend conformance kit (nnx.testing): every check on every available backend,
one pytest test per check so a failure is named, and proof that the kit catches
deliberately broken toy backends.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.backend import HostGenerator, NumpyBackend, NumpyOps, registry
from nnx.testing import (
    ConformanceReport,
    assert_conformant,
    check_backend,
    check_names,
    missing_examples,
)


@pytest.mark.parametrize("check", check_names())
def test_conformance(backend, check):
    (result,) = check_backend(backend, only=[check]).results
    if result.status == "skip":
        pytest.skip(result.message)
    assert result.ok, f"{check} on {backend.spec}: {result.message}"


def test_example_tables_cover_every_layer_loss_and_optimizer():
    assert missing_examples() == [], (
        "add these to the example tables in nnx/testing/examples.py so the kit checks them"
    )


def test_the_kit_has_cases_for_every_kernel_of_ops():
    """A kernel added to Ops without cases in nnx.testing.checks_ops would go unchecked."""
    from nnx.backend import Ops
    from nnx.testing.checks_ops import _cases, kernel_names

    backend = nnx.get_backend("numpy")
    ref = Ops(backend.xp, backend.device)
    assert "im2col" in kernel_names() and "sum_axis0" in kernel_names()
    for name in kernel_names():
        assert list(_cases(name, backend, ref)), name


def test_no_kernel_is_looked_up_by_name_in_core_code():
    import pathlib
    import re

    root = pathlib.Path(nnx.__file__).parent
    for sub in ("layers", "losses.py", "optim.py"):
        for path in (root / sub).rglob("*.py") if (root / sub).is_dir() else [root / sub]:
            found = re.findall(r"getattr\(\s*self\.(?:backend|ops)", path.read_text())
            assert not found, f"{path} looks a kernel up by name"


def test_checks_cover_the_contract():
    names = set(check_names())
    for required in ("device", "float32", "rng", "xor", "checkpoint", "to_roundtrip"):
        assert required in names
    for layer in ("Linear", "Conv2d", "MaxPool2d", "BatchNorm2d", "Dropout", "Flatten"):
        if hasattr(nnx.layers, layer):
            assert f"gradcheck:{layer}" in names
    for config in ("SGD", "SGD(momentum)", "SGD(nesterov)", "Adam", "AdamW", "RMSprop"):
        assert f"optim:{config}" in names


# -- broken toys: the kit must name what is wrong ----------------------------------------------


class SeedlessRng(NumpyBackend):
    """Broken: its generator ignores the seed."""

    name = "broken_rng"

    def rng(self, seed):
        return HostGenerator(self, None)


class Float64Leak(NumpyBackend):
    """Broken: asarray keeps float64 (numpy's default) instead of nnx's float32."""

    name = "broken_float64"

    def asarray(self, host, dtype=None):
        host = np.asarray(host)
        if dtype is None and host.dtype.kind == "f":
            return host.astype(np.float64)
        return np.asarray(host, dtype=self.dtype(dtype))


class SloppyOps(NumpyOps):
    """Broken: its fused conv-backward kernel is 0.1% off the portable code."""

    def col2im_matmul(self, wt, dy, *args):
        return super().col2im_matmul(wt, dy, *args) * 1.001


class SloppyFastPath(NumpyBackend):
    """Broken: its Ops override a kernel badly."""

    name = "broken_fast_path"
    ops_class = SloppyOps


def _stray_device():
    from nnx_array_api_strict import ArrayApiStrictBackend

    class StrayDevice(ArrayApiStrictBackend):
        """Broken: asarray forgets ``device=``, so arrays land on the default device."""

        name = "broken_device"

        def asarray(self, host, dtype=None):
            return self.xp.asarray(host, dtype=self.dtype(dtype))

    return StrayDevice


@pytest.fixture
def register(monkeypatch):
    """nnx.register_backend, undone after the test (the registry is restored)."""
    for attr in ("_factories", "_sources", "_instances"):
        monkeypatch.setattr(registry, attr, dict(getattr(registry, attr)))
    return lambda name, cls: nnx.register_backend(name, cls, source="test")


QUICK = ["available", "arrays", "device", "float32", "rng", "dropout_mask", "optim:*", "xor"]


def test_kit_names_an_rng_that_ignores_the_seed(register):
    register("broken_rng", SeedlessRng)
    report = check_backend("broken_rng", only=QUICK)
    assert "rng" in report.failed
    assert "same seed" in report["rng"].message
    if hasattr(nnx.layers, "Dropout"):
        assert "dropout_mask" in report.failed
    assert "float32" not in report.failed and "device" not in report.failed
    with pytest.raises(AssertionError, match=r"rng: the same seed gave different"):
        assert_conformant("broken_rng", only=QUICK)


def test_kit_names_a_float64_leak(register):
    register("broken_float64", Float64Leak)
    report = check_backend("broken_float64", only=QUICK)
    assert "float32" in report.failed
    assert "is float64" in report["float32"].message
    assert "backend.asarray(float64 host data) is float64" in report["float32"].message
    assert "device" not in report.failed and "xor" not in report.failed
    if "rng" in report.failed:  # its draws go through asarray too
        assert "not float32" in report["rng"].message
    with pytest.raises(AssertionError, match=r"float32: \d+ arrays are not float32"):
        assert_conformant("broken_float64", only=QUICK)


def test_kit_names_arrays_on_the_wrong_device(register):
    pytest.importorskip("nnx_array_api_strict")
    register("broken_device", _stray_device())
    # forget backends earlier tests started (restored afterwards): fakecupy:0 lives on
    # array-api-strict's CPU_DEVICE and would be named as the stray arrays' owner instead
    registry._instances.clear()
    report = check_backend("broken_device:device1", only=["available", "arrays", "device"])
    assert {"arrays", "device"} <= set(report.failed)
    assert "arrays are not on broken_device:device1" in report["device"].message
    assert "CPU_DEVICE" in report["device"].message


def test_kit_names_a_fast_path_that_disagrees_with_the_portable_code(register):
    register("broken_fast_path", SloppyFastPath)
    report = check_backend("broken_fast_path", only=["ops", "gradcheck:Conv2d"])
    assert sorted(report.failed) == ["gradcheck:Conv2d", "ops"]
    assert report["ops"].message.startswith("col2im_matmul(")


def test_a_backend_that_does_not_start_fails_available_and_skips_the_rest():
    report = check_backend("no_such_backend", only=["available", "xor"])
    assert isinstance(report, ConformanceReport)
    assert report.failed == ["available"]
    assert report["xor"].status == "skip"
    assert "unknown backend" in report["available"].message


def test_only_rejects_unknown_check_names():
    with pytest.raises(ValueError, match="no conformance check matches"):
        check_backend("numpy", only=["gradcheck:NoSuchLayer"])


def test_report_reads_well():
    report = check_backend("numpy", only=["rng", "gradcheck:*"])
    assert report.ok and bool(report)
    assert str(report).startswith("nnx conformance of numpy:cpu: ")
    assert all(n == "rng" or n.startswith("gradcheck:") for n in report.names())

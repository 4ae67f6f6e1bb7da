"""Issue 20's GPU-check findings, each checked here without a GPU: through the CuPy
stand-in (tests/fake_cupy.py), JAX's forced host devices, NumPy, or the scripts'
own ``--plan`` (scripts/gpu_check.sh prints its steps and checks its budget)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import sysconfig
import types
from pathlib import Path

import array_api_strict as strict
import fake_cupy
import numpy as np
import pytest

from nnx.distributed import runtime
from nnx.distributed.buckets import DeviceBucket, divide_by_ranks_
from nnx.distributed.nccl import NcclCommunicator

ROOT = Path(__file__).resolve().parents[1]


# -- finding 2: a full GPU is not a missing NVRTC, and is probed again ------------------------
@pytest.mark.parametrize("where", ["allocate", "launch"])
def test_finding2_out_of_memory_is_reported_as_such_and_not_cached(where):
    module = fake_cupy.make_module()

    class Full(fake_cupy.FakeCupyBackend):
        @classmethod
        def module(cls):
            return module

    module.out_of_memory = where
    ok, why = Full.available("1")
    assert not ok
    assert "out of memory" in why and "NVRTC" not in why and "pip install" not in why
    assert "XLA_PYTHON_CLIENT_PREALLOCATE=false" in why
    module.out_of_memory = ""  # the other process let go of the memory
    assert Full.available("1") == (True, "")
    module.nvrtc_missing = True  # a success is kept: no second probe
    assert Full.available("1") == (True, "")


def test_finding2_a_missing_nvrtc_is_still_named_and_kept():
    module = fake_cupy.make_module()
    module.nvrtc_missing = True

    class NoNvrtc(fake_cupy.FakeCupyBackend):
        @classmethod
        def module(cls):
            return module

    ok, why = NoNvrtc.available("0")
    assert not ok and "NVRTC" in why
    module.nvrtc_missing = False
    assert NoNvrtc.available("0") == (False, why)  # a missing library does not come back


# -- finding 4: mpiexec next to the interpreter (an unactivated venv), libmpi really loaded ----
def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_finding4_find_mpiexec_prefers_the_interpreters_own(tmp_path, monkeypatch):
    own = _executable(tmp_path / "venv" / "bin" / "mpiexec")
    other = _executable(tmp_path / "elsewhere" / "mpiexec")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setattr(sysconfig, "get_path", lambda name, *a, **k: str(tmp_path / "none"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert runtime.find_mpiexec() == str(own)  # not on PATH: found next to sys.executable
    monkeypatch.setenv("PATH", str(other.parent))
    assert runtime.find_mpiexec() == str(own)  # the one whose libmpi mpi4py loads comes first
    own.unlink()
    assert runtime.find_mpiexec() == str(other)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert runtime.find_mpiexec() is None


def test_finding4_mpi_missing_loads_the_library_not_just_the_package(monkeypatch):
    broken = types.SimpleNamespace(returncode=1, stderr="RuntimeError: cannot load MPI library\n")
    monkeypatch.setattr(runtime.subprocess, "run", lambda *a, **k: broken)
    pytest.importorskip("mpi4py")
    why = runtime.mpi_missing()
    assert "no MPI library" in why and "cannot load MPI library" in why and "mpich" in why


def test_finding4_the_mpi_tests_and_benchmark_find_mpiexec_with_a_bare_path():
    """An unactivated venv (the GPU image's python3): its bin folder is not on PATH."""
    bare = "/usr/bin:/bin"
    if shutil.which("mpiexec", path=bare):
        pytest.skip("this machine has a system mpiexec: a bare PATH finds it anyway")
    if runtime.mpi_missing():
        pytest.skip(runtime.mpi_missing())
    code = (
        "import sys; sys.path[:0] = ['tests', 'benchmarks']\n"
        "import test_distributed, ddp\n"
        "print(repr(test_distributed.MPI_MISSING), repr(ddp.missing()))\n"
        "print(test_distributed.MPIEXEC)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = bare
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
        cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    missing, mpiexec = out.stdout.splitlines()[-2:]
    assert missing == "'' ''"
    assert Path(mpiexec).parent == Path(sys.executable).parent or Path(mpiexec).parent == Path(
        sysconfig.get_path("scripts")
    )


# -- finding 6: NCCL's mean of integer buffers ------------------------------------------------
@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8"])
def test_finding6_integer_mean_divides_toward_zero_as_ncclavg(dtype):
    if dtype == "uint8":
        buf, want = np.array([0, 7, 9, 255], dtype), [0, 3, 4, 127]
    else:
        buf, want = np.array([-7, -6, -1, 0, 1, 6, 7], dtype), [-3, -3, 0, 0, 0, 3, 3]
    divide_by_ranks_(np, buf, 2)
    assert buf.dtype == np.dtype(dtype)
    assert buf.tolist() == want


def test_finding6_float_mean_scales_by_the_reciprocal():
    buf = np.array([3.0, -1.5], np.float32)
    divide_by_ranks_(np, buf, 3)
    assert buf.dtype == np.float32
    np.testing.assert_array_equal(buf, np.array([3.0, -1.5], np.float32) * np.float32(1 / 3))


def test_finding6_integer_mean_in_any_array_api_namespace():
    buf = strict.asarray([-5, 5, 4], dtype=strict.int64)
    divide_by_ranks_(strict, buf, 2)
    assert buf.dtype == strict.int64
    assert [int(v) for v in buf] == [-2, 2, 2]


class _TwoRanks:
    """A communicator whose device allreduce adds a second rank's copy of the buffer."""

    size = 2

    def allreduce_device_(self, buffer, count=True):
        buffer *= 2


def test_finding6_device_bucket_averages_integer_gradients():
    like = np.zeros(3, np.int64)
    bucket = DeviceBucket(_TwoRanks(), like, [(3,)], like.dtype)
    (mean,) = bucket.average([np.array([-3, 4, 5], np.int64)], [like])
    assert mean.dtype == np.int64 and mean.tolist() == [-3, 4, 5]


class _GpuArray(np.ndarray):
    """A NumPy array that answers ``with x.device:`` as a CuPy array does."""

    @property
    def device(self):
        return contextlib.nullcontext()


def test_finding6_nccl_allreduce_mean_of_an_integer_array():
    comm = object.__new__(NcclCommunicator)  # no MPI, no NCCL: only the mean's own code
    comm.size = 2
    comm._cupy = types.SimpleNamespace(
        ndarray=_GpuArray, ascontiguousarray=np.ascontiguousarray, where=np.where
    )
    comm.allreduce_device_ = _TwoRanks().allreduce_device_
    x = np.array([-7, 3, 8], np.int32).view(_GpuArray)
    out = comm.allreduce(x, "mean")
    assert out.dtype == np.int32 and out.tolist() == [-7, 3, 8]
    assert comm.allreduce(x, "sum").tolist() == [-14, 6, 16]

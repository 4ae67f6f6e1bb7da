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


# -- the scripts: scripts/gpu_check.sh --plan prints what each step runs and its limit ---------
def _script(*args: str, env: dict | None = None, script: str = "gpu_check.sh"):
    full = dict(os.environ, PYTHON=sys.executable, **(env or {}))
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / script), *args], capture_output=True, text=True,
        timeout=120, env=full, cwd=ROOT,
    )  # fmt: skip


def _plan(*args: str, env: dict | None = None) -> str:
    out = _script("--plan", *args, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _steps(plan: str) -> dict[str, tuple[str, int, int]]:
    """step name -> (device, limit, kill grace) from a plan."""
    steps = {}
    for line in plan.splitlines():
        if line.startswith("step ") and ", limit " in line:
            name, rest = line[5:].split(": device ", 1)
            device, limits = rest.split(", limit ")
            limit, grace = limits.removesuffix("s").split("s + ")
            steps[name] = (device, int(limit), int(grace))
    return steps


def _commands(plan: str, step: str) -> list[str]:
    lines = plan.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"step {step}:"))
    commands = []
    for line in lines[start + 1 :]:
        if line.startswith("step "):
            break
        commands.append(line.strip())
    return commands


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")


@needs_bash
def test_finding1_the_check_reads_fashion_mnist_from_the_carried_tree():
    plan = _plan()
    data = ROOT / ".data" / "fashion-mnist"
    assert f"data: {data}" in plan.splitlines()
    for step in ("mnist-mlp", "mnist-cnn"):
        assert any(f"--data-dir {data} " in c for c in _commands(plan, step)), step
    assert "/usr/share/datasets" not in plan
    assert "data: /somewhere/else" in _plan("/somewhere/else").splitlines()  # still an argument


def test_finding1_data_is_git_ignored():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for path in (".data/fashion-mnist/train-images-idx3-ubyte.gz", ".whl/x-1-py3-none-any.whl"):
        out = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert out.returncode == 0, f"{path} is not git-ignored"


@needs_bash
def test_finding1_gpu_wheels_copies_and_checks_the_data(tmp_path):
    source = Path("/usr/share/datasets/fashion-mnist")
    if not (source / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed here")
    dest = tmp_path / "carry" / "fashion-mnist"
    out = _script("--data-only", env={"DATA_DIR": str(dest), "FASHION_MNIST_SRC": str(source)},
                  script="gpu_wheels.sh")  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        f"{b}.gz" for b in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    )  # fmt: skip
    assert "fashion-mnist test: 10000 images, checked" in out.stdout


@needs_bash
def test_finding1_gpu_wheels_refuses_wrong_data_without_downloading(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for b in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"):
        (bad / f"{b}-ubyte.gz").write_bytes(b"not the data set")
    dest = tmp_path / "carry" / "fashion-mnist"
    out = _script("--data-only", env={"DATA_DIR": str(dest), "FASHION_MNIST_SRC": str(bad)},
                  script="gpu_wheels.sh")  # fmt: skip
    assert out.returncode != 0
    assert "download=False" in out.stderr and "SHA-256" in out.stderr


@needs_bash
def test_finding2_the_check_stops_jax_preallocating_for_every_step():
    plan = _plan()
    assert "XLA_PYTHON_CLIENT_PREALLOCATE: false" in plan.splitlines()
    text = (ROOT / "scripts" / "gpu_check.sh").read_text()
    assert "\nexport XLA_PYTHON_CLIENT_PREALLOCATE=false\n" in text  # for the whole check


@needs_bash
def test_finding4_the_check_puts_the_interpreters_bin_folder_on_path():
    plan = _plan()
    scripts = sysconfig.get_path("scripts")
    assert f"PATH starts: {os.path.dirname(sys.executable)}:{scripts}" in plan.splitlines()
    install = " ".join(_commands(plan, "install"))
    assert "from\\ mpi4py\\ import\\ MPI" in install and "mpich==" in install
    assert _commands(plan, "ddp")[-1].startswith("$ mpiexec -n 1 ")


@needs_bash
@pytest.mark.parametrize("mode", [(), ("--rehearse",)])
def test_finding5_limits_and_kill_graces_fit_the_budget(mode):
    plan = _plan(*mode)
    steps = _steps(plan)
    total = sum(limit + grace for _, limit, grace in steps.values())
    budget_line = next(line for line in plan.splitlines() if line.startswith("budget: "))
    planned, budget = budget_line.split(" = ")[1].split(" (")[0].split(" of ")
    assert int(planned.removesuffix("s")) == total < int(budget.removesuffix("s"))
    if not mode:
        assert int(budget.removesuffix("s")) == 480  # the GPU run's 8 minutes
        assert all(grace > 0 for _, _, grace in steps.values())
    (pytest_line,) = _commands(plan, "tests")
    assert "-m pytest" in pytest_line and " --dist loadscope " in pytest_line
    assert " --durations=25 " in pytest_line


@needs_bash
def test_finding5_the_check_refuses_limits_over_its_budget():
    out = _script("--plan", env={"GPU_CHECK_BUDGET": "300"})
    assert out.returncode == 2
    assert "do not fit the 300s budget" in out.stderr


@needs_bash
def test_the_rehearsal_runs_what_needs_no_cuda_and_names_the_rest():
    plan = _plan("--rehearse")
    steps = _steps(plan)
    assert {"image", "carry", "install", "installed", "tests", "xor", "mnist-mlp", "mnist-cnn",
            "ddp"} == set(steps)  # fmt: skip
    for name in ("cupy-probe", "xor-torch", "bench-gpu", "ratios"):
        assert f"step {name}: needs a GPU" in plan.splitlines()
    assert all(steps[s][0] in ("cpu", "numpy") for s in ("xor", "mnist-mlp", "mnist-cnn", "ddp"))
    gpu = _plan()  # PYTHON is this interpreter; the rehearsal's is its fresh venv's
    venv_python = str(Path(os.environ.get("TMPDIR") or "/tmp") / "nnx-gpu-rehearse/venv/bin/python")
    assert f"python: {venv_python}" in plan.splitlines()
    same = [c.replace(sys.executable, "PY") for c in _commands(gpu, "install")]
    assert [c.replace(venv_python, "PY") for c in _commands(plan, "install")] == same
    assert any("--no-index --find-links" in c for c in same)


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

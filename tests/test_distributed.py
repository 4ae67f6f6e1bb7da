"""nnx.distributed: sharding in process; broadcast, gradient averaging, checkpoints and
fault handling under ``mpiexec -n 2`` (tests/mpi_worker.py), compared with one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import BACKENDS
from helpers import host, training_bound, write_tiny_mnist

import nnx
from nnx.distributed.runtime import find_mpiexec, mpi_missing
from nnx.testing import assert_within

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "mpi_worker.py"
sys.path.insert(0, str(WORKER.parent))
import mpi_worker as W  # noqa: E402

# this interpreter's own mpiexec first: an unactivated venv's bin folder is not on PATH
MPIEXEC = find_mpiexec()
MPI_MISSING = mpi_missing()  # mpi4py, its MPI library (not just `import mpi4py`), mpiexec

#: the terms of the worker model's sums: its fan-ins (6, 16) and the 16 samples of a batch
TERMS = W.FEATURES + 16 + 2 * W.PER_RANK
needs_mpi = pytest.mark.skipif(bool(MPI_MISSING), reason=MPI_MISSING or "-")
LAUNCH_TIMEOUT_S = 90  # a hung job fails the test instead of hanging the suite


def _env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT), *(str(ROOT / "backends" / b) for b in ("array_api_strict", "torch", "jax"))]
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")])
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def mpirun(n: int, *args: str, timeout: float = LAUNCH_TIMEOUT_S) -> subprocess.CompletedProcess:
    cmd = [MPIEXEC, "-n", str(n), sys.executable, str(WORKER), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())


# -- sharding (no MPI needed) ----------------------------------------------------------


def _shard_indices(rank: int, size: int, epoch: int, n: int = 103, shuffle: bool = True):
    x = np.arange(n, dtype=np.float32)[:, None]
    loader = nnx.DataLoader(x, batch_size=5, shuffle=shuffle, seed=11, shard=(rank, size))
    loader.set_epoch(epoch)
    return np.concatenate([host(xb)[:, 0] for xb, _ in loader]).astype(np.int64), len(loader)


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_shards_are_disjoint_equal_and_cover_the_epoch(backend, size):
    for epoch in (0, 1):
        parts = [_shard_indices(r, size, epoch) for r in range(size)]
        seen = np.concatenate([p for p, _ in parts])
        assert len({len(p) for p, _ in parts}) == 1, "shards must be equal-sized"
        assert len({n for _, n in parts}) == 1, "every rank takes the same number of steps"
        assert len(np.unique(seen)) == len(seen), "shards overlap"
        assert len(seen) == 103 - 103 % size  # all but the order's last 103 % size samples


def test_every_sample_once_per_epoch_when_the_size_divides(backend):
    seen = np.concatenate([_shard_indices(r, 4, epoch=2, n=100)[0] for r in range(4)])
    np.testing.assert_array_equal(np.sort(seen), np.arange(100))


def test_same_seed_same_shards_and_epochs_differ(backend):
    a, _ = _shard_indices(1, 2, epoch=3)
    b, _ = _shard_indices(1, 2, epoch=3)  # a fresh loader, as after a restart
    c, _ = _shard_indices(1, 2, epoch=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_ranks_together_cover_each_global_batch(backend):
    """Step i of all ranks is global batch i of size size * batch_size, as one process sees it."""
    x = np.arange(64, dtype=np.float32)[:, None]
    whole = nnx.DataLoader(x, batch_size=8, shuffle=True, seed=5)
    halves = [nnx.DataLoader(x, batch_size=4, shuffle=True, seed=5, shard=(r, 2)) for r in (0, 1)]
    for global_batch, *parts in zip(whole, *halves, strict=True):
        mine = np.sort(np.concatenate([host(p[0])[:, 0] for p in parts]))
        np.testing.assert_array_equal(mine, np.sort(host(global_batch[0])[:, 0]))


def test_shard_is_checked():
    x = np.zeros((10, 2), np.float32)
    for bad in [(2, 2), (-1, 2), (0, 0), "0,2"]:
        with pytest.raises(ValueError, match="shard"):
            nnx.DataLoader(x, shard=bad)


# -- without mpi4py --------------------------------------------------------------------


def test_without_mpi4py_init_names_the_extra_and_nothing_imports_it():
    code = (
        "import sys; sys.modules['mpi4py'] = None\n"  # as if mpi4py were not installed
        "import numpy as np, nnx, nnx.distributed as dist\n"
        "nnx.DataLoader(np.zeros((4, 2), np.float32), shard=(0, 2))\n"
        "assert dist.rank() == 0 and dist.size() == 1 and not dist.is_initialized()\n"
        "try:\n"
        "    dist.init()\n"
        "except dist.DistributedError as err:\n"
        "    print('ERROR:', err)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env()
    )
    assert out.returncode == 0, out.stderr
    assert "pip install 'nnx[mpi]'" in out.stdout


def test_plain_import_does_not_load_mpi4py():
    code = "import sys, nnx, nnx.distributed; print('mpi4py' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env()
    )
    assert out.stdout.strip() == "False", out.stderr


# -- two ranks under mpiexec -----------------------------------------------------------


MPI_BACKENDS = [
    p
    for p in BACKENDS
    if p.values[0] in ("numpy", "array_api_strict:device1", "torch:cpu", "jax:cpu", "cupy")
]


@pytest.fixture(scope="module", params=MPI_BACKENDS)
def two_ranks(request, tmp_path_factory):
    """Run the training scenario once per backend under ``mpiexec -n 2``; its output folder."""
    if MPI_MISSING:
        pytest.skip(MPI_MISSING)
    spec = request.param
    out = tmp_path_factory.mktemp("ddp")
    # NCCL refuses two ranks on one GPU: with a single GPU the cupy run stages through MPI
    result = mpirun(2, "train", str(out), spec, "mpi" if _gpus() < 2 else "auto")
    assert result.returncode == 0, result.stdout + result.stderr
    return spec, out


def _gpus() -> int:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount()
    except Exception:
        return 0


def _nccl_missing() -> str:
    from nnx.backend import availability

    ok, why = availability("cupy")
    if not ok:
        return why
    from nnx.distributed.nccl import nccl_available

    return nccl_available()[1]


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _single_process(
    spec: str, kind: str, seed: int = 100, model=None, opt=None, epochs=(0,), ranks=2
):
    """One process trained on the whole global batches (size ranks x per-rank batch)."""
    x, y = W.dataset()
    with nnx.using(spec):
        model = model or W.build(seed)
        opt = opt or W.make_optimizer(kind, model)
        loader = nnx.DataLoader(
            x, y, batch_size=ranks * W.PER_RANK, shuffle=True, seed=W.SHUFFLE_SEED
        )
        history = nnx.fit(model, nnx.CrossEntropyLoss(), opt, loader, epochs=len(epochs),
                          initial_epoch=epochs[0], progress=False)  # fmt: skip
    return W.params(model), history


def test_broadcast_parameters_makes_the_ranks_equal(two_ranks):
    _, out = two_ranks
    r0, r1 = _load(out / "bcast_0.npz"), _load(out / "bcast_1.npz")
    names = [k[len("after/") :] for k in r0 if k.startswith("after/")]
    assert any(not np.array_equal(r0[f"before/{k}"], r1[f"before/{k}"]) for k in names)
    for k in names:
        np.testing.assert_array_equal(r0[f"after/{k}"], r0[f"before/{k}"])  # rank 0's weights
        np.testing.assert_array_equal(r1[f"after/{k}"], r0[f"before/{k}"])


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_two_ranks_equal_one_process_on_whole_batches(two_ranks, kind):
    spec, out = two_ranks
    r0, r1 = _load(out / f"{kind}_0.npz"), _load(out / f"{kind}_1.npz")
    reference, _ = _single_process(spec, kind)
    start = W.params(W.build(100))
    report = json.loads((out / "report_0.json").read_text())[kind]
    assert report["steps"] == W.N // (2 * W.PER_RANK) == 20
    for k in reference:
        np.testing.assert_array_equal(r0[k], r1[k], err_msg=f"{k} differs between the ranks")
        # the ranks' sums of 8 + 8 samples against one sum of 16, over 20 steps
        bound = training_bound(reference[k], TERMS, report["steps"])
        assert_within(r0[k], reference[k], bound, f"{k} after two ranks' training")
        assert not np.allclose(r0[k], start[k])  # it trained


def test_gradients_travel_in_reused_buckets(two_ranks):
    _, out = two_ranks
    for kind in ("sgd", "adam"):
        rep = json.loads((out / "report_0.json").read_text())[kind]
        assert rep["buckets"] == 2  # 4 parameters, a 300-byte bucket limit: [W1], [b1, W2, b2]
        assert rep["calls_after_first_step"] == rep["buckets"] * (rep["steps"] - 1)
        assert rep["buckets_reused"]


def test_fit_averages_metrics_and_calls_on_epoch_end_everywhere(two_ranks):
    spec, out = two_ranks
    reports = [json.loads((out / f"report_{r}.json").read_text()) for r in (0, 1)]
    _, single = _single_process(spec, "sgd", epochs=(0, 1))
    for rep in reports:
        assert rep["on_epoch_end"] == [0, 1]
        for mine, ref in zip(rep["history"], single.epochs, strict=True):
            assert mine["loss"] == reports[0]["history"][int(mine["epoch"]) - 1]["loss"]
            bound = training_bound(ref["loss"], TERMS, W.N // (2 * W.PER_RANK))
            assert_within(mine["loss"], ref["loss"], bound, "the epoch's mean loss")
            np.testing.assert_allclose(mine["accuracy"], ref["accuracy"], atol=1 / W.N + 1e-9)


def test_checkpoint_from_two_ranks_resumes_on_two_ranks_and_on_one_process(two_ranks):
    spec, out = two_ranks
    straight = [_load(out / f"straight_{r}.npz") for r in (0, 1)]
    resumed = [_load(out / f"resumed_{r}.npz") for r in (0, 1)]
    with nnx.using(spec):
        model = W.build(300)
        opt = W.make_optimizer("sgd", model)
        meta = nnx.load(out / "ckpt.npz", model, opt)
    assert meta["epoch"] == 1
    assert json.loads((out / "report_0.json").read_text())["plain_load_same_state"]
    alone, _ = _single_process(spec, "sgd", model=model, opt=opt, epochs=(1,))
    for k in alone:
        for r in (0, 1):
            np.testing.assert_array_equal(resumed[r][k], straight[0][k], err_msg=k)
            np.testing.assert_array_equal(straight[r][k], straight[0][k], err_msg=k)
        bound = training_bound(alone[k], TERMS, W.N // (2 * W.PER_RANK))
        assert_within(straight[0][k], alone[k], bound, f"{k} after the resumed epoch")


@needs_mpi
def test_an_error_on_one_rank_aborts_the_whole_job(tmp_path):
    start = time.monotonic()
    result = mpirun(2, "fault", str(tmp_path), "numpy", timeout=60)  # a hang raises TimeoutExpired
    assert result.returncode != 0
    assert "rank 1 of 2 failed: RuntimeError: injected failure on rank 1" in result.stderr
    assert not list(tmp_path.glob("finished_*"))
    print(f"aborted after {time.monotonic() - start:.1f} s")


@needs_mpi
def test_one_rank_job_runs_the_same_code(tmp_path):
    result = mpirun(1, "train", str(tmp_path), "numpy")
    assert result.returncode == 0, result.stdout + result.stderr
    rep = json.loads((tmp_path / "report_0.json").read_text())
    assert rep["sgd"]["steps"] == W.N // W.PER_RANK


def test_one_rank_nccl_job_matches_one_process(tmp_path):
    """The NCCL path on one GPU (scripts/gpu_check.sh runs it where a GPU is lent)."""
    missing = MPI_MISSING or _nccl_missing()
    if missing:
        pytest.skip(missing)
    result = mpirun(1, "train", str(tmp_path), "cupy", "nccl")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "NcclCommunicator" in result.stdout
    reference, _ = _single_process("cupy", "sgd", ranks=1)
    mine = _load(tmp_path / "sgd_0.npz")
    for k in reference:
        bound = training_bound(reference[k], TERMS, W.N // W.PER_RANK)
        assert_within(mine[k], reference[k], bound, f"{k} after the NCCL job")


@needs_mpi
def test_mnist_example_distributed_prints_once_saves_once_and_resumes(tmp_path):
    write_tiny_mnist(tmp_path)
    ckpt = tmp_path / "run.npz"
    example = [sys.executable, str(ROOT / "examples" / "mnist.py"), "--distributed",
               "--dataset", "mnist", "--data-dir", str(tmp_path), "--batch-size", "32",
               "--no-progress", "--save", str(ckpt)]  # fmt: skip
    run = [MPIEXEC, "-n", "2", *example]
    first = subprocess.run([*run, "--epochs", "3"], capture_output=True, text=True,
                           timeout=LAUNCH_TIMEOUT_S, env=_env())  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("Total params") == 1  # rank 0 alone prints
    assert "2 ranks x batch 16" in first.stdout
    assert first.stdout.count("epoch  3") == 1 and ckpt.exists()
    assert not list(tmp_path.glob(".run.npz.*"))  # no temporary file left by a second writer
    accuracy = float(first.stdout.split("test accuracy ")[1].split("%")[0])
    assert accuracy > 30  # ten classes: chance is 10%
    resumed = subprocess.run([*run, "--epochs", "1", "--resume", str(ckpt)], capture_output=True,
                             text=True, timeout=LAUNCH_TIMEOUT_S, env=_env())  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.count("resumed") == 1 and "epoch  4" in resumed.stdout

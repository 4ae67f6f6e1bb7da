"""nnx's CPU thread pool: the setting, the splitting, and training results that do not
depend on it (every backend: the split paths exist on numpy only, the others must agree)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import nnx
from nnx.backend import threads


@pytest.fixture(autouse=True)
def _restore_threads():
    before = nnx.get_num_threads()
    yield
    nnx.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True, None])
def test_set_num_threads_rejects_what_is_not_a_positive_integer(bad):
    with pytest.raises(ValueError, match="positive integer"):
        nnx.set_num_threads(bad)


def test_set_num_threads_is_what_get_num_threads_reads():
    nnx.set_num_threads(3)
    assert nnx.get_num_threads() == 3
    nnx.set_num_threads(1)
    assert nnx.get_num_threads() == 1


def _probe(env_value: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NNX_NUM_THREADS=env_value)
    code = "import nnx; print(nnx.get_num_threads())"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_environment_variable_sets_the_thread_count():
    out = _probe("3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def test_a_bad_environment_variable_is_a_clear_error():
    out = _probe("many")
    assert out.returncode != 0
    assert "NNX_NUM_THREADS must be a positive integer" in out.stderr


@pytest.mark.parametrize("n, parts", [(1, 2), (2, 2), (7, 3), (10, 4), (5, 8)])
def test_chunks_cover_the_range_once_in_order(n, parts):
    got = threads.chunks(n, parts)
    assert len(got) == min(n, parts)
    covered = [i for lo, hi in got for i in range(lo, hi)]
    assert covered == list(range(n))
    sizes = [hi - lo for lo, hi in got]
    assert max(sizes) - min(sizes) <= 1


def test_parallel_for_runs_every_index_once_and_uses_other_threads():
    seen = np.zeros(1000, dtype=np.int64)
    names = set()

    def body(lo, hi):
        names.add(threading.current_thread().name)
        seen[lo:hi] += 1

    with threads.forced(3):
        threads.parallel_for(1000, body, 1000)
    assert (seen == 1).all()
    assert threading.current_thread().name in names and len(names) >= 2


def test_small_work_stays_on_the_calling_thread():
    names = []
    nnx.set_num_threads(4)
    threads.parallel_for(100, lambda lo, hi: names.append((lo, hi)), work=100)
    assert names == [(0, 100)]


def test_an_error_in_a_worker_reaches_the_caller():
    def body(lo, hi):
        if lo > 0:
            raise RuntimeError(f"chunk {lo}:{hi} failed")

    with threads.forced(2), pytest.raises(RuntimeError, match="chunk 5:10 failed"):
        threads.parallel_for(10, body, 10)


def _cnn_step(seed: int):
    nnx.manual_seed(seed)
    model = nnx.Sequential(
        nnx.Conv2d(1, 4, 3, padding=1), nnx.ReLU(), nnx.MaxPool2d(2),
        nnx.Conv2d(4, 6, 3), nnx.ReLU(), nnx.MaxPool2d(2), nnx.Flatten(), nnx.Linear(6, 3),
    )  # fmt: skip
    opt = nnx.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(seed)
    x = nnx.asarray(rng.standard_normal((5, 1, 10, 10)).astype(np.float32))
    y = nnx.asarray(rng.integers(0, 3, 5), dtype="int64")
    loss_fn = nnx.CrossEntropyLoss()
    for _ in range(2):
        opt.zero_grad()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()
    return {k: nnx.to_numpy(v) for k, v in model.state_dict().items()}


def test_training_with_every_kernel_split_matches_one_thread(backend):
    nnx.set_num_threads(1)
    plain = _cnn_step(0)
    with threads.forced(3):
        split = _cnn_step(0)
    assert plain.keys() == split.keys()
    for k in plain:
        np.testing.assert_allclose(split[k], plain[k], rtol=1e-5, atol=1e-6, err_msg=k)


_FORK_PROBE = """
import os
from nnx.backend import threads
with threads.forced(2):
    threads.parallel_for(4, lambda lo, hi: None, 4)  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # child: would hang on the parent's (absent) workers without the reset
        seen = []
        threads.parallel_for(4, lambda lo, hi: seen.append((lo, hi)), 4)
        os._exit(0 if sorted(seen) == [(0, 2), (2, 4)] else 1)
    _, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_pool():
    # in a fresh interpreter: this one has JAX's threads, which fork() does not like
    out = subprocess.run(
        [sys.executable, "-c", _FORK_PROBE], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"

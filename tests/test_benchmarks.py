"""Smoke tests of benchmarks/: the --quick run works and the references check themselves.

No test here asserts a time: timings belong to benchmarks/run.py on a quiet machine.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import references as R  # noqa: E402

FASHION = R.FASHION_DIR.is_dir()


def _data(cfg: R.Config) -> R.Data:
    if not FASHION:
        pytest.skip(f"Fashion-MNIST is not installed in {R.FASHION_DIR}")
    return R.load_data(cfg)


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory):
    """One --quick run of the whole command (every case, the memory probes, the table)."""
    if not FASHION:
        pytest.skip(f"Fashion-MNIST is not installed in {R.FASHION_DIR}")
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, json.loads(out.read_text())


def test_quick_run_prints_table_and_writes_json(quick_result):
    stdout, result = quick_result
    assert "| case | implementation | median |" in stdout
    assert "| target | met? |" in stdout
    assert "JSON written to" in stdout
    assert result["quick"] is True and result["rounds"] == 1
    assert set(result["cases"]) == {"mlp", "cnn", "xor"}
    for case in ("mlp", "cnn", "xor"):
        rows = result["cases"][case]
        for key in ("bare", "floor"):
            assert rows[key]["median_s"] > 0
        # a GPU row has a time, or says why it could not run; a crash is never a skip
        for key in ("nnx-gpu", "torch-gpu"):
            assert "median_s" in rows[key] or rows[key]["skipped"].startswith("skipped: ")
    targets = {(t["case"], t["target"]) for t in result["targets"]}
    assert ("mem", "<= 1.3x bare NumPy (tracemalloc)") in targets
    assert len(targets) == 6
    mem = result["memory"]["tracemalloc"]
    assert isinstance(mem["nnx"], int) and isinstance(mem["bare"], int)


def test_quick_run_references_passed_their_checks(quick_result):
    _, result = quick_result
    for case in ("mlp", "cnn", "xor"):
        bare = result["cases"][case]["bare"]
        assert bare["accuracy"] >= R.CHECKS[(case, True)]


def test_nnx_rows_learn_like_the_references(quick_result):
    """Same weights, same batches: nnx reaches the bare loop's accuracy (within noise)."""
    _, result = quick_result
    for case in ("mlp", "xor"):
        rows = result["cases"][case]
        assert abs(rows["nnx"]["accuracy"] - rows["bare"]["accuracy"]) < 0.02


def test_bare_xor_reaches_full_accuracy():
    cfg = R.config(False)
    data = _data(R.config(True))
    ref = R.BareXOR(data, cfg)
    ref.prepare()
    ref.run()
    R.check("xor", False, ref.evaluate(), "bare XOR")


def test_bare_mlp_self_check_passes_on_quick_sizes():
    cfg = R.config(True)
    ref = R.BareMLP(_data(cfg), cfg)
    ref.prepare()
    ref.run()
    R.check("mlp", True, ref.evaluate(), "bare MLP")


def test_a_broken_reference_fails_its_check():
    cfg = dataclasses.replace(R.config(True), xor_steps=1)
    ref = R.BareXOR(_data(R.config(True)), cfg)
    ref.prepare()
    ref.params[2][...] = 0  # the output layer predicts nothing
    ref.params[3][...] = -1
    ref.run()
    with pytest.raises(R.SelfCheckError, match="reference is broken"):
        R.check("xor", True, ref.evaluate(), "broken XOR")


def test_nnx_starts_from_the_references_weights():
    import nnx

    nnx.manual_seed(0)
    with nnx.using("numpy"):
        model = nnx.Sequential(nnx.Linear(784, 256), nnx.ReLU(), nnx.Linear(256, 128))
    mine = R.linear_weights(0, [784, 256, 128])
    for p, w in zip(model.parameters(), mine, strict=True):
        assert (nnx.to_numpy(p.value) == w).all()


def test_quick_ddp_case_runs_and_two_ranks_learn_like_one(tmp_path):
    """--cases ddp: the three configurations run and train to the same accuracy (no timing)."""
    import ddp

    if not FASHION:
        pytest.skip(f"Fashion-MNIST is not installed in {R.FASHION_DIR}")
    if ddp.missing():
        pytest.skip(ddp.missing())
    out = tmp_path / "ddp.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--cases", "ddp", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    configs = json.loads(out.read_text())["ddp"]["configs"]
    assert set(configs) == {"1x1", "1x2", "2x1", "2x1w"}
    assert abs(configs["2x1"]["accuracy"] - configs["1x1"]["accuracy"]) < 0.03
    assert configs["2x1"]["allreduce_ms_per_step"] > 0
    assert configs["2x1w"]["allreduce_ms_per_step"] > 0
    assert "2 ranks x 1 thread" in proc.stdout


def test_a_crashing_row_fails_the_run(tmp_path, monkeypatch, capsys):
    """A row that crashes (as a broken GPU row would) is reported as failed, exit status 1."""
    if not FASHION:
        pytest.skip(f"Fashion-MNIST is not installed in {R.FASHION_DIR}")
    import nnx_cases
    import run

    class Crashing(nnx_cases.NnxXOR):
        def run(self):
            raise RuntimeError("kernel launch failed")

    monkeypatch.setattr(nnx_cases, "NnxXOR", Crashing)
    status = run.main(["--quick", "--cases", "xor", "--no-gpu", "--json", str(tmp_path / "r.json")])
    out, err = capsys.readouterr()
    assert status == 1
    assert "failed: RuntimeError: kernel launch failed" in out
    assert "FAILED rows" in err
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["cases"]["xor"]["nnx"]["skipped"].startswith("failed")


def test_growth_table_measures_a_point_of_each_kind(monkeypatch):
    """benchmarks/scale.py (``--cases scale``) on tiny sizes: every ratio present and finite."""
    pytest.importorskip("torch")
    import scale

    monkeypatch.setattr(scale, "TARGET_S", 0.001)
    monkeypatch.setattr(scale, "SETTLE_S", 0.0)
    mlp = scale.measure(scale._mlp(8, 16), rounds=1)
    cnn = scale.measure(scale.cnn_steps(4, _data(R.config(True))), rounds=1)
    rows = [{"point": "MLP", **mlp}, {"point": "CNN", **cnn}]
    for row in rows:
        assert row["nnx_step_s"] > 0
        for key in ("x_floor", "x_torch"):
            assert 0 < row[key] < float("inf"), (row["point"], key, row[key])
    text = scale.table(rows)
    assert text.count("\n") == 3 and "| MLP |" in text and "| CNN |" in text


def test_kernel_table_benchmark_prints_a_row_per_kernel(capsys):
    """benchmarks/kernels.py: every JitOps kernel against NumpyOps (needs numba)."""
    pytest.importorskip("numba", reason="numba is not installed (nnx[jit])")
    import kernels

    kernels.main(rounds=1, reps=1)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 15 + 2  # header, one row per kernel case, the two training steps


def test_a_run_says_when_the_machine_changed_speed():
    import run

    def floor(case, times):
        return run.Impl(case, "floor", "matmul floor", times=times)

    steady, changed = floor("mlp", [0.18, 0.19, 0.20]), floor("cnn", [0.17, 0.18, 0.25])
    nnx_row = run.Impl("cnn", "nnx", "nnx (numpy)", times=[0.3, 0.6])  # only floors count
    lines = run.speed_changes([steady, changed, nnx_row])
    assert len(lines) == 1 and "CNN matmul floor took 0.170-0.250 s" in lines[0]

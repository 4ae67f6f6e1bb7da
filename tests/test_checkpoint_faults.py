"""Checkpoints under faults: atomic writes (signals, kills, odd targets) and loads that check first.

Every failed load must leave model and optimizer bit-identical and raise
``nnx.CheckpointError`` naming the file.
"""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnx
from nnx.atomic import atomic_write, temp_files_of


def mlp():
    return nnx.Sequential(nnx.Linear(4, 16), nnx.ReLU(), nnx.Linear(16, 3))


def trained(backend_spec="numpy"):
    """A model and an Adam optimizer with state (one step taken)."""
    with nnx.using(backend_spec):
        nnx.manual_seed(0)
        model = mlp()
        opt = nnx.optim.Adam(model.parameters(), lr=0.01)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((32, 4)).astype(np.float32)
        y = rng.integers(0, 3, 32)
        nnx.fit(model, nnx.CrossEntropyLoss(), opt, (x, y), progress=False)
    return model, opt


def snapshot(model, opt=None):
    """Host copies of everything a load could change."""
    snap = {k: nnx.to_numpy(v).copy() for k, v in model.state_dict().items()}
    if opt is not None:
        state = opt.state_dict()
        snap["__opt__"] = (state["type"], state["steps"], json.dumps(state["hyperparameters"]))
        for i, per in enumerate(state["state"]):
            for k, v in per.items():
                snap[f"__opt__{i}/{k}"] = np.array(v, copy=True)
    snap["__rng__"] = json.dumps(nnx.init.generator().bit_generator.state, default=str)
    return snap


def assert_unchanged(before, after):
    assert before.keys() == after.keys()
    for k in before:
        if isinstance(before[k], np.ndarray):
            np.testing.assert_array_equal(before[k], after[k], err_msg=k)
        else:
            assert before[k] == after[k], k


def rewrite(path: Path, change) -> Path:
    """Rewrite a checkpoint with ``change(arrays, meta)`` applied (both mutable)."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    change(arrays, meta)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    out = path.with_name("changed.npz")
    np.savez(out, **arrays)
    return out


# -- atomic_write ------------------------------------------------------------------------


def test_save_through_a_symlink_writes_its_target(tmp_path):
    real = tmp_path / "real.npz"
    link = tmp_path / "link.npz"
    nnx.save(real, mlp(), epoch=1)
    link.symlink_to(real)
    nnx.save(link, mlp(), epoch=2)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert nnx.load(link, mlp())["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.npz", "real.npz"]


def test_save_refuses_fifo_directory_and_device(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="FIFO, not a regular file"):
        nnx.save(fifo, mlp())
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        nnx.save(tmp_path, mlp())
    with pytest.raises(ValueError, match="device node"):
        nnx.save("/dev/null", mlp())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.npz"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_files_follow_the_umask_existing_keep_their_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = nnx.save(tmp_path / "m.npz", mlp())
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
        os.chmod(path, 0o640)
        nnx.save(path, mlp())
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    finally:
        os.umask(old)


def test_a_save_removes_stale_temps_of_its_own_target_only(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = int(done.stdout)  # a process that has ended
    mine = tmp_path / f".m.npz.{dead}.0123abcd.nnx-tmp"
    other = tmp_path / f".other.npz.{dead}.0123abcd.nnx-tmp"
    alive = tmp_path / f".m.npz.{os.getpid()}.0123abcd.nnx-tmp"  # a writer still running
    for p in (mine, other, alive):
        p.write_bytes(b"x" * 100)
    nnx.save(tmp_path / "m.npz", mlp())
    assert not mine.exists() and other.exists() and alive.exists()


def test_exception_while_writing_keeps_the_old_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_write(path, "w") as f:
        f.write("half")
        raise KeyboardInterrupt
    assert path.read_text() == "old" and temp_files_of(path) == []


def test_sigterm_while_writing_removes_the_temp_and_reaches_the_previous_handler(tmp_path):
    path = nnx.save(tmp_path / "m.npz", mlp(), epoch=1)
    before = path.read_bytes()
    received = []
    previous = signal.signal(signal.SIGTERM, lambda *a: received.append(a[0]))
    try:
        with pytest.raises(InterruptedError, match="SIGTERM"), atomic_write(path) as f:
            f.write(b"partial checkpoint")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs at the next bytecode; never reached
        assert received == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is not None
        assert signal.getsignal(signal.SIGTERM).__name__ == "<lambda>"  # restored
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert path.read_bytes() == before and temp_files_of(path) == []


SAVER = textwrap.dedent(
    """
    import sys
    import nnx
    nnx.manual_seed(0)
    model = nnx.Sequential(nnx.Linear(512, 512), nnx.Linear(512, 512))  # 2 MB a checkpoint
    opt = nnx.optim.Adam(model.parameters())
    path = sys.argv[1]
    for i in range(1, 10**6):
        nnx.save(path, model, opt, epoch=i)
        print(i, flush=True)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_saver_leaves_a_loadable_checkpoint(tmp_path, sig):
    """A process saving in a loop is killed at varied moments; the last checkpoint loads."""
    path = tmp_path / "run.npz"
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    for delay in (0.0, 0.013, 0.031, 0.057):
        proc = subprocess.Popen([sys.executable, str(script), str(path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stdout.readline().strip() == "1"  # one checkpoint is complete
        time.sleep(delay)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        assert proc.returncode == -sig, f"exit status {proc.returncode}: {proc.stderr.read()}"
        model = nnx.Sequential(nnx.Linear(512, 512), nnx.Linear(512, 512))
        assert nnx.load(path, model, nnx.optim.Adam(model.parameters()))["epoch"] >= 1
        if sig == signal.SIGTERM:
            assert temp_files_of(path) == []
    nnx.save(path, mlp())  # a SIGKILL may leave one temp; the next save sweeps it
    assert temp_files_of(path) == []


# -- load checks everything first --------------------------------------------------------


def test_optimizer_missing_or_of_another_kind_changes_nothing(tmp_path):
    model, opt = trained()
    path = nnx.save(tmp_path / "plain.npz", model)  # no optimizer state
    full = nnx.save(tmp_path / "full.npz", model, opt)
    other, sgd = mlp(), None
    sgd = nnx.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    before = snapshot(other, sgd)
    with pytest.raises(nnx.CheckpointError, match="plain.npz: holds no optimizer state"):
        nnx.load(path, other, sgd)
    with pytest.raises(nnx.CheckpointError, match="full.npz: .*state is for Adam, not SGD"):
        nnx.load(full, other, sgd)
    assert_unchanged(before, snapshot(other, sgd))


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda a, m: m["optimizer"]["hyperparameters"].update(params=[]), "hyperparameters must"),
        (lambda a, m: m["optimizer"]["hyperparameters"].update(step=1), "hyperparameters must"),
        (lambda a, m: m["optimizer"]["hyperparameters"].update(lr=-5), r"lr=-5 is out of range"),
        (lambda a, m: m["optimizer"]["hyperparameters"].update(lr="fast"), "lr='fast'"),
        (lambda a, m: m["optimizer"]["hyperparameters"].update(betas=[0.9]), "betas"),
        (lambda a, m: m["optimizer"].update(steps=-1), "step count"),
        (lambda a, m: a.update({"optim/0/m": np.zeros((2, 2), "<f4")}), r"shape \(2, 2\)"),
        (lambda a, m: a.update({"optim/0/m": np.zeros((16, 4), "<i4")}), "int32"),
        (lambda a, m: a.update({"optim/0/velocity": np.zeros((16, 4), "<f4")}), "velocity"),
        (lambda a, m: a.update({"optim/9/m": np.zeros((16, 4), "<f4")}), "optim/9/m"),
        (lambda a, m: a.update({"model/0.weight": np.zeros((16, 4), "<i4")}), "int32"),
        (lambda a, m: a.pop("model/2.bias"), r"missing \['2.bias'\]"),
        (lambda a, m: m["rng"].update(init={"bit_generator": "nonsense"}), "RNG state"),
        (lambda a, m: m["rng"].update(backend={"state": 5}), "backend RNG state"),
        (lambda a, m: m.pop("rng"), "'rng'"),
        (lambda a, m: m.update(format="nnx-checkpoint/99"), "unsupported checkpoint format"),
    ],
)
def test_bad_settings_or_state_are_rejected_before_anything_changes(tmp_path, change, reason):
    model, opt = trained()
    bad = rewrite(nnx.save(tmp_path / "run.npz", model, opt, epoch=1), change)
    fresh = mlp()
    fresh_opt = nnx.optim.Adam(fresh.parameters(), lr=0.5)
    before = snapshot(fresh, fresh_opt)
    with pytest.raises(nnx.CheckpointError, match=reason) as err:
        nnx.load(bad, fresh, fresh_opt)
    assert str(bad) in str(err.value)
    assert_unchanged(before, snapshot(fresh, fresh_opt))


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_file_is_truncated_or_corrupt(tmp_path, cut):
    model, opt = trained()
    path = nnx.save(tmp_path / "run.npz", model, opt)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    fresh = mlp()
    before = snapshot(fresh)
    with pytest.raises(nnx.CheckpointError, match="truncated or corrupt"):
        nnx.load(path, fresh)
    assert_unchanged(before, snapshot(fresh))


def test_random_bytes_never_mention_allow_pickle(tmp_path):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(nnx.CheckpointError) as err:
        nnx.load(path, mlp())
    assert "allow_pickle" not in str(err.value) and "truncated or corrupt" in str(err.value)
    npy = tmp_path / "pickled.npz"  # a member that needs pickle
    np.savez(npy, **{"__meta__": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(nnx.CheckpointError) as err:
        nnx.load(npy, mlp())
    assert "allow_pickle" not in str(err.value)


def lying_member(shape: tuple[int, ...]) -> bytes:
    """An .npy member whose header claims ``shape`` float32 but holds 16 bytes of data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    return buf.getvalue() + bytes(16)


def test_lying_header_is_rejected_before_its_data_is_read(tmp_path):
    model, opt = trained()
    path = nnx.save(tmp_path / "run.npz", model, opt)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("optim/0/v_huge.npy", lying_member((100000, 100000)))  # 40 GB claimed
    # not needed without optimizer=: never read
    assert nnx.load(path, mlp(), restore_rng=False)["backend"].startswith("numpy")
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "model/0.weight.npy":
                data = lying_member((16, 4))  # right shape, too little data
            dst.writestr(info, data)
    fresh = mlp()
    before = snapshot(fresh)
    with pytest.raises(nnx.CheckpointError, match="truncated or corrupt .*0.weight"):
        nnx.load(bad, fresh)
    assert_unchanged(before, snapshot(fresh))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_checkpoint_loads_intact_or_raises_checkpoint_error(data, tmp_path_factory):
    """Random byte changes: either the CRCs hold and the load is exact, or nothing changes."""
    folder = tmp_path_factory.mktemp("mutate")
    model, opt = trained()
    path = nnx.save(folder / "run.npz", model, opt)
    blob = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(blob) // 2, len(blob)))
    mutated = folder / "mutated.npz"
    mutated.write_bytes(bytes(blob[:cut]))
    fresh = mlp()
    fresh_opt = nnx.optim.Adam(fresh.parameters(), lr=0.5)
    before = snapshot(fresh, fresh_opt)
    try:
        nnx.load(mutated, fresh, fresh_opt, restore_rng=False)
    except nnx.CheckpointError:
        assert_unchanged(before, snapshot(fresh, fresh_opt))
    else:
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(nnx.to_numpy(v), nnx.to_numpy(fresh.state_dict()[k]))

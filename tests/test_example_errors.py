"""examples/mnist.py: user errors are one line "error: ..." with exit status 2; --resume keeps learning."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnx.backend import availability
from nnx.datasets import write_idx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import mnist  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """128/32 samples of the four IDX files."""
    folder = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 128), ("t10k", 32)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 255, (n, 28, 28)).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def fails(capsys, argv, pattern):
    """mnist.main(argv) must exit 2 with one line "error: ..." matching pattern, before training."""
    with pytest.raises(SystemExit) as e:
        mnist.main(argv)
    out, err = capsys.readouterr()
    assert e.value.code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and re.search(pattern, err), err
    assert "epoch" not in out  # nothing trained


def test_unknown_device_is_one_line_without_traceback(tiny):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mnist.py"), "--data-dir", str(tiny),
         "--device", "nonsense"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown backend 'nonsense'")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["--epochs", "0"], r"--epochs: must be at least 1, got 0"),
        (["--batch-size", "0"], r"--batch-size: must be at least 1"),
        (["--lr", "-1"], r"--lr: must be greater than 0"),
        (["--epochs", "two"], r"--epochs: invalid positive_int value"),
    ],
)
def test_bad_numbers_are_refused(capsys, tiny, args, pattern):
    fails(capsys, ["--data-dir", str(tiny), *args], pattern)


def test_unavailable_or_invalid_devices(capsys, tiny):
    if not availability("cupy")[0]:
        fails(capsys, ["--data-dir", str(tiny), "--device", "cuda"], "CuPy is not installed")
    if availability("torch:cpu")[0]:
        fails(capsys, ["--data-dir", str(tiny), "--device", "torch:cpu:3"], "not 'cpu:3'")


def test_save_or_plot_to_a_folder_fails_before_training(capsys, tiny, tmp_path):
    fails(capsys, ["--data-dir", str(tiny), "--save", str(tmp_path)], "--save: .* is a directory")
    fails(capsys, ["--data-dir", str(tiny), "--plot", str(tmp_path)], "--plot: .* is a directory")


def test_missing_data_names_the_folder(capsys, tmp_path):
    fails(capsys, ["--data-dir", str(tmp_path)], r"train-images-idx3-ubyte")


def test_plot_without_matplotlib_fails_before_training(capsys, tiny, monkeypatch, tmp_path):
    real = mnist.importlib.util.find_spec
    monkeypatch.setattr(
        mnist.importlib.util, "find_spec", lambda n: None if n == "matplotlib" else real(n)
    )
    fails(capsys, ["--data-dir", str(tiny), "--plot", str(tmp_path / "c.png")], "needs matplotlib")


def test_resume_with_the_other_model_is_a_clear_error(capsys, tiny, tmp_path):
    ckpt = tmp_path / "mlp.npz"
    common = ["--data-dir", str(tiny), "--no-progress", "--device", "numpy"]
    mnist.main([*common, "--epochs", "1", "--save", str(ckpt)])
    capsys.readouterr()
    fails(capsys, [*common, "--model", "cnn", "--resume", str(ckpt)], "another --model")
    fails(capsys, [*common, "--resume", str(tmp_path / "none.npz")], "no checkpoint at")


def test_resume_trains_more_epochs_at_a_nonzero_rate(capsys, tiny, tmp_path):
    ckpt = tmp_path / "run.npz"
    common = ["--data-dir", str(tiny), "--no-progress", "--device", "numpy", "--lr", "0.05"]
    mnist.main([*common, "--epochs", "2", "--save", str(ckpt)])
    first = capsys.readouterr().out
    mnist.main([*common, "--epochs", "2", "--resume", str(ckpt), "--save", str(ckpt)])
    second = capsys.readouterr().out
    rates = [float(r) for r in re.findall(r"lr ([0-9.e-]+)", first + second)]
    # a cosine over 2 epochs, then the same cosine stretched over 2 + 2 epochs, at epochs 2, 3
    expected = [0.05 * 0.5 * (1 + np.cos(np.pi * e / 2)) for e in range(2)]
    expected += [0.05 * 0.5 * (1 + np.cos(np.pi * e / 4)) for e in (2, 3)]
    np.testing.assert_allclose(rates, expected, rtol=1e-2)
    assert "epoch  3" in second and "epoch  4" in second and min(rates) > 0.005

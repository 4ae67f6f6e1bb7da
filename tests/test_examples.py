"""The examples run end to end from the command line (on small IDX files made here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnx
from tests.helpers import host, write_tiny_mnist

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import mnist  # noqa: E402


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    """A 256/64-sample data set in the four IDX files, classes drawn as bright squares."""
    return write_tiny_mnist(tmp_path_factory.mktemp("tiny-mnist"))


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_mnist_example_trains_saves_and_resumes(backend, tiny_mnist, tmp_path, model, capsys):
    ckpt = tmp_path / "run.npz"
    common = ["--dataset", "mnist", "--data-dir", str(tiny_mnist), "--model", model,
              "--device", backend.spec, "--batch-size", "32", "--no-progress"]  # fmt: skip
    scores = mnist.main([*common, "--epochs", "3", "--save", str(ckpt)])
    out = capsys.readouterr().out
    assert "Total params" in out and "epoch  3" in out and ckpt.exists()
    assert scores["test_accuracy"] > 0.3  # ten classes: chance is 0.1
    exported = tmp_path / "run.onnx"
    mnist.main([*common, "--epochs", "1", "--resume", str(ckpt), "--device", "numpy",
                "--onnx", str(exported)])  # fmt: skip
    out = capsys.readouterr().out
    assert f"saved on {backend.spec}" in out and "epoch  4" in out
    assert f"ONNX model: {exported}" in out and exported.stat().st_size > 1000


def test_mnist_example_plots_its_curves(tiny_mnist, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed: pip install 'nnx[plot]'")
    png = tmp_path / "curves.png"
    mnist.main(["--dataset", "mnist", "--data-dir", str(tiny_mnist), "--epochs", "2",
                "--device", "numpy", "--no-progress", "--plot", str(png)])  # fmt: skip
    assert f"curves: {png}" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_mnist_example_reports_missing_data(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mnist.py"), "--data-dir", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0
    assert "train-images-idx3-ubyte" in result.stderr and "Traceback" not in result.stderr


def test_xor_cli_reaches_full_accuracy():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "xor.py"), "--device", "array_api_strict:device1"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "accuracy 100%" in result.stdout


def test_cnn_bn_builds_and_takes_one_training_step(backend):
    model = mnist.build("cnn-bn")
    assert model.output_shape((2, 1, 28, 28)) == (2, 10)
    assert sum(isinstance(layer, nnx.BatchNorm2d) for layer in model.layers()) == 3
    optimizer = mnist.optimizer_for("cnn-bn", model, 0.003)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, 8)
    loader = mnist.AugmentedLoader(images, labels, batch_size=8, shape=(1, 28, 28),
                                   normalize=mnist.STATS["fashion-mnist"], device=backend)  # fmt: skip
    ((x, y),) = list(loader)
    before = [host(p.value).copy() for p in model.parameters()]
    loss_fn = nnx.CrossEntropyLoss(label_smoothing=0.1)
    loss = loss_fn(model(x), y)
    optimizer.zero_grad()
    model.backward(loss_fn.backward())
    optimizer.step()
    assert np.isfinite(float(host(loss))) and float(host(loss)) > 1.0  # ~ln(10) at the start
    after = [host(p.value) for p in model.parameters()]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_augmentation_flips_and_shifts_whole_images(backend):
    rng = np.random.default_rng(1)
    images = rng.integers(1, 256, (16, 28, 28)).astype(np.uint8)  # no zero pixels
    loader = mnist.AugmentedLoader(images, batch_size=16, shape=(1, 28, 28), shift=2,
                                   scale=1.0, device=backend)  # fmt: skip
    ((x, _),) = list(loader)
    x = host(x)[:, 0]
    for image, out in zip(images.astype(np.float32), x, strict=True):
        # find the shift: the output is the (maybe mirrored) image moved by (dy, dx), zero-filled
        matches = []
        for candidate in (image, image[:, ::-1]):
            padded = np.pad(candidate, 2)
            for dy in range(5):
                for dx in range(5):
                    if np.array_equal(padded[dy : dy + 28, dx : dx + 28], out):
                        matches.append((dy, dx))
        assert matches, "an augmented image is not a shifted (mirrored) copy of its original"

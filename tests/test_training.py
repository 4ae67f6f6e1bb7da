"""DataLoader, fit/evaluate/predict and checkpoints, on every backend; Fashion-MNIST end to end."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import pytest
from helpers import dtype_name, host

import nnx
from nnx.testing import assert_within, forward_bound

FASHION = Path("/usr/share/datasets/fashion-mnist")


def blobs(n=256, seed=0):
    """Three separable Gaussian blobs in 4-D: a small real classification task."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, 4)) * 4
    y = rng.integers(0, 3, n)
    return (centres[y] + rng.standard_normal((n, 4))).astype(np.float32), y


def mlp(dropout=0.0):
    layers = [nnx.Linear(4, 16), nnx.ReLU()]
    if dropout:
        layers.append(nnx.Dropout(dropout))
    return nnx.Sequential(*layers, nnx.Linear(16, 3))


# -- DataLoader ----------------------------------------------------------------------


def test_loader_puts_uint8_on_device_and_scales_there(backend):
    images = np.arange(2 * 3 * 2, dtype=np.uint8).reshape(2, 3, 2) * 20
    loader = nnx.DataLoader(images, np.array([3, 1]), batch_size=2, shape=(6,))
    ((xb, yb),) = list(loader)
    assert backend.owns(xb) and backend.owns(yb)
    assert dtype_name(xb) == "float32" and dtype_name(yb) == "int64"
    np.testing.assert_allclose(host(xb), images.reshape(2, 6) / 255.0, rtol=1e-6)
    loader = nnx.DataLoader(images, np.array([3, 1]), batch_size=2, normalize=(0.5, 0.25))
    ((xb, _),) = list(loader)
    np.testing.assert_allclose(host(xb), (images / 255.0 - 0.5) / 0.25, rtol=1e-5, atol=1e-6)


def test_loader_shuffles_by_seed_and_epoch(backend):
    x = np.arange(10, dtype=np.float32)[:, None]

    def epoch_order(loader):
        return np.concatenate([host(xb)[:, 0] for xb, _ in loader])

    a = nnx.DataLoader(x, batch_size=3, shuffle=True, seed=1)
    b = nnx.DataLoader(x, batch_size=3, shuffle=True, seed=1)
    first, second = epoch_order(a), epoch_order(a)
    assert sorted(first) == list(range(10)) and not np.array_equal(first, second)
    np.testing.assert_array_equal(epoch_order(b), first)
    b.set_epoch(1)
    np.testing.assert_array_equal(epoch_order(b), second)  # resuming at epoch 1
    plain = nnx.DataLoader(x, batch_size=4, drop_last=True)
    assert len(plain) == 2 and [xb.shape[0] for xb, _ in plain] == [4, 4]
    assert len(nnx.DataLoader(x, batch_size=4)) == 3


def test_loader_errors():
    with pytest.raises(ValueError, match="10 samples but y has 9"):
        nnx.DataLoader(np.zeros((10, 2)), np.zeros(9))
    with pytest.raises(ValueError, match="batch_size"):
        nnx.DataLoader(np.zeros((10, 2)), batch_size=0)
    with pytest.raises(ValueError, match=r"cannot view samples of shape \(2,\) as \(3,\)"):
        nnx.DataLoader(np.zeros((10, 2)), shape=(3,))


# -- fit / evaluate / predict ----------------------------------------------------------


def test_fit_learns_and_reports(backend):
    x, y = blobs()
    model = mlp()
    opt = nnx.optim.Adam(model.parameters(), lr=0.04)
    schedule = nnx.optim.StepLR(opt, step_size=2, gamma=0.5)
    history = nnx.fit(
        model, nnx.CrossEntropyLoss(), opt, nnx.DataLoader(x, y, batch_size=32, shuffle=True),
        epochs=4, val_data=(x, y), schedule=schedule, progress=False,
    )  # fmt: skip
    assert len(history) == 4
    assert history["loss"][-1] < history["loss"][0]
    assert history["accuracy"][-1] > 0.9 and history["val_accuracy"][-1] > 0.9
    assert history["lr"] == [0.04, 0.04, 0.02, 0.02]
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "time"}
    scores = nnx.evaluate(model, nnx.CrossEntropyLoss(), (x, y))
    assert scores["accuracy"] == pytest.approx(history["val_accuracy"][-1])
    probs = nnx.predict(model, x)
    assert probs.shape == (256, 3) and model.training  # mode restored
    assert np.mean(probs.argmax(1) == y) == pytest.approx(scores["accuracy"])


def test_fit_accuracy_matches_a_numpy_count(backend):
    x, y = blobs(64)
    model = mlp()
    scores = nnx.evaluate(model, None, nnx.DataLoader(x, y, batch_size=10))
    logits = nnx.predict(model, x, batch_size=7)
    assert scores["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == y))


def test_progress_bar_shows_loss_accuracy_and_speed():
    x, y = blobs(64)
    model = mlp()
    err = io.StringIO()
    with redirect_stderr(err):
        nnx.fit(model, nnx.CrossEntropyLoss(), nnx.optim.SGD(model.parameters(), lr=0.1), (x, y),
                epochs=1, progress=True, log_every=1)  # fmt: skip
    text = err.getvalue()
    assert "loss=" in text and "acc=" in text and "samples/s=" in text
    err = io.StringIO()
    with redirect_stderr(err):
        nnx.fit(model, nnx.CrossEntropyLoss(), nnx.optim.SGD(model.parameters(), lr=0.1), (x, y),
                progress=False)  # fmt: skip
    assert err.getvalue() == ""


def test_early_stopping_restores_best():
    x, y = blobs(64)
    model = mlp()
    stop = nnx.EarlyStopping(monitor="val_loss", patience=2)
    # a huge learning rate makes validation loss worse after the first epochs
    opt = nnx.optim.SGD(model.parameters(), lr=0.05)
    history = nnx.fit(model, nnx.CrossEntropyLoss(), opt, (x, y), epochs=50, val_data=(x, y),
                      early_stopping=stop, progress=False)  # fmt: skip
    assert stop.best == min(history["val_loss"])
    if len(history) < 50:
        assert stop.wait == 2
    assert nnx.evaluate(model, nnx.CrossEntropyLoss(), (x, y))["loss"] == pytest.approx(
        stop.best, rel=1e-5
    )
    with pytest.raises(KeyError, match="val_accuracy"):
        nnx.fit(
            model,
            nnx.CrossEntropyLoss(),
            opt,
            (x, y),
            early_stopping=nnx.EarlyStopping(),
            progress=False,
        )


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_diverging_training_is_reported():
    x, y = blobs(64)
    x[0, 0] = np.inf
    model = mlp()
    with pytest.raises(FloatingPointError, match="inputs hold NaN or infinite values"):
        nnx.fit(
            model,
            nnx.CrossEntropyLoss(),
            nnx.optim.SGD(model.parameters(), lr=0.1),
            (x, y),
            progress=False,
        )


# -- checkpoints -------------------------------------------------------------------------


def test_checkpoint_from_backend_loads_on_numpy(backend, tmp_path):
    x, y = blobs(64)
    model = mlp()
    opt = nnx.optim.Adam(model.parameters(), lr=0.01)
    nnx.fit(model, nnx.CrossEntropyLoss(), opt, (x, y), epochs=2, progress=False)
    path = nnx.save(tmp_path / "run.npz", model, opt, epoch=2, note="blobs")
    with nnx.using("numpy"):
        fresh = mlp()
    opt2 = nnx.optim.Adam(fresh.parameters(), lr=0.5)
    meta = nnx.load(path, fresh, opt2)
    assert meta["epoch"] == 2 and meta["note"] == "blobs" and meta["backend"] == backend.spec
    np.testing.assert_array_equal(nnx.predict(fresh, x).argmax(1), nnx.predict(model, x).argmax(1))
    want = nnx.predict(model, x)  # the sums of Linear(4, 16) and Linear(16, 3), elsewhere
    assert_within(nnx.predict(fresh, x), want, forward_bound(want, 4 + 16), "loaded predictions")
    assert opt2.lr == 0.01 and opt2.steps == opt.steps
    assert all(isinstance(s, np.ndarray) for p in fresh.parameters() for s in p.state.values())


def test_checkpoint_is_plain_npz_without_pickle(tmp_path):
    model = mlp()
    path = nnx.save(tmp_path / "m.npz", model)
    with np.load(path, allow_pickle=False) as f:
        assert "model/0.weight" in f.files and f["model/0.weight"].dtype == np.dtype("<f4")
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary left behind


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = mlp()
    path = nnx.save(tmp_path / "m.npz", model, epoch=1)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        nnx.save(path, model, epoch=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_loading_into_another_architecture_names_the_parameter(tmp_path):
    path = nnx.save(tmp_path / "m.npz", mlp())
    other = nnx.Sequential(nnx.Linear(4, 8), nnx.ReLU(), nnx.Linear(8, 3))
    with pytest.raises(ValueError, match=r"'0.weight'.*\(16, 4\).*\(8, 4\)"):
        nnx.load(path, other)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable nnx checkpoint"):
        nnx.load(tmp_path / "bad.npz", other)
    with pytest.raises(FileNotFoundError):
        nnx.load(tmp_path / "missing.npz", other)


def test_resumed_run_matches_uninterrupted(tmp_path):
    x, y = blobs(200)

    def start():
        nnx.manual_seed(3)
        model = mlp(dropout=0.2)
        return model, nnx.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def run(model, opt, epochs, initial_epoch=0):
        loader = nnx.DataLoader(x, y, batch_size=16, shuffle=True, seed=5)
        return nnx.fit(model, nnx.CrossEntropyLoss(), opt, loader, epochs=epochs,
                       initial_epoch=initial_epoch, progress=False)["loss"]  # fmt: skip

    model, opt = start()
    straight = run(model, opt, 4)
    model, opt = start()
    first = run(model, opt, 2)
    nnx.save(tmp_path / "half.npz", model, opt, epoch=2)
    nnx.manual_seed(99)  # a new process would start from other random state
    model, opt = mlp(dropout=0.2), None
    opt = nnx.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    meta = nnx.load(tmp_path / "half.npz", model, opt)
    rest = run(model, opt, 2, initial_epoch=meta["epoch"])
    assert first + rest == straight  # exactly, loss for loss


# -- Fashion-MNIST end to end ------------------------------------------------------------


def test_fashion_mnist_mlp_one_epoch_reaches_84_percent():
    if not FASHION.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must install dataset-fashion-mnist (see .ci/run)")
        pytest.skip("Fashion-MNIST not found: apt-get install dataset-fashion-mnist")
    x, y = nnx.datasets.fashion_mnist("train")
    xt, yt = nnx.datasets.fashion_mnist("test")
    norm = (0.286, 0.353)
    with nnx.using("numpy"):
        nnx.manual_seed(0)
        model = nnx.Sequential(nnx.Linear(784, 256), nnx.ReLU(), nnx.Linear(256, 128), nnx.ReLU(),
                               nnx.Linear(128, 10))  # fmt: skip
        opt = nnx.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        train = nnx.DataLoader(x, y, batch_size=128, shuffle=True, shape=(784,), normalize=norm)
        test = nnx.DataLoader(xt, yt, batch_size=1000, shape=(784,), normalize=norm)
        history = nnx.fit(model, nnx.CrossEntropyLoss(), opt, train, val_data=test, progress=False)
    assert history["val_accuracy"][0] >= 0.84, history.epochs


def test_loader_never_changes_the_callers_data(backend):
    data = np.ones((4, 2), np.float32)
    loader = nnx.DataLoader(data, batch_size=2, scale=0.5, normalize=(0.1, 2.0))
    for _ in range(2):
        for xb, _ in loader:
            np.testing.assert_allclose(host(xb), (0.5 - 0.1) / 2.0, rtol=1e-6)
    np.testing.assert_array_equal(data, 1.0)

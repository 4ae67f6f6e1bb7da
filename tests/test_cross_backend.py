"""One seed, one data set: every backend draws the same training curve as numpy.

Tolerance: initial weights are drawn on the host, so they are bit-identical
everywhere; what remains is float32 rounding of the same operations in another
library's kernels.  Step t's loss may differ from numpy's by the rounding of t
steps' sums (:func:`helpers.training_bound`: the model's fan-ins and the batch,
a few roundings each, per step).

* XOR: 2-8-1 Tanh network, full batch, Adam(lr=0.05), 200 steps.
* MLP: 784-64-10 ReLU network on 512 Fashion-MNIST training images (from
  /usr/share/datasets/fashion-mnist through nnx.datasets; synthetic images of
  the same shape when the data set is not installed), minibatches of 64 in a
  fixed host-side shuffle, SGD(lr=0.1, momentum=0.9), 4 epochs = 32 steps.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import training_bound

import nnx
from nnx import layers, losses, optim
from nnx.testing import assert_within

#: the terms of each model's sums per step: fan-ins and the batch
TERMS = {"XOR loss": 2 + 8 + 4, "MLP loss": 784 + 64 + 10 + 64}
XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
XOR_Y = np.array([[0], [1], [1], [0]], dtype=np.float32)


def _read(losses_on_device: list) -> np.ndarray:
    # read the scalars once, after training: no host round trip per step
    return np.array([float(nnx.to_numpy(v)) for v in losses_on_device])


def xor_curve(spec: str, steps: int = 200) -> np.ndarray:
    with nnx.using(spec) as b:
        nnx.manual_seed(0)
        model = layers.Sequential(layers.Linear(2, 8), layers.Tanh(), layers.Linear(8, 1))
        x, y = b.asarray(XOR_X), b.asarray(XOR_Y)
        opt, loss_fn = optim.Adam(model.parameters(), lr=0.05), losses.BCEWithLogitsLoss()
        curve = []
        for _ in range(steps):
            opt.zero_grad()
            curve.append(loss_fn(model(x), y))
            model.backward(loss_fn.backward())
            opt.step()
    return _read(curve)


def fashion_subset(n: int = 512) -> tuple[np.ndarray, np.ndarray, str]:
    """The first ``n`` Fashion-MNIST training images (or synthetic ones), flattened."""
    try:
        from nnx.datasets import fashion_mnist

        images, labels = fashion_mnist("train", download=False)
        source = "Fashion-MNIST"
    except Exception:  # not installed here: same shapes and dtypes, seeded
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        source = "synthetic"
    x = images[:n].reshape(n, -1).astype(np.float32) / 255.0
    return x, labels[:n].astype(np.int64), source


def mlp_curve(spec: str, data, epochs: int = 4, batch: int = 64) -> np.ndarray:
    images, labels, _ = data
    n = images.shape[0]
    with nnx.using(spec) as b:
        nnx.manual_seed(0)
        model = layers.Sequential(layers.Linear(784, 64), layers.ReLU(), layers.Linear(64, 10))
        model.requires_input_grad = False
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        loss_fn = losses.CrossEntropyLoss()
        shuffle = np.random.default_rng(1)
        curve = []
        for _ in range(epochs):
            order = shuffle.permutation(n)
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                x, y = b.asarray(images[idx]), b.asarray(labels[idx], "int64")
                opt.zero_grad()
                curve.append(loss_fn(model(x), y))
                model.backward(loss_fn.backward())
                opt.step()
    return _read(curve)


@pytest.fixture(scope="module")
def data():
    return fashion_subset()


@pytest.fixture(scope="module")
def reference(data):
    return {"xor": xor_curve("numpy"), "mlp": mlp_curve("numpy", data)}


def _agree(curve: np.ndarray, ref: np.ndarray, what: str, spec: str) -> None:
    assert curve.shape == ref.shape
    terms = TERMS[what.split(" (")[0]]
    bound = np.array([training_bound(v, terms, t + 1) for t, v in enumerate(ref)])
    assert_within(curve, ref, bound, f"{what} on {spec}, step by step")


def test_reference_curves_learn(reference, data):
    xor, mlp = reference["xor"], reference["mlp"]
    assert xor[-1] < 0.05 * xor[0], "XOR did not learn on numpy"
    assert mlp[-4:].mean() < 0.6 * mlp[:4].mean(), f"MLP did not learn on {data[2]}"


def test_xor_loss_curve_matches_numpy(backend, reference):
    _agree(xor_curve(backend.spec), reference["xor"], "XOR loss", backend.spec)


def test_mlp_loss_curve_matches_numpy(backend, reference, data):
    _agree(mlp_curve(backend.spec, data), reference["mlp"], f"MLP loss ({data[2]})", backend.spec)

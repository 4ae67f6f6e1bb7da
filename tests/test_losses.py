"""Losses: values against NumPy formulas, gradients by finite differences, stability."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_rounded, dtype_name, host

import nnx

RNG = np.random.default_rng(7)
LOGITS = RNG.standard_normal((6, 4))
LABELS = np.array([0, 3, 1, 2, 3, 0])
PROBS = RNG.random((6, 4))


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    "loss_fn, target",
    [
        (nnx.MSELoss, PROBS),
        (nnx.BCEWithLogitsLoss, PROBS),
        (nnx.CrossEntropyLoss, LABELS),
        (lambda reduction: nnx.CrossEntropyLoss(reduction, label_smoothing=0.2), LABELS),
    ],
)
def test_gradcheck_losses(backend, loss_fn, target, reduction):
    result = nnx.gradcheck(loss_fn(reduction=reduction), LOGITS, target)
    assert result.ok, str(result)


def test_values_match_numpy(backend):
    x = nnx.asarray(LOGITS)
    p = nnx.asarray(PROBS)
    y = nnx.asarray(LABELS)
    z = LOGITS.astype(np.float32)
    expected = {
        "mse": np.mean((z - PROBS) ** 2),
        "bce": np.mean(
            -(PROBS * np.log(1 / (1 + np.exp(-z))) + (1 - PROBS) * np.log(1 - 1 / (1 + np.exp(-z))))
        ),
        "ce": -np.mean(log_softmax(z)[np.arange(6), LABELS]),
    }
    smooth = 0.1
    target = np.full((6, 4), smooth / 4) + (1 - smooth) * np.eye(4)[LABELS]
    expected["ce_smooth"] = -np.mean((target * log_softmax(z)).sum(axis=1))
    got = {
        "mse": nnx.MSELoss()(x, p),
        "bce": nnx.BCEWithLogitsLoss()(x, p),
        "ce": nnx.CrossEntropyLoss()(x, y),
        "ce_smooth": nnx.CrossEntropyLoss(label_smoothing=smooth)(x, y),
    }
    # what each float32 loss adds up: its terms' absolute values, and how many there are
    z64 = z.astype(np.float64)
    shifted = z64 - z64.max(axis=1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=1))
    bce_terms = np.maximum(z64, 0) + np.abs(z64 * PROBS) + np.log1p(np.exp(-np.abs(z64)))
    sizes = {
        "mse": (expected["mse"], z.size),
        "bce": (bce_terms.mean(), z.size),
        "ce": ((np.abs(lse) + np.abs(shifted[np.arange(6), LABELS])).mean() + 1, z.size + 6),
        "ce_smooth": (
            (np.abs(lse) + (target * np.abs(shifted)).sum(axis=1)).mean() + 1,
            z.size + 6,
        ),
    }
    for name, value in got.items():
        assert value.shape == () and dtype_name(value) == "float32", name
        size, terms = sizes[name]
        assert_rounded(value, expected[name], terms, size, name)


def test_stable_at_extreme_logits(backend):
    z = nnx.asarray(np.array([[1e4, -1e4], [-1e4, 1e4]], np.float32))
    ce = nnx.CrossEntropyLoss()
    assert float(host(ce(z, nnx.asarray(np.array([0, 1]))))) == 0.0
    wrong = float(host(ce(z, nnx.asarray(np.array([1, 0])))))
    assert wrong == pytest.approx(2e4)
    assert np.all(np.isfinite(host(ce.backward())))
    bce = nnx.BCEWithLogitsLoss()
    value = float(host(bce(z, nnx.asarray(np.array([[1, 0], [0, 1]], np.float32)))))
    assert value == 0.0
    assert float(
        host(bce(z, nnx.asarray(np.array([[0, 1], [1, 0]], np.float32))))
    ) == pytest.approx(1e4)
    assert np.all(np.isfinite(host(bce.backward())))


def test_bad_inputs_are_named(backend):
    with pytest.raises(ValueError, match="reduction"):
        nnx.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match=r"\(6, 4\).*\(6,\)"):
        nnx.MSELoss()(nnx.asarray(LOGITS), nnx.asarray(LABELS, dtype="float32"))
    with pytest.raises(TypeError, match="integer class labels"):
        nnx.CrossEntropyLoss()(nnx.asarray(LOGITS), nnx.asarray(PROBS[:, 0]))
    with pytest.raises(RuntimeError, match="before computing the loss"):
        nnx.CrossEntropyLoss().backward()

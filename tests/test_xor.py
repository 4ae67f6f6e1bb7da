"""The XOR example trains to 100% on every backend, with the same losses everywhere."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import xor  # noqa: E402


def test_xor_reaches_full_accuracy(backend):
    _, loss, accuracy, _ = xor.train(backend.spec, seed=0, epochs=500, lr=0.05, log_every=0)
    assert accuracy == 1.0
    assert loss < 0.01


def test_xor_losses_agree_with_numpy(backend):
    _, loss, _, probs = xor.train(backend.spec, seed=1, epochs=200, lr=0.05, log_every=0)
    _, ref_loss, _, ref_probs = xor.train("numpy", seed=1, epochs=200, lr=0.05, log_every=0)
    assert abs(loss - ref_loss) <= 1e-4 * max(1.0, ref_loss)
    assert abs(probs - ref_probs).max() < 1e-4

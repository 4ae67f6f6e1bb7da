"""What ``fit`` does when the loss stops being finite: find the step, restore, explain.

``fit`` reads the running loss every ``log_every`` steps (the read the progress
bar makes anyway: one device sync per ``log_every`` steps) and at the end of an
epoch.  When it is NaN or infinite, the per-step losses since the last read
(kept on the device, no sync until then) give the first bad step, the
DataLoader gives that batch's host inputs, and model and optimizer go back to
their state at the start of the epoch (the model to EarlyStopping's best state
when there is one).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnx.backend import to_numpy
from nnx.data import DataLoader
from nnx.layers.base import Layer
from nnx.optim import Optimizer

__all__ = ["EpochSnapshot", "TrainingDiverged", "first_nonfinite", "inputs_finite"]


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite; model and optimizer were restored."""

    def __init__(self, message: str, epoch: int, step: int, inputs_finite: bool | None) -> None:
        super().__init__(message)
        self.epoch, self.step, self.inputs_finite = epoch, step, inputs_finite


class EpochSnapshot:
    """Host copies of a model's and an optimizer's state, to go back to."""

    def __init__(self, model: Layer, optimizer: Optimizer) -> None:
        self.model = {k: np.array(to_numpy(v), copy=True) for k, v in model.state_dict().items()}
        self.optimizer: dict[str, Any] | None = None
        if not hasattr(optimizer, "state_dict"):  # an optimizer without state: model only
            return
        state = optimizer.state_dict()
        state["state"] = [
            {k: np.array(v, copy=True) for k, v in per.items()} for per in state["state"]
        ]
        state["hyperparameters"] = dict(state["hyperparameters"])
        self.optimizer = state

    def restore(self, model: Layer, optimizer: Optimizer, best: dict[str, Any] | None) -> str:
        """Put the state back (the model from ``best`` when given); say what was restored."""
        model.load_state_dict(best if best is not None else self.model)
        if self.optimizer is not None:
            optimizer.load_state_dict(self.optimizer)
        if best is not None:
            return "the model to EarlyStopping's best state, the optimizer to the epoch's start"
        return "model and optimizer to their state at the start of the epoch"


def first_nonfinite(losses: list[Any], xp: Any) -> int:
    """Index of the first non-finite 0-d loss in ``losses`` (one device read), -1 if none."""
    if not losses:
        return -1
    values = to_numpy(xp.stack([xp.reshape(v, ()) for v in losses]))
    bad = np.flatnonzero(~np.isfinite(values))
    return int(bad[0]) if bad.size else -1


def inputs_finite(loader: Any, epoch: int, index: int) -> bool | None:
    """Whether batch ``index`` of ``epoch`` holds only finite inputs (None: cannot tell)."""
    if not isinstance(loader, DataLoader):
        return None
    host = loader.host_inputs(epoch, index)
    return True if host.dtype.kind in "iub" else bool(np.isfinite(host).all())


def diverged_error(
    value: float, epoch: int, step: int, finite_inputs: bool | None, restored: str
) -> TrainingDiverged:
    """The error fit raises, naming epoch, step and the likely cause."""
    if finite_inputs is False:
        cause = "that batch's inputs hold NaN or infinite values: clean the data"
    elif finite_inputs is True:
        cause = "that batch's inputs are finite: lower the learning rate (or clip gradients)"
    else:
        cause = "lower the learning rate, or check the data for NaN or infinite values"
    loss = "nan" if math.isnan(value) else str(value)
    return TrainingDiverged(
        f"the training loss became {loss} in epoch {epoch + 1} at step {step + 1}; {cause}. "
        f"Restored {restored}.",
        epoch + 1,
        step + 1,
        finite_inputs,
    )

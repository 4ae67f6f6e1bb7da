"""fit / evaluate / predict: the training loop people recognise, with a progress bar.

Scalars are read from the device only every ``log_every`` steps and at the end
of an epoch: ``float()`` on a GPU array waits for the GPU.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nnx.backend import to_numpy
from nnx.data import DataLoader
from nnx.divergence import EpochSnapshot, diverged_error, first_nonfinite, inputs_finite
from nnx.layers.base import Layer
from nnx.losses import CrossEntropyLoss, Loss
from nnx.optim import Optimizer, Schedule

METRICS = ("accuracy",)


@dataclass
class History:
    """Per-epoch records: loss, metrics, validation values, learning rate and wall time."""

    epochs: list[dict[str, float]] = field(default_factory=list)

    def __getitem__(self, key: str) -> list[float]:
        return [e[key] for e in self.epochs if key in e]

    @property
    def history(self) -> dict[str, list[float]]:
        """Keras-style {name: [value per epoch]}."""
        keys = dict.fromkeys(k for e in self.epochs for k in e)
        return {k: self[k] for k in keys}

    def __len__(self) -> int:
        return len(self.epochs)


@dataclass
class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    monitor: str = "val_accuracy"
    patience: int = 3
    mode: str = "auto"
    min_delta: float = 0.0
    restore_best: bool = True
    best: float | None = None
    best_epoch: int = -1
    best_state: dict[str, Any] | None = None
    wait: int = 0

    def improved(self, value: float) -> bool:
        """True when ``value`` beats the best so far."""
        maximise = self.mode == "max" or (self.mode == "auto" and "loss" not in self.monitor)
        if self.best is None:
            return True
        return (
            value > self.best + self.min_delta if maximise else value < self.best - self.min_delta
        )

    def update(self, epoch: int, record: dict[str, float], model: Layer) -> bool:
        """Record an epoch; return True when training should stop."""
        if self.monitor not in record:
            raise KeyError(
                f"EarlyStopping monitors {self.monitor!r} but the epoch only has {sorted(record)}; "
                "pass validation data for val_* metrics"
            )
        value = record[self.monitor]
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = {k: to_numpy(v).copy() for k, v in model.state_dict().items()}
            return False
        self.wait += 1
        return self.wait >= self.patience


def _as_loader(
    data: Any, model: Layer, batch_size: int, shuffle: bool, seed: int, comm: Any = None
) -> Iterable[tuple[Any, Any]]:
    """A DataLoader as it is; host ``(x, y)`` arrays become one on the model's device
    (this rank's shard of them when a communicator is given)."""
    if isinstance(data, tuple | list) and len(data) == 2:
        return DataLoader(
            data[0],
            data[1],
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            device=model.backend,
            comm=comm,
        )
    return data


def _correct(xp: Any, out: Any, y: Any) -> Any:
    """Number of correct predictions in a batch, as a device scalar (no sync)."""
    if out.ndim == 2 and out.shape[1] > 1:
        pred = xp.argmax(out, axis=1)
        return xp.sum(xp.astype(pred == xp.astype(y, pred.dtype), xp.int64))
    pred = xp.astype(out > 0, out.dtype) if out.ndim == 2 else out  # one logit: class 1 if > 0
    return xp.sum(xp.astype(pred == y, xp.int64))


def _use_bar(progress: bool | None) -> bool:
    if progress is None:
        return sys.stderr.isatty()
    return progress


def fit(
    model: Layer,
    loss_fn: Loss,
    optimizer: Optimizer,
    train_data: Any,
    *,
    epochs: int = 1,
    val_data: Any = None,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int = 0,
    metrics: tuple[str, ...] = ("accuracy",),
    schedule: Schedule | None = None,
    early_stopping: EarlyStopping | None = None,
    initial_epoch: int = 0,
    progress: bool | None = None,
    log_every: int = 50,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> History:
    """Train ``model`` for ``epochs`` epochs and return the History.

    ``train_data`` and ``val_data`` are DataLoaders (or ``(x, y)`` host
    arrays).  ``initial_epoch`` resumes a run: the shuffle order and the
    schedule continue where a checkpoint left them.  The progress bar shows
    loss, accuracy and samples/s; it is off when stderr is not a terminal or
    with ``progress=False``.

    With an :class:`nnx.distributed.DistributedOptimizer`, each rank trains on
    its shard (``(x, y)`` arrays are sharded for you), the epoch's loss and
    metrics are averaged over all ranks' samples, only rank 0 shows the
    progress bar, and ``on_epoch_end`` runs on every rank.

    Every ``log_every`` steps and at the end of an epoch ``fit`` reads the
    running loss (one device read) and any deferred label check.  A NaN or
    infinite loss stops training with :class:`nnx.divergence.TrainingDiverged`
    (a FloatingPointError) naming the epoch, the step and whether that batch's
    inputs held non-finite values, after model and optimizer are restored to
    their state at the start of the epoch (the model to EarlyStopping's best
    state when there is one).  A DataLoader's integer labels are checked once
    against the model's class count before the first step.
    """
    for m in metrics:
        if m not in METRICS:
            raise ValueError(f"unknown metric {m!r}; available: {METRICS}")
    comm = getattr(optimizer, "comm", None)  # a DistributedOptimizer's communicator
    loader = _as_loader(train_data, model, batch_size, shuffle, seed, comm)
    if comm is not None and comm.size > 1 and getattr(loader, "shard", None) == (0, 1):
        warnings.warn(
            "fit: every rank iterates the whole training DataLoader; for data parallelism "
            "give it comm= (or shard=(rank, size)) so that each rank takes its own part",
            stacklevel=2,
        )
    val_loader = (
        _as_loader(val_data, model, batch_size, False, seed) if val_data is not None else None
    )
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    _check_labels_once(loader, model, loss_fn)
    if val_loader is not None:
        _check_labels_once(val_loader, model, loss_fn)
    history = History()
    track_accuracy = "accuracy" in metrics
    first_layer_grad = model.requires_input_grad
    model.requires_input_grad = False  # nobody needs d loss / d input in training
    try:
        for epoch in range(initial_epoch, initial_epoch + epochs):
            if isinstance(loader, DataLoader):
                loader.set_epoch(epoch)
            snapshot = EpochSnapshot(model, optimizer)
            try:
                with model.backend.activate():  # CuPy: the metrics' arrays on its device
                    record = _train_epoch(
                        model, loss_fn, optimizer, loader, epoch, initial_epoch + epochs,
                        track_accuracy, progress if comm is None or comm.rank == 0 else False,
                        log_every, comm,
                    )  # fmt: skip
            except _Diverged as bad:
                best = early_stopping.best_state if early_stopping is not None else None
                restored = snapshot.restore(model, optimizer, best)
                finite = inputs_finite(loader, epoch, bad.step)
                raise diverged_error(bad.value, epoch, bad.step, finite, restored) from None
            if val_loader is not None:
                scores = evaluate(model, loss_fn, val_loader, metrics=metrics, comm=comm)
                record.update({f"val_{k}": v for k, v in scores.items()})
            record["lr"] = optimizer.lr
            history.epochs.append(record)
            if schedule is not None:
                schedule.step()
            if on_epoch_end is not None:
                on_epoch_end(epoch, record)
            if early_stopping is not None and early_stopping.update(epoch, record, model):
                break
        if early_stopping is not None and early_stopping.best_state is not None:
            model.load_state_dict(early_stopping.best_state)
    finally:
        model.requires_input_grad = first_layer_grad
    return history


def _train_epoch(
    model: Layer,
    loss_fn: Loss,
    optimizer: Optimizer,
    loader: Iterable[tuple[Any, Any]],
    epoch: int,
    last_epoch: int,
    track_accuracy: bool,
    progress: bool | None,
    log_every: int,
    comm: Any = None,
) -> dict[str, float]:
    xp = model.xp
    model.train()
    bar = None
    if _use_bar(progress):
        from tqdm.auto import tqdm

        total = len(loader) if hasattr(loader, "__len__") else None
        bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{last_epoch}", unit="batch", leave=True)
    start = time.perf_counter()
    loss_sum = correct = None
    seen = steps = 0
    window: list[Any] = []  # per-step losses since the last read (on the device)
    for xb, yb in loader:
        optimizer.zero_grad()
        out = model(xb)
        loss = loss_fn(out, yb)
        model.backward(loss_fn.backward())
        optimizer.step()
        window.append(loss)
        n = xb.shape[0]
        weighted = loss * n
        loss_sum = weighted if loss_sum is None else loss_sum + weighted
        if track_accuracy:
            c = _correct(xp, out, yb)
            correct = c if correct is None else correct + c
        seen += n
        steps += 1
        if bar is not None:
            bar.update(1)
        if steps % log_every == 0:
            _check_window(xp, loss_fn, loss_sum, window, steps)
            if bar is not None:
                bar.set_postfix(_postfix(loss_sum, correct, seen, start))
    if seen == 0:
        raise ValueError(
            "the training data gave no batches (empty data set, or drop_last with too few samples)"
        )
    _check_window(xp, loss_fn, loss_sum, window, steps)
    loss_total, correct_total, seen = _totals(comm, loss_sum, correct, seen)
    record = {"epoch": float(epoch + 1), "loss": loss_total / seen}
    if track_accuracy:
        record["accuracy"] = correct_total / seen
    model.backend.synchronize()
    record["time"] = time.perf_counter() - start
    record["samples_per_s"] = seen / record["time"]
    if bar is not None:
        bar.set_postfix(_postfix(loss_sum, correct, seen, start))
        bar.close()
    return record


def _totals(comm: Any, loss_sum: Any, correct: Any, seen: int) -> tuple[float, float, int]:
    """Host sums of the loss, the correct count and the samples; over all ranks with ``comm``."""
    totals = [
        float(to_numpy(loss_sum)) if loss_sum is not None else 0.0,
        float(to_numpy(correct)) if correct is not None else 0.0,
        float(seen),
    ]
    if comm is not None:
        totals = comm.sum_scalars(totals)  # one collective per epoch
    return totals[0], totals[1], int(totals[2])


class _Diverged(Exception):
    """Inside an epoch: the loss of step ``step`` (0-based) was ``value``."""

    def __init__(self, step: int, value: float) -> None:
        self.step, self.value = step, value


def _check_window(xp: Any, loss_fn: Loss, loss_sum: Any, window: list[Any], steps: int) -> None:
    """One read of the running loss (and of deferred label checks); raise _Diverged if not finite."""
    check_labels = getattr(loss_fn, "check_pending_labels", None)
    if check_labels is not None:
        check_labels()
    if window and not math.isfinite(float(to_numpy(loss_sum))):
        i = first_nonfinite(window, xp)
        step = steps - len(window) + max(i, 0)
        raise _Diverged(step, float(to_numpy(window[max(i, 0)])))
    window.clear()


def _check_labels_once(loader: Any, model: Layer, loss_fn: Loss) -> None:
    """Check a DataLoader's host labels against the model's class count, before any step."""
    if not isinstance(loss_fn, CrossEntropyLoss) or not isinstance(loader, DataLoader):
        return
    if loader.y is None or loader.y.dtype.kind not in "iu" or len(loader.x) == 0:
        return
    try:
        out = model.output_shape((1, *loader.x.shape[1:]))
    except Exception:  # input shape unknown to the model: the loss checks per batch
        return
    if len(out) == 2:
        loader.check_labels(out[1])


def _postfix(loss_sum: Any, correct: Any, seen: int, start: float) -> dict[str, str]:
    out = {"loss": f"{float(to_numpy(loss_sum)) / seen:.4f}"}
    if correct is not None:
        out["acc"] = f"{float(to_numpy(correct)) / seen:.4f}"
    out["samples/s"] = f"{seen / max(time.perf_counter() - start, 1e-9):,.0f}"
    return out


def evaluate(
    model: Layer,
    loss_fn: Loss | None,
    data: Any,
    *,
    batch_size: int = 256,
    metrics: tuple[str, ...] = ("accuracy",),
    comm: Any = None,
) -> dict[str, float]:
    """Mean loss and metrics over ``data`` in eval mode (the mode is restored afterwards).

    With ``comm`` (an :mod:`nnx.distributed` communicator) the means are over
    every rank's samples: each rank may evaluate its own shard.
    """
    loader = _as_loader(data, model, batch_size, False, 0)
    xp = model.xp
    was_training = model.training
    model.eval()
    loss_sum = correct = None
    seen = 0
    try:
        with model.backend.activate():  # CuPy: the metrics' arrays on the model's device
            for xb, yb in loader:
                out = model(xb)
                n = xb.shape[0]
                if loss_fn is not None:
                    weighted = loss_fn(out, yb) * n
                    loss_sum = weighted if loss_sum is None else loss_sum + weighted
                if "accuracy" in metrics:
                    c = _correct(xp, out, yb)
                    correct = c if correct is None else correct + c
                seen += n
    finally:
        model.train(was_training)
    loss_total, correct_total, seen = _totals(comm, loss_sum, correct, seen)
    if seen == 0:
        raise ValueError("evaluate() got no samples")
    if loss_fn is not None and hasattr(loss_fn, "check_pending_labels"):
        loss_fn.check_pending_labels()
    scores = {}
    if loss_sum is not None:
        scores["loss"] = loss_total / seen
    if correct is not None:
        scores["accuracy"] = correct_total / seen
    return scores


def predict(model: Layer, x: Any, *, batch_size: int = 256, **loader_args: Any) -> Any:
    """Model outputs for host inputs ``x``, computed in batches in eval mode, as a host array."""
    loader = x
    if not isinstance(x, DataLoader):
        loader = DataLoader(x, batch_size=batch_size, device=model.backend, **loader_args)
    was_training = model.training
    model.eval()
    try:
        with model.backend.activate():
            outs = [model(xb) for xb, _ in loader]
            return to_numpy(model.xp.concat(outs, axis=0))  # one copy to the host, at the end
    finally:
        model.train(was_training)

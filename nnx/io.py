"""Checkpoints: portable .npz files that load on any backend, written atomically.

A checkpoint holds host little-endian arrays (model parameters and buffers,
optimizer state) and one JSON document (backend, dtype, epoch, RNG states,
optimizer settings, user metadata).  It never uses pickle, so loading a
stranger's file cannot run code, and :func:`load` checks everything before it
changes anything (see :mod:`nnx.checkpoint_file`).  Saving goes through
:func:`nnx.atomic.atomic_write`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from nnx import init
from nnx.atomic import atomic_write
from nnx.backend import to_numpy
from nnx.checkpoint_file import CheckpointError, CheckpointFile
from nnx.layers.base import Layer, dtype_name
from nnx.optim import Optimizer

FORMAT = "nnx-checkpoint/1"


def _little_endian(x: Any) -> np.ndarray:
    host = np.ascontiguousarray(to_numpy(x))
    return host.astype(host.dtype.newbyteorder("<"), copy=False)


def save(
    path: str | os.PathLike[str],
    model: Layer,
    optimizer: Optimizer | None = None,
    **metadata: Any,
) -> Path:
    """Write ``model`` (and ``optimizer``) to ``path`` (.npz); extra keywords go into the metadata."""
    arrays = {f"model/{k}": _little_endian(v) for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "backend": model.backend.spec,
        "dtype": model.dtype,
        "model": type(model).__name__,
        "rng": {
            "init": init.generator().bit_generator.state,
            "backend": model.backend.generator.get_state(),
        },
        "metadata": metadata,
    }
    if optimizer is not None:
        state = optimizer.state_dict()
        for i, per_param in enumerate(state.pop("state")):
            for k, v in per_param.items():
                arrays[f"optim/{i}/{k}"] = _little_endian(v)
        meta["optimizer"] = state
    try:
        document = json.dumps(meta)
    except TypeError as err:
        raise TypeError(f"checkpoint metadata must be JSON-serialisable: {err}") from err
    arrays["__meta__"] = np.frombuffer(document.encode(), dtype=np.uint8)
    with atomic_write(path) as f:
        np.savez(f, **arrays)
    return Path(path)


def load(
    path: str | os.PathLike[str],
    model: Layer,
    optimizer: Optimizer | None = None,
    *,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint into ``model`` (on whatever backend it is now) and ``optimizer``.

    Everything is checked before anything changes: the entries and shapes of
    the model, the optimizer's type, hyperparameters (known names, types and
    ranges) and state arrays, the RNG states.  Any problem raises
    :class:`CheckpointError` (a ValueError) naming the file and the reason, and
    leaves model and optimizer as they were.  Only the entries needed are read,
    each one's header checked before its data.

    Returns the metadata: ``epoch`` and any keywords given to :func:`save`,
    plus ``backend`` and ``dtype`` of the run that wrote it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    # a wrapper (nnx.distributed.DistributedOptimizer) loads into the optimizer it wraps
    optimizer = getattr(optimizer, "optimizer", optimizer)
    with CheckpointFile(path) as ckpt:
        meta = _checked_metadata(ckpt)
        weights = _read_model(ckpt, model)
        state = _read_optimizer(ckpt, meta, optimizer) if optimizer is not None else None
        init_state, backend_state = _checked_rng(ckpt, meta, model) if restore_rng else (None, None)
    try:
        model.load_state_dict(weights)
    except (KeyError, ValueError) as err:  # checked above: only a model with odd buffers gets here
        raise ckpt.error(str(err)) from None
    if optimizer is not None:
        optimizer.load_state_dict(state)
    if init_state is not None:
        init.generator().bit_generator.state = init_state
    if backend_state is not None:
        model.backend.generator.set_state(backend_state)
    return {**meta["metadata"], "backend": meta["backend"], "dtype": meta["dtype"]}


def _checked_metadata(ckpt: CheckpointFile) -> dict[str, Any]:
    meta = ckpt.metadata()
    if meta.get("format") != FORMAT:
        raise ckpt.error(f"unsupported checkpoint format {meta.get('format')!r}")
    for key, kind in (("backend", str), ("dtype", str), ("metadata", dict), ("rng", dict)):
        if not isinstance(meta.get(key), kind):
            raise ckpt.error(f"truncated or corrupt (metadata field {key!r} is missing or wrong)")
    return meta


def _read_model(ckpt: CheckpointFile, model: Layer) -> dict[str, np.ndarray]:
    """The model's arrays from the file, names and shapes checked before reading any."""
    expected = {k: v for k, v in model.state_dict().items()}
    found = ckpt.names("model/")
    missing, unexpected = set(expected) - found, found - set(expected)
    if missing or unexpected:
        raise ckpt.error(
            f"does not match {type(model).__name__}: missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)} (a different architecture?)"
        )
    weights = {}
    for name, target in expected.items():
        kind = np.dtype(dtype_name(model.xp, target.dtype)).kind
        kinds = "f" if kind == "f" else "iub"
        weights[name] = ckpt.array(f"model/{name}", shape=tuple(target.shape), kinds=kinds)
    return weights


def _read_optimizer(
    ckpt: CheckpointFile, meta: dict[str, Any], optimizer: Optimizer
) -> dict[str, Any]:
    """The optimizer state from the file, checked by the optimizer before it is returned."""
    saved = meta.get("optimizer")
    if saved is None:
        raise ckpt.error("holds no optimizer state; load without optimizer=")
    if not isinstance(saved, dict):
        raise ckpt.error("truncated or corrupt (optimizer settings are not a JSON object)")
    n = len(optimizer.params)
    per_param: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    if saved.get("type") == type(optimizer).__name__:  # else check_state names the mismatch
        for key in sorted(ckpt.names("optim/")):
            index, _, name = key.partition("/")
            if not index.isdigit() or int(index) >= n or name not in optimizer.state_names:
                raise ckpt.error(
                    f"optimizer entry {'optim/' + key!r} does not fit this {type(optimizer).__name__} "
                    f"of {n} parameters"
                )
            shape = tuple(optimizer.params[int(index)].shape)
            per_param[int(index)][name] = ckpt.array(f"optim/{key}", shape=shape, kinds="f")
    state = {**saved, "state": per_param}
    try:
        optimizer.check_state(state)
    except ValueError as err:
        raise ckpt.error(f"optimizer state does not fit: {err}") from None
    return state


def _checked_rng(ckpt: CheckpointFile, meta: dict[str, Any], model: Layer) -> tuple[Any, Any]:
    """The RNG states to restore, each tried on a scratch generator first."""
    rng = meta["rng"]
    try:
        type(init.generator().bit_generator)().state = rng.get("init")
    except (TypeError, ValueError, KeyError) as err:
        raise ckpt.error(f"truncated or corrupt (initialiser RNG state: {err})") from None
    backend_state = rng.get("backend")
    # a generator state only fits the same library on the same kind of device
    if backend_state is None or meta["backend"] != model.backend.spec:
        return rng["init"], None
    try:
        model.backend.rng(0).set_state(backend_state)
    except Exception as err:  # each library rejects a bad state its own way
        raise ckpt.error(f"truncated or corrupt (backend RNG state: {err})") from None
    return rng["init"], backend_state


__all__ = ["CheckpointError", "atomic_write", "load", "save"]

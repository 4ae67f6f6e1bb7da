"""Checkpoints: portable .npz files that load on any backend, written atomically.

A checkpoint holds host little-endian arrays (model parameters and buffers,
optimizer state) and one JSON document (backend, dtype, epoch, RNG states,
optimizer settings, user metadata).  It never uses pickle, so loading a
stranger's file cannot run code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nnx import init
from nnx.backend import to_numpy
from nnx.layers.base import Layer
from nnx.optim import Optimizer

FORMAT = "nnx-checkpoint/1"


def _little_endian(x: Any) -> np.ndarray:
    host = np.ascontiguousarray(to_numpy(x))
    return host.astype(host.dtype.newbyteorder("<"), copy=False)


def atomic_write(path: str | os.PathLike[str], write: Any) -> Path:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def load(
    path: str | os.PathLike[str],
    model: Layer,
    optimizer: Optimizer | None = None,
    *,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint into ``model`` (on whatever backend it is now) and ``optimizer``.

    Returns the metadata: ``epoch`` and any keywords given to :func:`save`,
    plus ``backend`` and ``dtype`` of the run that wrote it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path} is not a readable nnx checkpoint: {err}") from err
    if "__meta__" not in arrays:
        raise ValueError(f"{path} is an .npz file but not an nnx checkpoint (no metadata)")
    meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unsupported checkpoint format {meta.get('format')!r}")
    model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model/")})
    if optimizer is not None:
        if "optimizer" not in meta:
            raise ValueError(f"{path} holds no optimizer state; load without optimizer=")
        n = len(optimizer.params)
        state = dict(meta["optimizer"])
        state["state"] = [{} for _ in range(n)]
        for key, value in arrays.items():
            if key.startswith("optim/"):
                _, i, name = key.split("/", 2)
                if int(i) >= n:
                    raise ValueError(f"{path}: optimizer state for parameter {i}, model has {n}")
                state["state"][int(i)][name] = value
        optimizer.load_state_dict(state)
    if restore_rng:
        init.generator().bit_generator.state = meta["rng"]["init"]
        # a generator state only fits the same library on the same kind of device
        if meta["rng"]["backend"] is not None and meta["backend"] == model.backend.spec:
            model.backend.generator.set_state(meta["rng"]["backend"])
    return {**meta["metadata"], "backend": meta["backend"], "dtype": meta["dtype"]}


__all__ = ["atomic_write", "load", "save"]

"""Making every rank hold the same model and optimizer state; saving from rank 0 only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nnx.layers.base import Layer
from nnx.optim import Optimizer


def _comm(comm: Any) -> Any:
    if comm is None:
        from nnx.distributed.runtime import init

        return init()
    return comm


def broadcast_parameters(model: Layer, root: int = 0, comm: Any = None) -> None:
    """Give every rank rank ``root``'s parameters and buffers (BatchNorm running stats)."""
    comm = _comm(comm)
    state = model.state_dict()
    received = {name: comm.broadcast(value, root=root) for name, value in state.items()}
    if comm.rank != root:
        model.load_state_dict(received)


def broadcast_optimizer_state(optimizer: Any, root: int = 0, comm: Any = None) -> None:
    """Give every rank rank ``root``'s optimizer state (moments, step count, settings)."""
    comm = _comm(comm)
    inner = getattr(optimizer, "optimizer", optimizer)  # a DistributedOptimizer's wrapped one
    if not isinstance(inner, Optimizer):
        raise TypeError(f"expected an nnx Optimizer, got {type(optimizer).__name__}")
    # one pickled message: ranks may differ in which state exists yet (no momentum before step 1)
    state = comm.broadcast_object(inner.state_dict() if comm.rank == root else None, root=root)
    if comm.rank != root:
        inner.load_state_dict(state)


def save(
    path: str | os.PathLike[str],
    model: Layer,
    optimizer: Any = None,
    *,
    root: int = 0,
    comm: Any = None,
    **metadata: Any,
) -> Path:
    """:func:`nnx.save` on rank ``root`` only; every rank returns once the file is there.

    Every rank must call it (it ends with a barrier), so a rank that loads the
    file right after never sees a half-written one.
    """
    from nnx.io import save as save_one

    comm = _comm(comm)
    error = None
    if comm.rank == root:
        try:
            save_one(path, model, optimizer, **metadata)
        except Exception as err:  # tell the other ranks instead of leaving them waiting
            error = err
    failed = comm.broadcast_object(None if error is None else repr(error), root=root)
    if error is not None:
        raise error
    if failed is not None:
        raise RuntimeError(f"rank {root} could not save {path}: {failed}")
    return Path(path)


def load(
    path: str | os.PathLike[str],
    model: Layer,
    optimizer: Any = None,
    *,
    root: int = 0,
    comm: Any = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`nnx.load` on every rank, then rank ``root``'s state broadcast to all.

    The broadcast makes the ranks agree even if their copies of the file
    differ (a stale copy on one machine's disk).
    """
    from nnx.io import load as load_one

    comm = _comm(comm)
    meta = load_one(path, model, optimizer, **kwargs)
    broadcast_parameters(model, root=root, comm=comm)
    if optimizer is not None:
        broadcast_optimizer_state(optimizer, root=root, comm=comm)
    return meta


def is_root(root: int = 0) -> bool:
    """True on rank ``root`` (and in a single process): the rank that prints and saves."""
    from nnx.distributed.runtime import rank

    return rank() == root


__all__ = [
    "broadcast_optimizer_state",
    "broadcast_parameters",
    "is_root",
    "load",
    "save",
]

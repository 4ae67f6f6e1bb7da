"""DataLoader: mini-batches from host arrays onto a device.

Integer images (uint8) cross the bus as they are (four times fewer bytes than
float32) and are cast, scaled and normalised on the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from nnx.backend import Backend, get_backend


class DataLoader:
    """Iterate ``(x, y)`` mini-batches of host arrays on ``device`` (default: current backend).

    ``scale`` multiplies integer inputs after the cast to float32 (default
    1/255 for uint8), then ``normalize=(mean, std)`` is applied; ``shape`` is the
    per-sample shape (e.g. ``(784,)`` for an MLP, ``(1, 28, 28)`` for a CNN).
    Shuffling is seeded per epoch (``seed`` and the epoch number), so a resumed
    run sees the same batches as an uninterrupted one.

    ``shard=(rank, size)`` (or ``comm=`` a :mod:`nnx.distributed` communicator)
    gives this rank every ``size``-th sample of the epoch's global order,
    starting at ``rank``: the ranks' parts are disjoint and equal-sized (the
    last ``len(x) % size`` samples of the order are left out), and step ``i``
    of all ranks together covers the global batch ``i`` of size
    ``size * batch_size`` that one process would see.
    """

    def __init__(
        self,
        x: Any,
        y: Any = None,
        batch_size: int = 32,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        device: str | Backend | None = None,
        shape: tuple[int, ...] | None = None,
        scale: float | None = None,
        normalize: tuple[float, float] | None = None,
        shard: tuple[int, int] | None = None,
        comm: Any = None,
    ) -> None:
        x = np.asarray(x)
        if y is not None:
            y = np.asarray(y)
            if len(y) != len(x):
                raise ValueError(f"x has {len(x)} samples but y has {len(y)}; they must match")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if shape is not None:
            per_sample = int(np.prod(x.shape[1:]))
            if int(np.prod(shape)) != per_sample:
                raise ValueError(f"cannot view samples of shape {x.shape[1:]} as {tuple(shape)}")
            x = x.reshape((len(x), *shape))
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.seed, self.drop_last = (
            batch_size,
            shuffle,
            seed,
            drop_last,
        )
        self._device = device
        if scale is None and x.dtype == np.uint8:
            scale = 1.0 / 255.0
        self.scale = scale
        self.normalize = normalize
        self.epoch = 0
        self.shard = _check_shard(shard, comm)
        self._labels_ok: int | None = None  # class count the labels were checked against

    @property
    def backend(self) -> Backend:
        """The backend batches are put on (resolved at iteration time)."""
        return get_backend(self._device)

    def __len__(self) -> int:
        n = self._shard_samples()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _shard_samples(self) -> int:
        """Samples this rank takes per epoch (all of them without a shard)."""
        return len(self.x) // self.shard[1]

    @property
    def num_samples(self) -> int:
        """Samples per epoch on this rank (after drop_last)."""
        return len(self) * self.batch_size if self.drop_last else self._shard_samples()

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use the shuffle order of ``epoch`` (for resuming)."""
        self.epoch = epoch

    def order(self, epoch: int) -> np.ndarray | None:
        """The global sample order of ``epoch`` (None when not shuffling), before sharding."""
        if not self.shuffle:
            return None
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.x))

    def indices(self, epoch: int) -> np.ndarray | None:
        """The samples this rank visits in ``epoch``, in order (None: all, in order)."""
        order = self.order(epoch)
        rank, size = self.shard
        if size == 1:
            return order
        if order is None:
            order = np.arange(len(self.x))
        return order[: len(order) - len(order) % size][rank::size]

    def check_labels(self, num_classes: int) -> None:
        """Raise ValueError if an integer label is outside ``[0, num_classes)``.

        Runs once per class count on the host labels (a pass over ``y`` in
        NumPy), so labels bound for a GPU are checked without any device sync.
        """
        if self.y is None or self.y.dtype.kind not in "iu" or self._labels_ok == num_classes:
            return
        bad = np.flatnonzero((self.y < 0) | (self.y >= num_classes))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"label {self.y[i]} of sample {i} is outside [0, {num_classes}) (the model has "
                f"{num_classes} classes; {bad.size} labels are out of range); labels must be "
                f"0 .. {num_classes - 1}"
            )
        self._labels_ok = num_classes

    def host_inputs(self, epoch: int, index: int) -> np.ndarray:
        """The host inputs of batch ``index`` of ``epoch`` on this rank (before any scaling)."""
        order = self.indices(epoch)
        sl = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[order[sl] if order is not None else sl]

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        backend = self.backend
        order = self.indices(self.epoch)
        self.epoch += 1
        for i in range(len(self)):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = order[sl] if order is not None else sl
            with backend.activate():  # CuPy: the batch's arithmetic on the backend's device
                xb = self._inputs(backend, self.x[idx])
                yb = None if self.y is None else backend.asarray(self.y[idx], _label_dtype(self.y))
            yield xb, yb

    def _inputs(self, backend: Backend, host: np.ndarray) -> Any:
        xp = backend.xp
        if host.dtype.kind in "iub":
            x = xp.astype(backend.asarray(host, host.dtype.name), xp.float32)  # a fresh array
            if self.scale is not None:
                x *= self.scale
        else:
            # may share memory with the caller's data: the first operation must not be in place
            x = backend.asarray(host, "float32")
            if self.scale is None and self.normalize is None:
                return x
            x = x * (1.0 if self.scale is None else self.scale)
        if self.normalize is not None:
            mean, std = self.normalize
            x -= mean
            x *= 1.0 / std
        return x


def _check_shard(shard: tuple[int, int] | None, comm: Any) -> tuple[int, int]:
    """``(rank, size)`` from ``shard`` or a communicator; ``(0, 1)`` without either."""
    if comm is not None:
        if shard is not None and tuple(shard) != (comm.rank, comm.size):
            raise ValueError(f"shard={shard} disagrees with comm (rank {comm.rank} of {comm.size})")
        return comm.rank, comm.size
    if shard is None:
        return 0, 1
    try:
        rank, size = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise ValueError(f"shard must be (rank, size), got {shard!r}") from None
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"shard=(rank, size) needs 0 <= rank < size, got {shard!r}")
    return rank, size


def _label_dtype(y: np.ndarray) -> str:
    """Integer labels travel as int64 (what losses expect); float targets as float32."""
    return "int64" if y.dtype.kind in "iub" else "float32"

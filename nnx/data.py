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
        self._labels_ok: int | None = None  # class count the labels were checked against

    @property
    def backend(self) -> Backend:
        """The backend batches are put on (resolved at iteration time)."""
        return get_backend(self._device)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        """Samples per epoch (after drop_last)."""
        return len(self) * self.batch_size if self.drop_last else len(self.x)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use the shuffle order of ``epoch`` (for resuming)."""
        self.epoch = epoch

    def order(self, epoch: int) -> np.ndarray | None:
        """The sample order of ``epoch`` (None when not shuffling)."""
        if not self.shuffle:
            return None
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.x))

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
        """The host inputs of batch ``index`` of ``epoch`` (before any scaling)."""
        order = self.order(epoch)
        sl = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[order[sl] if order is not None else sl]

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        backend = self.backend
        order = self.order(self.epoch)
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


def _label_dtype(y: np.ndarray) -> str:
    """Integer labels travel as int64 (what losses expect); float targets as float32."""
    return "int64" if y.dtype.kind in "iub" else "float32"

"""Flat gradient buckets: many parameters' gradients, one collective.

A bucket is made once (on the first step) and reused: each step copies the
gradients into it scaled by 1/size, sums it over ranks in one call (on the
host into a second buffer: MPI's out-of-place allreduce is faster) and hands
every parameter its slice as the averaged gradient (a view on the host, or on
the GPU for NCCL; a copy on the device for other host-staged backends).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnx.backend import backend_of, to_numpy


def _is_integer(xp: Any, dtype: Any) -> bool:
    """Whether ``dtype`` is a (signed or unsigned) integer type, for NumPy, CuPy or any xp."""
    kind = getattr(dtype, "kind", None)  # NumPy and CuPy dtypes
    if isinstance(kind, str):
        return kind in "iu"
    return bool(xp.isdtype(dtype, "integral"))


def divide_by_ranks_(xp: Any, buffer: Any, ranks: int) -> None:
    """Turn a sum over ``ranks`` ranks into their mean, in place, keeping ``buffer``'s dtype.

    Floats are multiplied by ``1 / ranks``. Integers are divided as NCCL's ``ncclAvg``
    (what ``torch.distributed.all_reduce(op=ReduceOp.AVG)`` runs on NCCL) divides them:
    the sum divided by the rank count in integer arithmetic, rounded toward zero
    (``-7 / 2 -> -3``), which is also what MPI's host-staged mean gives (``astype`` of the
    quotient). Scaling an integer buffer by a float in place is a casting error.
    """
    if _is_integer(xp, buffer.dtype):
        buffer[...] = xp.where(buffer < 0, -((-buffer) // ranks), buffer // ranks)
    else:
        buffer *= 1.0 / ranks


def _layout(shapes: list[tuple[int, ...]]) -> tuple[list[tuple[int, int, tuple[int, ...]]], int]:
    """(offset, size, shape) of each gradient in the flat buffer, and the total size."""
    slots, offset = [], 0
    for shape in shapes:
        n = math.prod(shape)
        slots.append((offset, n, shape))
        offset += n
    return slots, offset


class HostBucket:
    """A host NumPy buffer, summed with MPI (the staging path for every backend)."""

    def __init__(self, comm: Any, shapes: list[tuple[int, ...]], dtype: str) -> None:
        self.comm = comm
        self.slots, total = _layout(shapes)
        self.send = np.empty(total, dtype=dtype)
        self.buffer = np.empty(total, dtype=dtype)  # the sums; parameters' gradients view it

    def average(self, grads: list[Any], owners: list[Any]) -> list[Any]:
        """Mean over ranks of ``grads`` (None counts as zeros), one array per gradient.

        ``owners`` are the parameter values: the results go to their devices.
        """
        buf = self.send
        scale = buf.dtype.type(1.0 / self.comm.size)  # scaled while packing: one pass, not two
        for (offset, n, _), g in zip(self.slots, grads, strict=True):
            if g is None:
                buf[offset : offset + n] = 0
            else:
                np.multiply(to_numpy(g).reshape(-1), scale, out=buf[offset : offset + n])
        self.comm.allreduce_host_(self.buffer, send=buf)
        return [
            _to_owner_device(self.buffer[offset : offset + n].reshape(shape), owner)
            for (offset, n, shape), owner in zip(self.slots, owners, strict=True)
        ]


def _to_owner_device(host: np.ndarray, owner: Any) -> Any:
    """A NumPy parameter gets the bucket's view (no copy); others a copy on their device."""
    if isinstance(owner, np.ndarray):
        return host
    return backend_of(owner).asarray(host, host.dtype.name)


class DeviceBucket:
    """A flat array on the gradients' device, summed in place by a device collective (NCCL)."""

    def __init__(self, comm: Any, like: Any, shapes: list[tuple[int, ...]], dtype: Any) -> None:
        import array_api_compat

        self.comm = comm
        self.xp = array_api_compat.array_namespace(like)
        self.slots, total = _layout(shapes)
        self.buffer = self.xp.empty((total,), dtype=dtype, device=array_api_compat.device(like))

    def average(self, grads: list[Any], owners: list[Any]) -> list[Any]:
        """Mean over ranks of ``grads`` (None counts as zeros), as views of the bucket."""
        xp, buf = self.xp, self.buffer
        for (offset, n, _), g in zip(self.slots, grads, strict=True):
            buf[offset : offset + n] = 0 if g is None else xp.reshape(g, (-1,))
        self.comm.allreduce_device_(buf)
        divide_by_ranks_(xp, buf, self.comm.size)
        return [xp.reshape(buf[offset : offset + n], shape) for offset, n, shape in self.slots]

"""NCCL between CuPy GPUs, one GPU per rank, set up over MPI.

As ChainerMN's pure-NCCL communicator does: rank 0 makes the NCCL unique id,
MPI broadcasts it, every rank joins the NCCL communicator on its own GPU.
Gradient buckets then stay on the GPU and are summed by ``ncclAllReduce`` on
the current CuPy stream; everything else (metrics, objects) still goes
through MPI.  Needs CuPy built with NCCL (``cupy.cuda.nccl.available``).
"""

from __future__ import annotations

import time
from typing import Any

from nnx.distributed.buckets import divide_by_ranks_
from nnx.distributed.communicator import DistributedError, MPICommunicator

_NCCL_TYPES = {
    "float16": "NCCL_FLOAT16",
    "float32": "NCCL_FLOAT32",
    "float64": "NCCL_FLOAT64",
    "int32": "NCCL_INT32",
    "int64": "NCCL_INT64",
}


def nccl_available() -> tuple[bool, str]:
    """(True, "") when CuPy has NCCL, else (False, why)."""
    try:
        from cupy.cuda import nccl
    except Exception as err:  # ImportError, or CuPy's own error without CUDA
        return False, f"cupy.cuda.nccl cannot be imported: {err}"
    if not getattr(nccl, "available", True):
        return (
            False,
            "this CuPy finds no NCCL library (see CuPy's installation guide: NCCL is optional)",
        )
    return True, ""


def local_gpu(local_rank: int) -> int:
    """The GPU index for the ``local_rank``-th rank of a machine (round robin over its GPUs)."""
    import cupy

    return local_rank % cupy.cuda.runtime.getDeviceCount()


class NcclCommunicator(MPICommunicator):
    """MPI for the job and small messages, NCCL for the gradients of CuPy arrays.

    ``device`` is the CuPy device this rank uses (``cuda:{local_rank}`` by default).
    """

    transport = "nccl"

    def __init__(self, device: Any, mpi_comm: Any = None) -> None:
        super().__init__(mpi_comm)
        ok, why = nccl_available()
        if not ok:
            raise DistributedError(f"NCCL was asked for but {why}; use transport='mpi'")
        import cupy
        from cupy.cuda import nccl

        self._cupy, self._nccl = cupy, nccl
        self.device = device
        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = self.comm.bcast(uid, root=0)
        with device:
            self.nccl_comm = nccl.NcclCommunicator(self.size, uid, self.rank)

    def _nccl_type(self, x: Any) -> int:
        name = str(x.dtype)
        if name not in _NCCL_TYPES:
            raise TypeError(f"NCCL cannot reduce {name} arrays; use float16/32/64 or int32/64")
        return getattr(self._nccl, _NCCL_TYPES[name])

    def _is_cupy(self, x: Any) -> bool:
        return isinstance(x, self._cupy.ndarray)

    def allreduce(self, x: Any, op: str = "mean") -> Any:
        """Like :meth:`MPICommunicator.allreduce`; CuPy arrays stay on the GPU."""
        if not self._is_cupy(x):
            return super().allreduce(x, op)
        if op not in ("sum", "mean"):
            raise ValueError(f"op must be 'sum' or 'mean', got {op!r}")
        with x.device:
            out = self._cupy.ascontiguousarray(x).copy()
            self.allreduce_device_(out, count=False)
            if op == "mean":
                divide_by_ranks_(self._cupy, out, self.size)  # integers: as ncclAvg does
        return out

    def broadcast(self, x: Any, root: int = 0) -> Any:
        """Like :meth:`MPICommunicator.broadcast`; CuPy arrays stay on the GPU."""
        if not self._is_cupy(x):
            return super().broadcast(x, root)
        with x.device:
            out = self._cupy.ascontiguousarray(x).copy()
            stream = self._cupy.cuda.get_current_stream()
            self.nccl_comm.bcast(out.data.ptr, out.size, self._nccl_type(out), root, stream.ptr)
            stream.synchronize()
        return out

    def make_bucket(self, values: list[Any], dtype: str) -> Any:
        """A bucket on the GPU for CuPy parameters, on the host otherwise."""
        if not self._is_cupy(values[0]):
            return super().make_bucket(values, dtype)
        from nnx.distributed.buckets import DeviceBucket

        return DeviceBucket(self, values[0], [tuple(v.shape) for v in values], values[0].dtype)

    def allreduce_device_(self, buffer: Any, count: bool = True) -> None:
        """Sum a contiguous CuPy buffer over ranks, in place, on the current stream."""
        start = time.perf_counter()
        stream = self._cupy.cuda.get_current_stream()
        self.nccl_comm.allReduce(
            buffer.data.ptr, buffer.data.ptr, buffer.size, self._nccl_type(buffer),
            self._nccl.NCCL_SUM, stream.ptr,
        )  # fmt: skip
        if count:
            stream.synchronize()  # so that the time below is the collective's, not a launch's
            self.stats.seconds += time.perf_counter() - start
            self.stats.calls += 1
            self.stats.bytes += buffer.nbytes

    def abort(self, code: int = 1) -> None:
        """Abort NCCL (so no GPU kernel waits forever), then the MPI job."""
        try:
            self.nccl_comm.abort()
        finally:
            super().abort(code)

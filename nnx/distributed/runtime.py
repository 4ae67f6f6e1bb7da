"""init(): join the job, pick the device and the transport, abort everyone on an error;
find_mpiexec() / mpi_missing(): whether (and with what) a job can be launched here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import traceback
from typing import Any

from nnx.backend import Backend, current, get_backend, use
from nnx.distributed.communicator import DistributedError, MPICommunicator

TRANSPORTS = ("auto", "mpi", "nccl")
ABORT_GRACE_S = 0.5
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_communicator: MPICommunicator | None = None


def find_mpiexec() -> str | None:
    """The ``mpiexec`` to launch this interpreter's ranks with, or None.

    First the one installed with this interpreter: next to ``sys.executable`` or in
    pip's scripts folder, where the ``mpich`` wheel puts it (and mpi4py loads that wheel's
    libmpi), which is on PATH only while its virtual environment is activated; then the
    first on PATH.
    """
    folders = [os.path.dirname(sys.executable), sysconfig.get_path("scripts")]
    for folder in dict.fromkeys(f for f in folders if f):
        found = shutil.which("mpiexec", path=folder)
        if found:
            return found
    return shutil.which("mpiexec")


_LOAD_MPI = "import mpi4py; mpi4py.rc.initialize = False; from mpi4py import MPI"


def mpi_missing() -> str:
    """Why ``mpiexec -n N python script.py`` cannot run here ("" when it can).

    ``import mpi4py`` works without an MPI library; ``from mpi4py import MPI`` loads it,
    so that is tried, in a child process (this one neither loads nor initialises MPI).
    """
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install 'nnx[mpi]')"
    try:
        load = subprocess.run(
            [sys.executable, "-c", _LOAD_MPI], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"loading the MPI library failed: {err}"
    if load.returncode != 0:
        last = (load.stderr.strip().splitlines() or ["(no message)"])[-1]
        return f"mpi4py finds no MPI library ({last}); pip install mpich (or 'nnx[mpi]')"
    if find_mpiexec() is None:
        return "no mpiexec next to this Python or on PATH (pip install 'nnx[mpi]' brings MPICH's)"
    return ""


def init(device: str | Backend | None = None, *, transport: str = "auto") -> MPICommunicator:
    """Join the MPI job (once; later calls return the same communicator).

    ``device`` (default: the current backend) becomes the current backend; a
    CUDA device without an index becomes ``cuda:{local_rank}``, one GPU per
    rank on each machine.  ``transport="auto"`` uses NCCL for CuPy arrays when
    CuPy has it and MPI with host staging otherwise; ``"mpi"`` or ``"nccl"``
    force one.  An uncaught exception on any rank then aborts the whole job
    (``MPI_Abort``) after printing the rank and the error, instead of leaving
    the other ranks waiting forever.
    """
    global _communicator
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
    if _communicator is not None:
        return _communicator
    comm = MPICommunicator()  # imports mpi4py: raises DistributedError naming nnx[mpi]
    backend = _rank_device(device, comm.local_rank)
    if transport == "nccl" and backend.name != "cupy":
        raise DistributedError(f"transport='nccl' needs a CuPy device, not {backend.spec}")
    if backend.name == "cupy" and transport != "mpi":
        from nnx.distributed.nccl import NcclCommunicator, nccl_available

        ok, why = nccl_available()
        if ok:
            comm = NcclCommunicator(backend.device, comm.comm)
        elif transport == "nccl":
            raise DistributedError(f"transport='nccl': {why}")
    comm.backend = backend
    use(backend)
    comm.blas_threads = _share_cores(comm.local_size)
    if comm.size > 1:
        _install_abort_hook(comm)
    _communicator = comm
    return comm


def _rank_device(device: str | Backend | None, local_rank: int) -> Backend:
    """The backend for this rank: a CUDA spec without an index gets ``local_rank``."""
    backend = get_backend(device) if device is not None else current()
    unindexed = device is None or (isinstance(device, str) and ":" not in device)
    if backend.name == "cupy" and unindexed:
        from nnx.distributed.nccl import local_gpu

        return get_backend(f"cupy:{local_gpu(local_rank)}")
    return backend


def _share_cores(ranks_here: int) -> int | None:
    """Limit this rank's BLAS threads to its share of the machine's cores; the limit set.

    Every rank starting a BLAS thread per core oversubscribes the machine, and
    spinning BLAS threads then starve the ranks waiting in a collective.
    """
    if ranks_here <= 1 or any(v in os.environ for v in THREAD_VARIABLES):
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    threads = max(1, (os.cpu_count() or 1) // ranks_here)
    threadpool_limits(limits=threads, user_api="blas")
    return threads


def _install_abort_hook(comm: MPICommunicator) -> None:
    """An uncaught exception prints ``rank r/n`` and the error, then aborts every rank."""
    previous = sys.excepthook

    def abort_job(kind: type[BaseException], error: BaseException, tb: Any) -> None:
        try:
            sys.stderr.write(
                f"nnx.distributed: rank {comm.rank} of {comm.size} failed: "
                f"{kind.__name__}: {error}\nnnx.distributed: aborting the job (MPI_Abort)\n"
            )
            if previous is not sys.__excepthook__:
                previous(kind, error, tb)
            else:
                traceback.print_exception(kind, error, tb)
            sys.stderr.flush()
            # mpiexec forwards output asynchronously and stops forwarding once the job is
            # aborted: give the message a moment to reach the terminal
            time.sleep(ABORT_GRACE_S)
        finally:
            comm.abort(1)

    sys.excepthook = abort_job


def is_initialized() -> bool:
    """True once :func:`init` has run in this process."""
    return _communicator is not None


def communicator() -> MPICommunicator:
    """The communicator :func:`init` made (an error before init)."""
    if _communicator is None:
        raise DistributedError("nnx.distributed.init() has not been called in this process")
    return _communicator


def rank() -> int:
    """This process's rank; 0 before :func:`init` (a single process is rank 0 of 1)."""
    return 0 if _communicator is None else _communicator.rank


def size() -> int:
    """The number of ranks; 1 before :func:`init`."""
    return 1 if _communicator is None else _communicator.size


def local_rank() -> int:
    """This process's rank among those on its machine; 0 before :func:`init`."""
    return 0 if _communicator is None else _communicator.local_rank

"""Data-parallel training over MPI (mpi4py), with NCCL between CuPy GPUs.

Launch N copies of a script with ``mpiexec -n N python script.py``; in it::

    comm = nnx.distributed.init()                       # rank, size, local_rank
    nnx.distributed.broadcast_parameters(model)         # everyone starts from rank 0's weights
    optimizer = nnx.distributed.DistributedOptimizer(nnx.optim.SGD(model.parameters(), lr=0.1))
    train = nnx.DataLoader(x, y, batch_size=64, shuffle=True, comm=comm)  # this rank's shard
    nnx.fit(model, loss_fn, optimizer, train)           # rank 0 prints, metrics averaged

Layers and losses know nothing of this: only the optimizer step (gradient
averaging), the data loader (sharding) and ``fit`` (metric averaging, rank-0
output) take part.  Importing this package does not import mpi4py; ``init()``
does, and without it raises an error naming ``pip install 'nnx[mpi]'``.
See docs/distributed.md.
"""

from nnx.distributed.communicator import DistributedError, MPICommunicator
from nnx.distributed.optimizer import DistributedOptimizer
from nnx.distributed.runtime import (
    communicator,
    init,
    is_initialized,
    local_rank,
    rank,
    size,
)
from nnx.distributed.state import (
    broadcast_optimizer_state,
    broadcast_parameters,
    is_root,
    load,
    save,
)

__all__ = [
    "DistributedError",
    "DistributedOptimizer",
    "MPICommunicator",
    "broadcast_optimizer_state",
    "broadcast_parameters",
    "communicator",
    "init",
    "is_initialized",
    "is_root",
    "load",
    "local_rank",
    "rank",
    "save",
    "size",
]

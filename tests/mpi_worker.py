"""The MPI side of tests/test_distributed.py, run as ``mpiexec -n 2 python tests/mpi_worker.py``.

    python tests/mpi_worker.py train OUTDIR [BACKEND [TRANSPORT]]  # broadcast, SGD/Adam, checkpoint
    python tests/mpi_worker.py fault OUTDIR [BACKEND [TRANSPORT]]  # rank 1 raises at step 3

Each rank writes what it ends with into OUTDIR; the test compares the ranks
with each other and with one process trained on the whole batches.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import nnx
import nnx.distributed as dist

N, PER_RANK, FEATURES, CLASSES = 320, 8, 6, 3
SHUFFLE_SEED = 3
TINY_BUCKET_MB = 300 / 2**20  # 300 bytes: forces several buckets on this small model


def dataset() -> tuple[np.ndarray, np.ndarray]:
    """A fixed synthetic classification set (the same in every process)."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=N)
    return x, y


def build(seed: int) -> nnx.Sequential:
    """The model, with weights drawn from ``seed``."""
    nnx.manual_seed(seed)
    return nnx.Sequential(nnx.Linear(FEATURES, 16), nnx.Tanh(), nnx.Linear(16, CLASSES))


def make_optimizer(kind: str, model: nnx.Layer) -> nnx.optim.Optimizer:
    """SGD with momentum or Adam, the two optimizers the test checks."""
    if kind == "sgd":
        return nnx.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return nnx.optim.Adam(model.parameters(), lr=0.01)


def params(model: nnx.Layer) -> dict[str, np.ndarray]:
    """Every parameter as a host array, by name."""
    return {k: nnx.to_numpy(v) for k, v in model.state_dict().items()}


def train_epoch(model, optimizer, loader, after_first_step=None) -> int:
    """One epoch of the explicit loop (forward, backward, step); returns the steps taken."""
    loss_fn = nnx.CrossEntropyLoss()
    done = 0
    for xb, yb in loader:
        optimizer.zero_grad()
        loss_fn(model(xb), yb)
        model.backward(loss_fn.backward())
        optimizer.step()
        done += 1
        if done == 1 and after_first_step is not None:
            after_first_step()
    return done


def run_train(out: Path, comm) -> None:
    x, y = dataset()
    r = comm.rank
    model = build(100 + r)  # different on every rank until the broadcast
    before = params(model)
    dist.broadcast_parameters(model)
    np.savez(out / f"bcast_{r}.npz", **{f"before/{k}": v for k, v in before.items()},
             **{f"after/{k}": v for k, v in params(model).items()})  # fmt: skip

    report = {}
    for kind in ("sgd", "adam"):
        model = build(100 + r)
        dist.broadcast_parameters(model)
        opt = dist.DistributedOptimizer(make_optimizer(kind, model), bucket_mb=TINY_BUCKET_MB)
        loader = nnx.DataLoader(x, y, batch_size=PER_RANK, shuffle=True, seed=SHUFFLE_SEED,
                                comm=comm)  # fmt: skip
        first = []

        def after_first_step(opt=opt, first=first):
            first.append([id(b.buffer) for _, b in opt.buckets])
            comm.stats.reset()

        steps = train_epoch(model, opt, loader, after_first_step)
        buffers = first[0]
        report[kind] = {
            "steps": steps,
            "buckets": len(opt.buckets),
            "calls_after_first_step": comm.stats.calls,
            "buckets_reused": buffers == [id(b.buffer) for _, b in opt.buckets],
        }
        np.savez(out / f"{kind}_{r}.npz", **params(model))

    # checkpoint: 2 epochs straight through, saving after the first; then resume from it
    loss_fn = nnx.CrossEntropyLoss()

    def run(model, opt, first, epochs, on_epoch_end=None):
        loader = nnx.DataLoader(x, y, batch_size=PER_RANK, shuffle=True, seed=SHUFFLE_SEED,
                                comm=comm)  # fmt: skip
        return nnx.fit(model, loss_fn, opt, loader, epochs=epochs, initial_epoch=first,
                       progress=False, on_epoch_end=on_epoch_end)  # fmt: skip

    model = build(100 + r)
    dist.broadcast_parameters(model)
    opt = dist.DistributedOptimizer(make_optimizer("sgd", model))
    epochs_seen = []

    def save_first(epoch, record):
        epochs_seen.append(epoch)
        if epoch == 0:
            dist.save(out / "ckpt.npz", model, opt, epoch=epoch + 1)

    history = run(model, opt, 0, 2, save_first)
    np.savez(out / f"straight_{r}.npz", **params(model))
    resumed = build(200 + r)
    resumed_opt = dist.DistributedOptimizer(make_optimizer("sgd", resumed))
    meta = dist.load(out / "ckpt.npz", resumed, resumed_opt)
    plain = build(300 + r)  # nnx.load straight into a DistributedOptimizer restores the same state
    plain_opt = dist.DistributedOptimizer(make_optimizer("sgd", plain))
    nnx.load(out / "ckpt.npz", plain, plain_opt)
    report["plain_load_same_state"] = all(
        np.array_equal(nnx.to_numpy(a.state["momentum"]), nnx.to_numpy(b.state["momentum"]))
        for a, b in zip(resumed_opt.params, plain_opt.params, strict=True)
    )
    run(resumed, resumed_opt, int(meta["epoch"]), 1)
    np.savez(out / f"resumed_{r}.npz", **params(resumed))
    report["history"] = history.epochs
    report["on_epoch_end"] = epochs_seen
    (out / f"report_{r}.json").write_text(json.dumps(report))


def run_fault(out: Path, comm) -> None:
    x, y = dataset()
    model = build(100)
    opt = dist.DistributedOptimizer(make_optimizer("sgd", model))
    loader = nnx.DataLoader(x, y, batch_size=PER_RANK, shuffle=True, comm=comm)
    loss_fn = nnx.CrossEntropyLoss()
    for epoch in range(1000):  # rank 0 would wait for rank 1 forever without the abort
        for step, (xb, yb) in enumerate(loader):
            if comm.rank == 1 and epoch == 0 and step == 3:
                raise RuntimeError("injected failure on rank 1")
            opt.zero_grad()
            loss_fn(model(xb), yb)
            model.backward(loss_fn.backward())
            opt.step()
    (out / f"finished_{comm.rank}").write_text("the job should have been aborted")


if __name__ == "__main__":
    scenario, outdir = sys.argv[1], Path(sys.argv[2])
    backend = sys.argv[3] if len(sys.argv) > 3 else "numpy"
    transport = sys.argv[4] if len(sys.argv) > 4 else "auto"
    communicator = dist.init(backend, transport=transport)
    print(f"rank {communicator.rank}: {communicator!r} on {communicator.backend.spec}")
    {"train": run_train, "fault": run_fault}[scenario](outdir, communicator)

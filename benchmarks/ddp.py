"""The ``ddp`` case of benchmarks/run.py: the MLP epoch data-parallel over MPI.

    python benchmarks/run.py --cases ddp      # about a minute on 2 cores; needs nnx[mpi]

Four configurations of the same epoch (the MLP case: 784-256-128-10, SGD
momentum 0.9, 60000 Fashion-MNIST images), each in fresh processes, in
alternating rounds:

- 1 process x 1 BLAS thread, batch 128,
- 1 process x 2 BLAS threads, batch 128,
- 2 ranks (``mpiexec -n 2``) x 1 BLAS thread, per-rank batch 64: the same global
  batch of 128 as one process (strong scaling: the example's ``--distributed``),
- 2 ranks x 1 BLAS thread, per-rank batch 128, global batch 256: each rank does
  one process's work per step (weak scaling, the convention of Horovod's and
  PyTorch DDP's scaling figures).

Gradients are averaged by ``nnx.distributed.DistributedOptimizer`` (MPI, host
staging).  The speed-up target is checked on both 2-rank rows.

Each run trains one warm-up epoch and ``TIMED_EPOCHS`` timed ones (an epoch is
timed from a barrier to a barrier, so it ends when the slowest rank ends).
Reported: samples/s (median), speed-up and scaling efficiency against
1 x 1, and the time per step spent in the gradient allreduce (wall time inside
the collective, which includes waiting for the slower rank), next to the same
allreduce timed back to back after a barrier (its cost without that wait).

``python benchmarks/ddp.py worker --json PATH`` is one run (alone or under mpiexec).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TIMED_EPOCHS = 2
CONFIGS = [  # key, label, ranks, BLAS threads per rank, per-rank batch (None: 128 / ranks)
    ("1x1", "1 process x 1 thread", 1, 1, None),
    ("1x2", "1 process x 2 threads", 1, 2, None),
    ("2x1", "2 ranks x 1 thread, global batch 128 (64 per rank)", 2, 1, None),
    ("2x1w", "2 ranks x 1 thread, global batch 256 (128 per rank)", 2, 1, 128),
]
TARGET_SPEEDUP = 1.6  # 2 ranks against 1 process x 1 thread
TARGET_ALLREDUCE_SHARE = 0.10


def worker(json_path: str, quick: bool, distributed: bool, per_rank: int | None = None) -> None:
    """Train the MLP for a warm-up and TIMED_EPOCHS epochs; rank 0 writes the timings."""
    for p in (str(HERE), str(HERE.parent)):
        if p not in sys.path:
            sys.path.insert(0, p)
    import numpy as np
    import references as R

    import nnx

    comm = nnx.distributed.init("cpu") if distributed else None
    rank, size = (comm.rank, comm.size) if comm else (0, 1)
    cfg = R.config(quick)
    data = R.load_data(cfg)
    x = np.ascontiguousarray(data.x_train[rank::size])  # this rank's interleaved shard
    y = data.y_train[rank::size]
    per_rank = per_rank or cfg.mlp_batch // size
    nnx.manual_seed(cfg.seed)
    model = nnx.Sequential(
        nnx.Linear(784, 256), nnx.ReLU(), nnx.Linear(256, 128), nnx.ReLU(), nnx.Linear(128, 10)
    )
    model.requires_input_grad = False
    opt = nnx.optim.SGD(model.parameters(), lr=cfg.mlp_lr, momentum=cfg.momentum)
    if comm:
        opt = nnx.distributed.DistributedOptimizer(opt, comm)
    loss_fn = nnx.CrossEntropyLoss()
    X, Y = nnx.asarray(x), nnx.asarray(y)
    steps = R.batches(len(x), per_rank)
    epochs = []
    for epoch in range(1 + TIMED_EPOCHS):
        if comm:
            comm.barrier()
            comm.stats.reset()
        t0 = time.perf_counter()
        for i, j in steps:
            opt.zero_grad()
            loss_fn(model(X[i:j, ...]), Y[i:j])
            model.backward(loss_fn.backward())
            opt.step()
        if comm:
            comm.barrier()
        elapsed = time.perf_counter() - t0
        reduce_s = comm.sum_scalars([comm.stats.seconds])[0] / size if comm else 0.0
        if epoch > 0:
            epochs.append({"seconds": elapsed, "allreduce_s": reduce_s, "steps": len(steps)})
    alone_s = None
    if comm:  # the collective by itself, back to back: its cost without waiting for a slower rank
        buffer, send = opt.buckets[0][1].buffer.copy(), opt.buckets[0][1].send.copy()
        comm.barrier()
        t0 = time.perf_counter()
        for _ in range(50):
            comm.allreduce_host_(buffer, send=send)
        alone_s = (time.perf_counter() - t0) / 50
    model.eval()
    pred = np.argmax(nnx.to_numpy(model(nnx.asarray(data.x_test))), axis=1)
    accuracy = float(np.mean(pred == data.y_test))
    if rank == 0:
        samples = sum(min(j, len(x)) - i for i, j in steps) * size
        Path(json_path).write_text(json.dumps({"epochs": epochs, "samples": samples, "size": size,
                                               "accuracy": accuracy, "allreduce_alone_s": alone_s,
                                               "bucket_bytes": int(buffer.nbytes) if comm else 0}))  # fmt: skip


def _run(
    ranks: int, threads: int, per_rank: int | None, quick: bool, timeout: float
) -> dict[str, Any]:
    env = dict(os.environ)
    env.update(
        {v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ddp.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "worker", "--json", str(out)]
        cmd += ["--quick"] if quick else []
        cmd += ["--per-rank-batch", str(per_rank)] if per_rank else []
        if ranks > 1:
            from nnx.distributed.runtime import find_mpiexec

            cmd = [find_mpiexec() or "mpiexec", "-n", str(ranks), *cmd, "--distributed"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"{' '.join(cmd[:4])}... failed: {' | '.join(tail)}")
        return json.loads(out.read_text())


def missing() -> str:
    """Why the ddp case cannot run here ("" when it can)."""
    from nnx.distributed.runtime import mpi_missing

    why = mpi_missing()
    return f"skipped: {why}" if why else ""


def measure(quick: bool, rounds: int, log) -> dict[str, Any]:
    """Alternating rounds of the three configurations; medians, speed-ups, allreduce share."""
    why = missing()
    if why:
        return {"skipped": why}
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, *_ in CONFIGS}
    for r in range(rounds):
        k = r % len(CONFIGS)
        for key, label, ranks, threads, per_rank in CONFIGS[k:] + CONFIGS[:k]:
            runs[key].append(_run(ranks, threads, per_rank, quick, timeout=300))
            log(
                f"ddp round {r + 1}/{rounds}: {label}: {runs[key][-1]['epochs'][-1]['seconds']:.2f} s"
            )
    out: dict[str, Any] = {"rounds": rounds, "configs": {}}
    for key, label, ranks, _threads, _per_rank in CONFIGS:
        epochs = [e for run in runs[key] for e in run["epochs"]]
        seconds = statistics.median(e["seconds"] for e in epochs)
        samples = runs[key][0]["samples"]
        entry = {
            "label": label,
            "epoch_s": seconds,
            "samples_per_s": samples / seconds,
            "accuracy": statistics.median(run["accuracy"] for run in runs[key]),
        }
        if ranks > 1:
            per_step = [e["allreduce_s"] / e["steps"] for e in epochs]
            step_s = [e["seconds"] / e["steps"] for e in epochs]
            entry["allreduce_ms_per_step"] = 1e3 * statistics.median(per_step)
            entry["allreduce_alone_ms"] = 1e3 * statistics.median(
                run["allreduce_alone_s"] for run in runs[key]
            )
            entry["bucket_mb"] = runs[key][0]["bucket_bytes"] / 1e6
            entry["allreduce_share"] = statistics.median(
                a / s for a, s in zip(per_step, step_s, strict=True)
            )
        out["configs"][key] = entry
    base = out["configs"]["1x1"]["samples_per_s"]
    for entry in out["configs"].values():
        entry["speedup"] = entry["samples_per_s"] / base
    out["targets"] = []
    for key in ("2x1", "2x1w"):
        two = out["configs"][key]
        two["efficiency"] = two["speedup"] / 2
        what = "global batch 128" if key == "2x1" else "per-rank batch 128"
        out["targets"] += [
            {"target": f"{what}: >= {TARGET_SPEEDUP}x the samples/s of 1 x 1",
             "value": two["speedup"], "met": two["speedup"] >= TARGET_SPEEDUP},
            {"target": f"{what}: allreduce < {TARGET_ALLREDUCE_SHARE:.0%} of a step",
             "value": two["allreduce_share"],
             "met": two["allreduce_share"] < TARGET_ALLREDUCE_SHARE},
        ]  # fmt: skip
    return out


def table(result: dict[str, Any]) -> str:
    """The ddp rows as a markdown table."""
    if "skipped" in result:
        return f"| MLP epoch, data-parallel | {result['skipped']} |"
    lines = [
        "| MLP epoch, data-parallel | samples/s | x 1 process x 1 thread | scaling efficiency "
        "| allreduce per step | accuracy |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for e in result["configs"].values():
        eff = f"{e['efficiency']:.0%}" if "efficiency" in e else ""
        red = ""
        if "allreduce_ms_per_step" in e:
            red = (
                f"{e['allreduce_ms_per_step']:.3f} ms ({e['allreduce_share']:.1%} of a step; "
                f"{e['allreduce_alone_ms']:.3f} ms back to back for {e['bucket_mb']:.2f} MB)"
            )
        lines.append(
            f"| {e['label']} | {e['samples_per_s']:,.0f} | {e['speedup']:.2f}x | {eff} | {red} "
            f"| {e['accuracy']:.1%} |"
        )
    for t in result["targets"]:
        met = "yes" if t["met"] else "**no**"
        lines.append(f"\ntarget {t['target']}: {t['value']:.2f} -> {met}")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=["worker", "measure"])
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--distributed", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--per-rank-batch", type=int, default=None)
    a = ap.parse_args()
    if a.mode == "worker":
        worker(a.json, a.quick, a.distributed, a.per_rank_batch)
    else:
        res = measure(a.quick, a.rounds, lambda m: print(m, file=sys.stderr, flush=True))
        print(table(res))

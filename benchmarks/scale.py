"""The growth table (``python benchmarks/run.py --cases scale``): how nnx's step time grows.

MLP 784-H-10 (ReLU, softmax cross-entropy, SGD with momentum) one training step at
batch 32..1024 (H = 256) and hidden width H = 256..4096 (batch 128); the LeNet-like
CNN of the main benchmark at batch 16..256.  At every point nnx (numpy), PyTorch CPU
and the matmul floor (only the step's matmuls, preallocated, ``out=``) run a few
steps each, alternating, for a few rounds; the table shows the median per-step time
of nnx and the median of the per-round ratios.  Bounded: about a minute on 2 cores.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import references as R

import nnx

MLP_BATCHES = (32, 128, 512, 1024)
MLP_WIDTHS = (256, 1024, 4096)
CNN_BATCHES = (16, 64, 256)
ROUNDS = 5
TARGET_S = 0.05  # seconds of steps per implementation per round
#: pause before each timing: OpenBLAS's idle worker keeps spinning for ~0.1 s after a product
#: (10 jiffies of CPU during a 0.5 s sleep, measured here) and slows whatever runs next
SETTLE_S = 0.2


def _mlp_data(batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)
    return x, y


def nnx_mlp(batch: int, width: int) -> Callable[[], None]:
    """One nnx training step of 784-width-10 on a fixed batch."""
    x, y = _mlp_data(batch)
    nnx.manual_seed(0)
    with nnx.using("numpy"):
        model = nnx.Sequential(nnx.Linear(784, width), nnx.ReLU(), nnx.Linear(width, 10))
    model.requires_input_grad = False
    loss_fn, opt = nnx.CrossEntropyLoss(), nnx.optim.SGD(model.parameters(), 0.01, 0.9)

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()

    return step


def torch_mlp(batch: int, width: int) -> Callable[[], None]:
    """The same step in PyTorch CPU."""
    import torch

    x, y = (torch.from_numpy(a) for a in _mlp_data(batch))
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, width), torch.nn.ReLU(), torch.nn.Linear(width, 10)
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    return step


def floor_mlp(batch: int, width: int) -> Callable[[], None]:
    """Only the step's five matmuls, preallocated operands, ``out=``."""
    rng = np.random.default_rng(1)

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32)

    x, w1, w2 = r(batch, 784), r(width, 784), r(10, width)
    h, z, g1, g2, dh = r(batch, width), r(batch, 10), r(width, 784), r(10, width), r(batch, width)

    def step() -> None:
        np.matmul(x, w1.T, out=h)
        np.matmul(h, w2.T, out=z)
        np.matmul(z.T, h, out=g2)
        np.matmul(z, w2, out=dh)
        np.matmul(dh.T, x, out=g1)

    return step


def cnn_steps(batch: int, data: R.Data) -> dict[str, Callable[[], None]]:
    """One CNN step of each implementation (the main benchmark's runners, one step each)."""
    import nnx_cases as N

    cfg = dataclasses.replace(R.config(False), cnn_batch=batch, cnn_steps=1)
    runners = {
        "nnx": N.NnxCNN(data, cfg, "cpu"),
        "torch": R.TorchCNN(data, cfg, "cpu"),
        "floor": R.FloorCNN(data, cfg),
    }
    for r in runners.values():
        r.prepare()
    return {k: r.run for k, r in runners.items()}


def _time(step: Callable[[], None], n: int) -> float:
    time.sleep(SETTLE_S)  # let the last implementation's spinning BLAS/OpenMP threads idle
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def measure(steps: dict[str, Callable[[], None]], rounds: int) -> dict[str, Any]:
    """Per-step medians and the medians of per-round ratios nnx/floor and nnx/torch."""
    for s in steps.values():  # warm-up; also sizes the number of steps per round
        s()
        s()
    n = max(2, int(TARGET_S / max(_time(steps["nnx"], 2), 1e-6)))
    times: dict[str, list[float]] = {k: [] for k in steps}
    keys = list(steps)
    for r in range(rounds):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            times[k].append(_time(steps[k], n))
    out = {"nnx_step_s": statistics.median(times["nnx"]), "steps_per_round": n}
    for ref in ("floor", "torch"):
        out["x_" + ref] = statistics.median(
            a / b for a, b in zip(times["nnx"], times[ref], strict=True)
        )
    return out


def run(data: R.Data, rounds: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every point of the growth table."""
    points: list[tuple[str, dict[str, Callable[[], None]]]] = []
    for b in MLP_BATCHES:
        points.append((f"MLP 784-256-10, batch {b}", _mlp(b, 256)))
    for w in MLP_WIDTHS:
        if w != 256:
            points.append((f"MLP 784-{w}-10, batch 128", _mlp(128, w)))
    rows = []
    for label, steps in points:
        rows.append({"point": label, **measure(steps, rounds)})
        log(f"scale: {label}: {rows[-1]['x_floor']:.2f}x floor, {rows[-1]['x_torch']:.2f}x PyTorch")
    for b in CNN_BATCHES:
        label = f"CNN, batch {b}"
        rows.append({"point": label, **measure(cnn_steps(b, data), rounds)})
        log(f"scale: {label}: {rows[-1]['x_floor']:.2f}x floor, {rows[-1]['x_torch']:.2f}x PyTorch")
    return rows


def _mlp(batch: int, width: int) -> dict[str, Callable[[], None]]:
    return {
        "nnx": nnx_mlp(batch, width),
        "torch": torch_mlp(batch, width),
        "floor": floor_mlp(batch, width),
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The growth table in markdown."""
    lines = [
        "| point | nnx step | x matmul floor | x PyTorch CPU |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['point']} | {r['nnx_step_s'] * 1e3:.2f} ms | {r['x_floor']:.2f}x "
            f"| {r['x_torch']:.2f}x |"
        )
    return "\n".join(lines)

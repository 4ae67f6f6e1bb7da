"""Each kernel JitOps overrides, timed against NumpyOps at the sizes of the benchmark's cases.

    python benchmarks/kernels.py        # needs numba (pip install 'nnx[jit]'); a few seconds

Both tables run on the same arrays in alternating rounds; the table shows the
median time of each and their ratio (below 1: the numba loop is faster).  The
sizes are those of the CNN case (batch 64), the MLP's first layer (its bias with the
ReLU, forward and backward) and its SGD-momentum step over all 235,146 parameters,
and the XOR case's Adam step and loss.  The last two rows are whole training steps
of the run.py cases' models (random data), one numpy backend per table.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nnx  # noqa: E402
from nnx.backend import NumpyBackend, NumpyOps  # noqa: E402
from nnx.backend.jit import JitOps  # noqa: E402


def _mean_us(fn: Callable[[], object], reps: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1e6


def cases(ops: NumpyOps, rng: np.random.Generator) -> dict[str, Callable[[], object]]:
    """name -> a call of one kernel of ``ops`` on fixed arrays."""

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32)

    p1, p2 = np.maximum(r(64, 8, 24, 24), 0), np.maximum(r(64, 16, 8, 8), 0)
    d1, d2 = r(64, 8, 24, 24), r(64, 16, 8, 8)
    cols = r(200, 64 * 64)
    tiles, pooled = ops.maxpool_forward(p1, (2, 2), 12, 12)
    dpooled = r(64, 8, 12, 12)
    value, buf, grad = r(235146), r(235146), r(235146)
    logits, labels = r(128, 10), rng.integers(0, 10, 128)
    conv1, bias1 = r(8, 64 * 576), r(8)
    mu = np.float32(0.9)
    h1, h2 = r(64, 8, 24, 24), r(128, 256)
    y2, b2, dy2 = r(128, 256), r(256), r(128, 256)  # MLP's first layer: product, bias, grad
    w8, m8, v8, g8 = r(8, 2), r(8, 2), np.abs(r(8, 2)), r(8, 2)
    betas = tuple(np.asarray(b, np.float32) for b in (0.9, 0.1, 0.999, 0.001))
    z4, y4 = r(4, 1), (r(4, 1) > 0).astype(np.float32)
    return {
        "relu (64, 8, 24, 24)": lambda: ops.relu(h1),
        "relu (128, 256)": lambda: ops.relu(h2),
        "relu_backward (64, 8, 24, 24)": lambda: ops.relu_backward(d1, p1),
        "relu_backward (64, 16, 8, 8)": lambda: ops.relu_backward(d2, p2),
        "bias_relu (128, 256)": lambda: ops.bias_relu(y2, b2),  # in place: y2 drifts, harmless
        "relu_backward_sum0 (128, 256)": lambda: ops.relu_backward_sum0(dy2, h2),
        "maxpool_forward 2x2 (64, 8, 24, 24)": lambda: ops.maxpool_forward(p1, (2, 2), 12, 12),
        "maxpool_backward 2x2 (64, 8, 24, 24)": lambda: ops.maxpool_backward(
            tiles, pooled, dpooled, (2, 2), (64, 8, 24, 24)
        ),
        "conv_output conv1 (batch outer, 8 x 64 x 24 x 24)": lambda: ops.conv_output(
            conv1, bias1, (64, 8, 24, 24), False
        ),
        "col2im conv2 (8 -> 16, 5x5, batch 64)": lambda: ops.col2im(
            cols, (64, 8, 12, 12), (5, 5), (1, 1), (0, 0), True
        ),
        "cross_entropy (128, 10)": lambda: ops.cross_entropy(logits, labels, 0.0, 1 / 128),
        "first_bad_label (128 labels)": lambda: ops.first_bad_label(labels, 10),
        "momentum_step (235,146 parameters)": lambda: ops.momentum_step(value, buf, grad, mu, 1e-6),
        "adam_step (XOR's 8 x 2 weight)": lambda: ops.adam_step(w8, m8, v8, g8, betas, 1e-9, 1e-8),
        "bce_with_logits (XOR, 4 x 1)": lambda: ops.bce_with_logits(z4, y4, 0.25),
    }


def steps(backend: NumpyBackend, rng: np.random.Generator) -> dict[str, Callable[[], object]]:
    """name -> one training step (SGD momentum) of the MLP and the CNN case on ``backend``."""
    with nnx.using(backend):
        nnx.manual_seed(0)
        mlp = nnx.Sequential(
            nnx.Linear(784, 256), nnx.ReLU(), nnx.Linear(256, 128), nnx.ReLU(),
            nnx.Linear(128, 10),
        )  # fmt: skip
        cnn = nnx.Sequential(
            nnx.Conv2d(1, 8, 5), nnx.ReLU(), nnx.MaxPool2d(2),
            nnx.Conv2d(8, 16, 5), nnx.ReLU(), nnx.MaxPool2d(2),
            nnx.Flatten(), nnx.Linear(256, 10),
        )  # fmt: skip

    def step(model: nnx.Sequential, x: np.ndarray) -> Callable[[], object]:
        model.requires_input_grad = False
        opt = nnx.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        loss_fn = nnx.CrossEntropyLoss()
        xb = backend.asarray(x)
        yb = backend.asarray(rng.integers(0, 10, x.shape[0]), "int64")

        def run() -> None:
            opt.zero_grad()
            loss_fn(model(xb), yb)
            model.backward(loss_fn.backward())
            opt.step()

        with nnx.using(backend):  # the loss and the optimizer bind to this backend (its ops)
            run()  # (both own NumPy arrays: the first owner found is kept)
        return run

    return {
        "MLP step (batch 128)": step(mlp, rng.random((128, 784), dtype=np.float32)),
        "CNN step (batch 64)": step(cnn, rng.random((64, 1, 28, 28), dtype=np.float32)),
    }


class _Plain(NumpyBackend):
    """The numpy backend with the NumPy-only kernel table."""

    ops_class = NumpyOps  # type: ignore[assignment]


class _Jit(NumpyBackend):
    """The numpy backend with the numba kernel table."""

    ops_class = JitOps  # type: ignore[assignment]


def main(rounds: int = 7, reps: int = 100) -> None:
    """Print the table."""
    backends = {"NumpyOps": _Plain(), "JitOps": _Jit()}
    runs = {
        name: {**cases(b.ops, np.random.default_rng(0)), **steps(b, np.random.default_rng(0))}
        for name, b in backends.items()
    }
    times: dict[str, dict[str, list[float]]] = {n: {k: [] for k in runs[n]} for n in runs}
    for r in range(rounds):
        order = list(runs) if r % 2 == 0 else list(runs)[::-1]
        for name in order:
            for kernel, fn in runs[name].items():
                times[name][kernel].append(_mean_us(fn, reps))
    print("| kernel | NumpyOps | JitOps | JitOps / NumpyOps |")
    print("|---|---:|---:|---:|")
    for kernel in runs["NumpyOps"]:
        a, b = times["NumpyOps"][kernel], times["JitOps"][kernel]
        ratio = statistics.median(y / x for x, y in zip(a, b, strict=True))
        print(
            f"| {kernel} | {statistics.median(a):.0f} us | {statistics.median(b):.0f} us "
            f"| {ratio:.2f}x |"
        )


if __name__ == "__main__":
    main()

"""Train an MLP or a CNN on MNIST or Fashion-MNIST, on the CPU or a GPU.

python examples/mnist.py                                   # MLP on MNIST (downloads it once)
python examples/mnist.py --dataset fashion-mnist --model cnn --epochs 3
python examples/mnist.py --dataset fashion-mnist --model cnn-bn --epochs 8    # BatchNorm CNN
python examples/mnist.py --device cuda --save mnist.npz --plot curves.png
python examples/mnist.py --resume mnist.npz --epochs 2     # two more epochs
mpiexec -n 2 python examples/mnist.py --distributed        # data-parallel on 2 processes
python examples/mnist.py --dataset fashion-mnist --onnx fmnist.onnx   # for onnxruntime & co.

--resume continues the cosine learning-rate schedule as if the run had been
planned for (the checkpoint's epochs + --epochs) epochs from the start, so the
added epochs train at a non-zero rate that decays to 0 at their end.
Mistakes on the command line or in the data end with one line "error: ..." and
exit status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time

import numpy as np

import nnx
from nnx.atomic import atomic_write, check_target

LOADERS = {"mnist": nnx.datasets.mnist, "fashion-mnist": nnx.datasets.fashion_mnist}
# mean and standard deviation of the training pixels (scaled to [0, 1])
STATS = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}
DEFAULT_LR = {"mlp": 0.05, "cnn": 0.002, "cnn-bn": 0.003}
DEFAULT_BATCH = {"mlp": 128, "cnn": 64, "cnn-bn": 128}


def conv_bn(cin: int, cout: int) -> list[nnx.Layer]:
    """A 3x3 convolution (no bias: BatchNorm's shift replaces it), BatchNorm and ReLU."""
    return [nnx.Conv2d(cin, cout, 3, padding=1, bias=False), nnx.BatchNorm2d(cout), nnx.ReLU()]


def build(kind: str) -> nnx.Sequential:
    """The three models of this example."""
    if kind == "cnn-bn":  # conv-BN-ReLU blocks: one at 28x28, two at 14x14, then a BN hidden layer
        return nnx.Sequential(
            *conv_bn(1, 32), nnx.MaxPool2d(2),
            *conv_bn(32, 64), *conv_bn(64, 64), nnx.MaxPool2d(2), nnx.Dropout(0.25),
            nnx.Flatten(),
            nnx.Linear(64 * 7 * 7, 256, bias=False), nnx.BatchNorm1d(256), nnx.ReLU(),
            nnx.Dropout(0.4),
            nnx.Linear(256, 10),
        )  # fmt: skip
    if kind == "mlp":
        return nnx.Sequential(
            nnx.Linear(784, 256), nnx.ReLU(), nnx.Dropout(0.1),
            nnx.Linear(256, 128), nnx.ReLU(),
            nnx.Linear(128, 10),
        )  # fmt: skip
    return nnx.Sequential(
        nnx.Conv2d(1, 16, 5, padding=2), nnx.ReLU(), nnx.MaxPool2d(2),
        nnx.Conv2d(16, 32, 5, padding=2), nnx.ReLU(), nnx.MaxPool2d(2),
        nnx.Flatten(),
        nnx.Linear(32 * 7 * 7, 128), nnx.ReLU(), nnx.Dropout(0.25),
        nnx.Linear(128, 10),
    )  # fmt: skip


def optimizer_for(kind: str, model: nnx.Layer, lr: float) -> nnx.optim.Optimizer:
    """SGD with Nesterov momentum for the MLP, Adam for the CNN, AdamW for cnn-bn."""
    if kind == "mlp":
        return nnx.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    if kind == "cnn-bn":
        return nnx.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    return nnx.optim.Adam(model.parameters(), lr=lr)


class AugmentedLoader(nnx.DataLoader):
    """A DataLoader that flips half the images left-right and shifts each quarter of a
    batch by up to ``shift`` pixels, on the device with array-API operations only."""

    def __init__(self, *args, shift: int = 2, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.shift = shift
        self.random = None

    def _inputs(self, backend: nnx.Backend, host) -> object:
        x = super()._inputs(backend, host)
        xp = backend.xp
        if self.random is None:
            self.random = backend.rng(self.seed + 1)
        n = x.shape[0]
        flip = self.random.uniform((n, 1, 1, 1), "float32") < 0.5
        x = xp.where(flip, xp.flip(x, axis=3), x)
        if self.shift == 0:
            return x
        # zero in the raw image is the background: pad with its normalised value
        fill = -self.normalize[0] / self.normalize[1] if self.normalize else 0.0
        s = self.shift
        padded = _pad2d(xp, x, s, fill)
        offsets = self.random.uniform((4, 2), "float32")
        offsets = [int(v) for v in backend.to_numpy(offsets).ravel() * (2 * s + 1)]
        h, w = x.shape[2:]
        parts, step = [], -(-n // 4)
        for q in range(4):
            dy, dx = offsets[2 * q], offsets[2 * q + 1]
            parts.append(padded[q * step : (q + 1) * step, :, dy : dy + h, dx : dx + w])
        return xp.concat(parts, axis=0)


def _pad2d(xp, x, pad: int, fill: float):
    """``x`` (NCHW) with ``pad`` pixels of ``fill`` added on every side."""
    n, c, h, w = x.shape
    rows = xp.full((n, c, pad, w), fill, dtype=x.dtype, device=x.device)
    x = xp.concat([rows, x, rows], axis=2)
    cols = xp.full((n, c, h + 2 * pad, pad), fill, dtype=x.dtype, device=x.device)
    return xp.concat([cols, x, cols], axis=3)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


class UserError(Exception):
    """A mistake on the command line or in the data: reported as one line, exit status 2."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", choices=["mlp", "cnn", "cnn-bn"], default="mlp")
    p.add_argument("--dataset", choices=sorted(LOADERS), default="mnist")
    p.add_argument("--data-dir", default=None, help="folder with the four IDX files (.gz or raw)")
    p.add_argument(
        "--device",
        default=None,
        help="cpu, cuda, cuda:N, torch:cpu, ... (default: NNX_BACKEND or cpu)",
    )
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=3,
        help="epochs to train (with --resume: more epochs)",
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=None, help="default: 128 (mlp, cnn-bn), 64 (cnn)"
    )
    p.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help="default: 0.05 (mlp), 0.002 (cnn), 0.003 (cnn-bn)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--augment", type=int, default=None, metavar="PIXELS",
                   help="random flips and shifts of up to PIXELS (default: 0 for cnn-bn, "
                        "off otherwise; 0 flips only, -1 off)")  # fmt: skip
    p.add_argument("--save", metavar="PATH", help="write a checkpoint here after every epoch")
    p.add_argument(
        "--resume",
        metavar="PATH",
        help="continue from a checkpoint written by --save (same --model); the cosine\n"
        "schedule continues as if planned for saved + --epochs epochs",
    )
    p.add_argument("--onnx", metavar="PATH", help="export the trained model to ONNX (needs onnx)")
    p.add_argument("--plot", metavar="PNG", help="plot loss and accuracy curves (needs matplotlib)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel over the ranks of `mpiexec -n N` (needs nnx[mpi]); --batch-size\n"
        "stays the global batch, each rank takes batch-size / N of it",
    )
    return p.parse_args(argv)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with errors as one line "error: ..." (exit status 2), like the rest of main."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Train, evaluate after every epoch, print a report; return the final scores.

    User errors print one line ``error: ...`` on stderr and exit with status 2.
    """
    try:
        return run(argv)
    except (UserError, nnx.BackendError, nnx.datasets.DatasetError, nnx.CheckpointError,
            nnx.distributed.DistributedError, FileNotFoundError) as err:  # fmt: skip
        message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def open_device(spec: str | None) -> nnx.Backend:
    """The backend for --device, tried with one small array (a bad index fails here, not mid-fit)."""
    device = nnx.get_backend(spec)
    probe = device.asarray(np.zeros(1, dtype=np.float32), "float32")
    if not device.owns(probe):
        raise UserError(f"--device {spec}: arrays land on another device; give a valid index")
    return device


def run(argv: list[str] | None) -> dict[str, float]:
    """main() without the error reporting."""
    args = parse_args(argv)
    started = time.perf_counter()
    for flag, path in (("--save", args.save), ("--plot", args.plot), ("--onnx", args.onnx)):
        try:
            if path:
                check_target(path)  # before training, not after the first epoch
        except (IsADirectoryError, ValueError) as err:
            raise UserError(f"{flag}: {err}") from None
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise UserError("--plot needs matplotlib: pip install 'nnx[plot]'")
    comm = nnx.distributed.init(args.device) if args.distributed else None
    device = open_device(comm.backend if comm else args.device)
    load = LOADERS[args.dataset]
    x_train, y_train = load("train", root=args.data_dir)
    x_test, y_test = load("test", root=args.data_dir)
    shape = (784,) if args.model == "mlp" else (1, 28, 28)
    norm = STATS[args.dataset]
    batch_size = args.batch_size or DEFAULT_BATCH[args.model]
    per_rank = batch_size
    if comm:
        if batch_size % comm.size:
            raise UserError(f"--batch-size {batch_size} does not split over {comm.size} ranks")
        per_rank = batch_size // comm.size
    say = print if nnx.distributed.is_root() else lambda *a, **k: None  # rank 0 alone prints
    augment = args.augment if args.augment is not None else (0 if args.model == "cnn-bn" else -1)
    if augment >= 0 and args.model == "mlp":
        raise UserError("--augment needs an image model (--model cnn or cnn-bn)")
    loader = {"shift": augment} if augment >= 0 else {}
    train = (AugmentedLoader if augment >= 0 else nnx.DataLoader)(
        x_train, y_train, batch_size=per_rank, shuffle=True, seed=args.seed, shape=shape,
        normalize=norm, device=device, comm=comm, **loader,
    )  # fmt: skip
    test = nnx.DataLoader(
        x_test, y_test, batch_size=1000, shape=shape, normalize=norm, device=device
    )

    nnx.manual_seed(args.seed)
    with nnx.using(device):
        model = build(args.model)
    base_lr = args.lr or DEFAULT_LR[args.model]
    optimizer = optimizer_for(args.model, model, base_lr)
    if comm:
        nnx.distributed.broadcast_parameters(model)
        nnx.manual_seed(args.seed + comm.rank)  # same weights, different dropout masks per rank
        optimizer = nnx.distributed.DistributedOptimizer(optimizer, comm)
    first_epoch = 0
    if args.resume:
        load_checkpoint = nnx.distributed.load if comm else nnx.load  # every rank, then rank 0's
        try:
            meta = load_checkpoint(args.resume, model, optimizer)
        except nnx.CheckpointError as err:
            raise UserError(f"--resume: {err} (was it saved with another --model?)") from None
        first_epoch = int(meta["epoch"])
        optimizer.lr = base_lr  # the saved rate is where the old schedule ended (often 0)
        say(f"resumed {args.resume} at epoch {first_epoch} (saved on {meta['backend']})")
    # the cosine schedule spans every epoch of the run, the resumed ones included
    schedule = nnx.optim.CosineLR(optimizer, epochs=first_epoch + args.epochs)
    schedule.load_state_dict({"epoch": first_epoch, "base_lr": base_lr})

    ranks = f", {comm.size} ranks x batch {per_rank} ({comm.transport})" if comm else ""
    say(f"{args.model.upper()} on {args.dataset}, device {device.spec}{ranks}")
    say(model.summary((batch_size, *shape)))

    def report(epoch: int, record: dict[str, float]) -> None:
        say(
            f"epoch {epoch + 1:2d}  train loss {record['loss']:.4f}  train acc {record['accuracy']:.4f}"
            f"  test acc {record['val_accuracy']:.4f}  lr {record['lr']:.3g}  {record['time']:.1f} s"
            f"  ({record['samples_per_s']:,.0f} samples/s)",
            flush=True,
        )
        if args.save:
            save = nnx.distributed.save if comm else nnx.save  # rank 0 writes, the others wait
            save(args.save, model, optimizer, epoch=epoch + 1, dataset=args.dataset,
                 model_kind=args.model)  # fmt: skip

    history = nnx.fit(
        model, nnx.CrossEntropyLoss(label_smoothing=0.1 if args.model == "cnn-bn" else 0.0),
        optimizer, train,
        epochs=args.epochs, val_data=test, schedule=schedule, initial_epoch=first_epoch,
        progress=False if args.no_progress else None, on_epoch_end=report,
    )  # fmt: skip
    total = time.perf_counter() - started
    final = history.epochs[-1]
    say(f"test accuracy {final['val_accuracy']:.2%} after {len(history) + first_epoch} epochs; "
        f"total {total:.1f} s")  # fmt: skip
    if args.save:
        say(f"checkpoint: {args.save}")
    if args.onnx and nnx.distributed.is_root():
        nnx.export_onnx(model.eval(), args.onnx, input_shape=(None, *shape))
        say(
            f"ONNX model: {args.onnx} (input 'input' of shape (batch, {', '.join(map(str, shape))}))"
        )
    if args.plot and nnx.distributed.is_root():
        plot(history, args.plot)
    return {"test_accuracy": final["val_accuracy"], "seconds": total}


def plot(history: nnx.History, path: str) -> None:
    """Loss and accuracy per epoch, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = history["epoch"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, history["loss"], "o-", label="train")
    ax1.plot(epochs, history["val_loss"], "o-", label="test")
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax2.plot(epochs, history["accuracy"], "o-", label="train")
    ax2.plot(epochs, history["val_accuracy"], "o-", label="test")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax1, ax2):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(path) as f:  # an interrupted run never leaves half a picture
        fig.savefig(f, dpi=100, format="png")
    print(f"curves: {path}")


if __name__ == "__main__":
    main()

"""Train a 2-8-1 network on XOR and print the truth table it learned.

python examples/xor.py                       # numpy on the CPU
python examples/xor.py --device cuda         # CuPy on the first GPU
python examples/xor.py --device array_api_strict:device1
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import nnx

INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
TARGETS = np.array([[0], [1], [1], [0]], dtype=np.float32)


def train(device: str, seed: int, epochs: int, lr: float, hidden: int = 8, log_every: int = 100):
    """Train on the four XOR points; return (model, final loss, accuracy)."""
    nnx.manual_seed(seed)
    with nnx.using(device):
        model = nnx.Sequential(nnx.Linear(2, hidden), nnx.Tanh(), nnx.Linear(hidden, 1))
        x, y = nnx.asarray(INPUTS), nnx.asarray(TARGETS)
    model.requires_input_grad = False
    loss_fn = nnx.BCEWithLogitsLoss()
    optimizer = nnx.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(1, epochs + 1):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        optimizer.step()
        if log_every and (epoch % log_every == 0 or epoch == 1):
            print(f"epoch {epoch:5d}  loss {float(nnx.to_numpy(loss)):.6f}")
    model.eval()
    probs = 1.0 / (1.0 + np.exp(-nnx.to_numpy(model(x))))
    accuracy = float(np.mean((probs > 0.5) == (TARGETS > 0.5)))
    return model, float(nnx.to_numpy(loss)), accuracy, probs


def main() -> None:
    """Parse the command line, train, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--device",
        default=None,
        help="cpu, cuda, cuda:N, torch:cpu, ... (default: NNX_BACKEND or cpu)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()
    device = args.device or nnx.current().spec
    start = time.perf_counter()
    _, loss, accuracy, probs = train(device, args.seed, args.epochs, args.lr)
    elapsed = time.perf_counter() - start
    print(f"\ndevice {nnx.get_backend(device).spec}, {args.epochs} epochs in {elapsed:.2f} s")
    print(" x1  x2 | p(y=1)  class  target")
    for (a, b), p, t in zip(INPUTS, probs[:, 0], TARGETS[:, 0], strict=True):
        print(f"  {a:.0f}   {b:.0f} | {p:.4f}    {int(p > 0.5)}      {t:.0f}")
    print(f"accuracy {accuracy:.0%}, final loss {loss:.6f}")


if __name__ == "__main__":
    main()

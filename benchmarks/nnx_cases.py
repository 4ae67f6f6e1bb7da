"""The nnx side of each case: exactly the user-facing training step of the README.

Same runner interface as :mod:`references` (prepare / run / sync / evaluate),
same data order, same initial weights (``nnx.manual_seed(seed)`` draws the
weights :func:`references.linear_weights` draws), same hyper-parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from references import Config, Data, batches, cnn_weights

import nnx


def nnx_devices() -> dict[str, str]:
    """{"cpu": "", "cuda": "" or why not} for the devices nnx can run the rows on."""
    from nnx.backend import CupyBackend  # built in: asking it loads no plugin

    ok, why = CupyBackend.available()
    if not ok:
        gone = "no CUDA device" if "CUDA" in why or "not installed" in why else why
        return {"cpu": "", "cuda": f"skipped: {gone}"}
    return {"cpu": "", "cuda": ""}


class NnxRunner:
    """Common part: the backend, the data on its device, the timed loop's objects."""

    def __init__(self, data: Data, cfg: Config, device: str = "cpu") -> None:
        self.cfg = cfg
        self.backend = nnx.get_backend("numpy" if device == "cpu" else device)
        self.name = f"nnx ({self.backend.name})"
        put = self.backend.asarray
        self.x_train = put(data.x_train, "float32")
        self.y_train = put(data.y_train, "int64")
        self.x_test = put(data.x_test, "float32")
        self.y_test = data.y_test
        self.x_xor = put(data.x_xor, "float32")
        self.y_xor = put(data.y_xor, "float32")

    def sync(self) -> None:
        self.backend.synchronize()

    def _accuracy(self, logits: Any, labels: np.ndarray) -> float:
        pred = np.argmax(nnx.to_numpy(logits), axis=1)
        return float(np.mean(pred.astype(np.int64) == labels.astype(np.int64)))


class NnxMLP(NnxRunner):
    def prepare(self) -> None:
        with nnx.using(self.backend):
            nnx.manual_seed(self.cfg.seed)
            self.model = nnx.Sequential(
                nnx.Linear(784, 256), nnx.ReLU(), nnx.Linear(256, 128), nnx.ReLU(),
                nnx.Linear(128, 10),
            )  # fmt: skip
        self.model.requires_input_grad = False
        self.loss_fn = nnx.CrossEntropyLoss()
        self.opt = nnx.optim.SGD(
            self.model.parameters(), lr=self.cfg.mlp_lr, momentum=self.cfg.momentum
        )

    def run(self) -> None:
        model, loss_fn, opt = self.model, self.loss_fn, self.opt
        X, Y = self.x_train, self.y_train
        for i, j in batches(self.cfg.mlp_train, self.cfg.mlp_batch):
            opt.zero_grad()
            loss = loss_fn(model(X[i:j, ...]), Y[i:j])
            model.backward(loss_fn.backward())
            opt.step()
        self.loss = loss

    def evaluate(self) -> float:
        self.model.eval()
        try:
            return self._accuracy(self.model(self.x_test), self.y_test)
        finally:
            self.model.train()


class NnxCNN(NnxRunner):
    def prepare(self) -> None:
        with nnx.using(self.backend):
            self.model = nnx.Sequential(
                nnx.Conv2d(1, 8, 5), nnx.ReLU(), nnx.MaxPool2d(2),
                nnx.Conv2d(8, 16, 5), nnx.ReLU(), nnx.MaxPool2d(2),
                nnx.Flatten(), nnx.Linear(256, 10),
            )  # fmt: skip
        names = [name for name, _ in self.model.named_parameters()]
        self.model.load_state_dict(dict(zip(names, cnn_weights(self.cfg.seed), strict=True)))
        self.model.requires_input_grad = False
        self.loss_fn = nnx.CrossEntropyLoss()
        self.opt = nnx.optim.SGD(
            self.model.parameters(), lr=self.cfg.cnn_lr, momentum=self.cfg.momentum
        )
        self.images = self.backend.xp.reshape(self.x_train, (-1, 1, 28, 28))

    def run(self) -> None:
        model, loss_fn, opt = self.model, self.loss_fn, self.opt
        X, Y, bs = self.images, self.y_train, self.cfg.cnn_batch
        for step in range(self.cfg.cnn_steps):
            i = step * bs
            opt.zero_grad()
            loss = loss_fn(model(X[i : i + bs, ...]), Y[i : i + bs])
            model.backward(loss_fn.backward())
            opt.step()
        self.loss = loss

    def evaluate(self) -> float:
        m = self.cfg.cnn_test
        x = self.backend.xp.reshape(self.x_test[:m, ...], (-1, 1, 28, 28))
        self.model.eval()
        try:
            return self._accuracy(self.model(x), self.y_test[:m])
        finally:
            self.model.train()


class NnxXOR(NnxRunner):
    def prepare(self) -> None:
        with nnx.using(self.backend):
            nnx.manual_seed(self.cfg.seed)
            self.model = nnx.Sequential(nnx.Linear(2, 8), nnx.Tanh(), nnx.Linear(8, 1))
        self.model.requires_input_grad = False
        self.loss_fn = nnx.BCEWithLogitsLoss()
        self.opt = nnx.optim.Adam(self.model.parameters(), lr=self.cfg.xor_lr)

    def run(self) -> None:
        model, loss_fn, opt, x, y = self.model, self.loss_fn, self.opt, self.x_xor, self.y_xor
        for _ in range(self.cfg.xor_steps):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            model.backward(loss_fn.backward())
            opt.step()
        self.loss = loss

    def evaluate(self) -> float:
        z = nnx.to_numpy(self.model(self.x_xor))
        return float(np.mean((z > 0) == (nnx.to_numpy(self.y_xor) > 0.5)))


__all__ = ["NnxCNN", "NnxMLP", "NnxXOR", "nnx_devices"]

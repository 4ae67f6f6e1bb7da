"""The references nnx is measured against: bare NumPy, the matmul-only floor, PyTorch.

Every implementation of a case is a *runner* with the same four methods, so the
driver (``run.py``) can time them in alternating rounds:

``prepare()``  builds a fresh model from the shared seeded weights (untimed);
``run()``      the timed unit: one MLP epoch, N CNN steps, N XOR steps;
``sync()``     waits for queued device work (a no-op on the CPU);
``evaluate()`` the accuracy reached (untimed), so a broken reference cannot
               flatter anyone: the bare references must pass :data:`CHECKS`.

Every implementation starts from the *same* initial weights (drawn here with
NumPy, the way ``nnx.init.he_uniform`` draws them, and copied into the others),
sees the same batches in the same order and uses the same hyper-parameters, so
their accuracies must agree closely too.

The bare NumPy loops are written for speed the way a careful person writes them
by hand: float32 throughout, in-place elementwise work, gradients of the fused
softmax-cross-entropy, matmuls on transposed views (no copies), no classes.
The matmul floors run exactly the matmuls of one training step (same shapes,
same memory layouts) on preallocated operands with ``out=``: nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

# -- configuration ----------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Sizes of every case; :func:`config` gives the full run and the --quick smoke run."""

    mlp_train: int = 60000  # samples in the MLP epoch
    mlp_batch: int = 128
    mlp_lr: float = 0.05
    cnn_steps: int = 200
    cnn_batch: int = 64
    cnn_lr: float = 0.05
    cnn_test: int = 2000  # test images used for the CNN's accuracy
    xor_steps: int = 5000
    xor_lr: float = 0.05
    momentum: float = 0.9
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def config(quick: bool = False) -> Config:
    """The full benchmark, or a smoke run of a few seconds."""
    if quick:
        return Config(mlp_train=2048, cnn_steps=10, cnn_test=500, xor_steps=300)
    return Config()


#: Self-checks: the least accuracy each case must reach after its timed unit.
#: The bare references must pass them; for the others they are reported.
CHECKS = {
    ("mlp", False): 0.80,  # one epoch on 60000 images: test accuracy
    ("mlp", True): 0.55,  # --quick: one pass over 2048 images
    ("cnn", False): 0.65,  # 200 steps of 64 images: test accuracy (2000 test images)
    ("cnn", True): 0.20,  # --quick: 10 steps
    ("xor", False): 1.0,  # all four points right
    ("xor", True): 1.0,
}


class SelfCheckError(AssertionError):
    """A reference did not learn what it must: its timings would mean nothing."""


def check(case: str, quick: bool, accuracy: float, who: str) -> None:
    """Raise :class:`SelfCheckError` when ``accuracy`` is below the case's bar."""
    need = CHECKS[(case, quick)]
    if not accuracy >= need:
        raise SelfCheckError(
            f"{who} on {case}: accuracy {accuracy:.4f} < required {need:.2f}; "
            "the reference is broken and its timing is void"
        )


# -- data ------------------------------------------------------------------------------


def fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(uint8 images (N, 28, 28), uint8 labels (N,), where they came from)."""
    from nnx.datasets import fashion_mnist as load

    images, labels = load(split, download=False)
    return np.asarray(images), np.asarray(labels), "nnx.datasets.fashion_mnist"


@dataclass
class Data:
    """Host arrays shared by every implementation (float32 images in [0, 1], int64 labels)."""

    x_train: np.ndarray  # (N, 784) float32, in the order the epoch visits them
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray  # (M, 784)
    y_test: np.ndarray
    x_xor: np.ndarray  # (4, 2) float32
    y_xor: np.ndarray  # (4, 1) float32
    source: str

    def images(self, x: np.ndarray) -> np.ndarray:
        """(N, 784) -> (N, 1, 28, 28) view, for the CNN."""
        return x.reshape(-1, 1, 28, 28)


def load_data(cfg: Config) -> Data:
    """Fashion-MNIST train (shuffled once with the seed) and test, plus the XOR table."""
    xi, yi, source = fashion_mnist("train")
    xt, yt, _ = fashion_mnist("test")
    order = np.random.default_rng(cfg.seed).permutation(len(xi))
    n = max(cfg.mlp_train, cfg.cnn_steps * cfg.cnn_batch)
    order = order[:n]
    x_train = (xi[order].reshape(len(order), 784).astype(np.float32)) / np.float32(255)
    x_test = xt.reshape(len(xt), 784).astype(np.float32) / np.float32(255)
    return Data(
        x_train=np.ascontiguousarray(x_train),
        y_train=yi[order].astype(np.int64),
        x_test=x_test,
        y_test=yt.astype(np.int64),
        x_xor=np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32),
        y_xor=np.array([[0], [1], [1], [0]], np.float32),
        source=source,
    )


# -- shared initial weights -------------------------------------------------------------


def he_uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """Exactly ``nnx.init.he_uniform``: U(-b, b), b = sqrt(6 / fan_in), drawn then cast."""
    bound = math.sqrt(6.0 / fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def linear_weights(seed: int, sizes: list[int]) -> list[np.ndarray]:
    """[W1, b1, W2, b2, ...] with W (out, in), as ``nnx.manual_seed(seed)`` + nnx.Linear draw."""
    rng = np.random.default_rng(seed)
    out = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        out += [he_uniform(rng, (fan_out, fan_in), fan_in), np.zeros(fan_out, np.float32)]
    return out


def cnn_weights(seed: int) -> list[np.ndarray]:
    """[K1 (8,1,5,5), b1, K2 (16,8,5,5), b2, W3 (10,256), b3], He uniform, zero biases."""
    rng = np.random.default_rng(seed)
    return [
        he_uniform(rng, (8, 1, 5, 5), 25),
        np.zeros(8, np.float32),
        he_uniform(rng, (16, 8, 5, 5), 200),
        np.zeros(16, np.float32),
        he_uniform(rng, (10, 256), 256),
        np.zeros(10, np.float32),
    ]


MLP_SIZES = [784, 256, 128, 10]
XOR_SIZES = [2, 8, 1]


def batches(n: int, batch: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch of an epoch over n samples (the last may be short)."""
    return [(i, min(i + batch, n)) for i in range(0, n, batch)]


# -- bare NumPy: MLP ---------------------------------------------------------------------


class BareMLP:
    """784-256-128-10 ReLU MLP, softmax cross-entropy, SGD with momentum: NumPy only."""

    name = "bare NumPy"

    def __init__(self, data: Data, cfg: Config) -> None:
        self.data, self.cfg = data, cfg

    def prepare(self) -> None:
        self.params = linear_weights(self.cfg.seed, MLP_SIZES)
        self.moms = [np.zeros_like(p) for p in self.params]
        self.grads = [np.empty_like(p) for p in self.params]

    def sync(self) -> None:
        pass

    def run(self) -> None:
        w1, b1, w2, b2, w3, b3 = self.params
        g = self.grads
        lr, mu = np.float32(self.cfg.mlp_lr), np.float32(self.cfg.momentum)
        X, Y = self.data.x_train, self.data.y_train
        # sums as products with ones: one BLAS call, 2-4x faster than a reduction
        ones_n = np.ones((1, self.cfg.mlp_batch), np.float32)
        ones_c = np.ones((10, 1), np.float32)
        for i, j in batches(self.cfg.mlp_train, self.cfg.mlp_batch):
            x, y = X[i:j], Y[i:j]
            m = j - i
            ones = ones_n[:, :m]
            h1 = x @ w1.T
            h1 += b1
            np.maximum(h1, 0, out=h1)
            h2 = h1 @ w2.T
            h2 += b2
            np.maximum(h2, 0, out=h2)
            z = h2 @ w3.T
            z += b3
            # fused softmax cross-entropy: loss and d loss / d z = (softmax - onehot) / m
            z -= z.max(axis=1, keepdims=True)
            rows = np.arange(m)
            picked = z[rows, y]
            np.exp(z, out=z)
            total = z @ ones_c
            self.loss = np.mean(np.log(total[:, 0]) - picked)
            z /= total
            z[rows, y] -= 1
            z *= np.float32(1.0 / m)
            np.matmul(z.T, h2, out=g[4])
            np.matmul(ones, z, out=g[5][None])
            d2 = z @ w3
            d2 *= h2 > 0
            np.matmul(d2.T, h1, out=g[2])
            np.matmul(ones, d2, out=g[3][None])
            d1 = d2 @ w2
            d1 *= h1 > 0
            np.matmul(d1.T, x, out=g[0])
            np.matmul(ones, d1, out=g[1][None])
            for p, v, gp in zip(self.params, self.moms, g, strict=True):
                v *= mu
                v += gp
                p -= lr * v

    def evaluate(self) -> float:
        w1, b1, w2, b2, w3, b3 = self.params
        h = np.maximum(self.data.x_test @ w1.T + b1, 0)
        h = np.maximum(h @ w2.T + b2, 0)
        return float(np.mean(np.argmax(h @ w3.T + b3, axis=1) == self.data.y_test))


class FloorMLP:
    """Only the eight matmuls of each MLP step (3 forward, 3 weight grads, 2 input grads)."""

    name = "matmul floor"

    def __init__(self, data: Data, cfg: Config) -> None:
        self.data, self.cfg = data, cfg
        rng = np.random.default_rng(1)
        b = cfg.mlp_batch

        def r(*shape: int) -> np.ndarray:
            return rng.standard_normal(shape, dtype=np.float32)

        self.w = [r(256, 784), r(128, 256), r(10, 128)]
        self.h = [r(b, 256), r(b, 128), r(b, 10)]  # outputs of the forward matmuls
        self.d = [r(b, 256), r(b, 128)]  # input gradients of layers 2, 3
        self.gw = [np.empty_like(w) for w in self.w]

    def prepare(self) -> None:
        pass

    def sync(self) -> None:
        pass

    def run(self) -> None:
        (w1, w2, w3), (h1, h2, z), (d1, d2), (g1, g2, g3) = self.w, self.h, self.d, self.gw
        X = self.data.x_train
        mm = np.matmul
        for i, j in batches(self.cfg.mlp_train, self.cfg.mlp_batch):
            x, m = X[i:j], j - i
            a1, a2, az, e1, e2 = h1[:m], h2[:m], z[:m], d1[:m], d2[:m]
            mm(x, w1.T, out=a1)
            mm(a1, w2.T, out=a2)
            mm(a2, w3.T, out=az)
            mm(az.T, a2, out=g3)
            mm(az, w3, out=e2)
            mm(e2.T, a1, out=g2)
            mm(e2, w2, out=e1)
            mm(e1.T, x, out=g1)

    def evaluate(self) -> float | None:
        return None


# -- bare NumPy: CNN (im2col, NHWC inside) -----------------------------------------------


def _windows(x: np.ndarray, k: int) -> np.ndarray:
    """(N, H, W, C) -> (N, H-k+1, W-k+1, C, k, k) view of every k x k window."""
    return np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))


def _pool_forward(y: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """2x2 max-pool of (N, H, W, C): max of the four strided quadrants."""
    q = [y[:, 0::2, 0::2], y[:, 0::2, 1::2], y[:, 1::2, 0::2], y[:, 1::2, 1::2]]
    out = np.maximum(np.maximum(q[0], q[1]), np.maximum(q[2], q[3]))
    return out, q


def _pool_backward(dout: np.ndarray, out: np.ndarray, q: list[np.ndarray], shape) -> np.ndarray:
    """Route each window's gradient to its first maximum only (ties: as PyTorch)."""
    dy = np.zeros(shape, np.float32)
    slots = [(0, 0), (0, 1), (1, 0), (1, 1)]
    taken = np.zeros(out.shape, bool)
    for (a, b), qa in zip(slots, q, strict=True):
        hit = qa == out
        hit &= ~taken
        taken |= hit
        dy[:, a::2, b::2] = dout * hit
    return dy


class BareCNN:
    """conv5x5 1->8, ReLU, pool2, conv5x5 8->16, ReLU, pool2, linear 256->10: im2col in NumPy."""

    name = "bare NumPy"

    def __init__(self, data: Data, cfg: Config) -> None:
        self.data, self.cfg = data, cfg

    def prepare(self) -> None:
        k1, b1, k2, b2, w3, b3 = cnn_weights(self.cfg.seed)
        # matmul layouts: K1 (8, 25), K2 (16, 8*25) in (c, kh, kw) order, as the windows come
        self.params = [k1.reshape(8, 25), b1, k2.reshape(16, 200), b2, w3, b3]
        self.moms = [np.zeros_like(p) for p in self.params]

    def sync(self) -> None:
        pass

    def _forward(self, x: np.ndarray, keep: bool) -> tuple[np.ndarray, dict]:
        k1, b1, k2, b2, w3, b3 = self.params
        n = x.shape[0]
        c1 = _windows(x.reshape(n, 28, 28, 1), 5).reshape(n * 576, 25)  # copies
        y1 = c1 @ k1.T
        y1 += b1
        np.maximum(y1, 0, out=y1)
        y1 = y1.reshape(n, 24, 24, 8)
        p1, q1 = _pool_forward(y1)
        c2 = _windows(p1, 5).reshape(n * 64, 200)
        y2 = c2 @ k2.T
        y2 += b2
        np.maximum(y2, 0, out=y2)
        y2 = y2.reshape(n, 8, 8, 16)
        p2, q2 = _pool_forward(y2)
        f = p2.transpose(0, 3, 1, 2).reshape(n, 256)  # (C, H, W) order, as Flatten of NCHW
        z = f @ w3.T
        z += b3
        saved = dict(c1=c1, y1=y1, p1=p1, q1=q1, c2=c2, y2=y2, p2=p2, q2=q2, f=f) if keep else {}
        return z, saved

    def run(self) -> None:
        k1, b1, k2, b2, w3, b3 = self.params
        lr, mu = np.float32(self.cfg.cnn_lr), np.float32(self.cfg.momentum)
        X, Y = self.data.x_train, self.data.y_train
        bs = self.cfg.cnn_batch
        for step in range(self.cfg.cnn_steps):
            i = step * bs
            x, y = X[i : i + bs], Y[i : i + bs]
            n = x.shape[0]
            z, s = self._forward(x, True)
            z -= z.max(axis=1, keepdims=True)
            rows = np.arange(n)
            picked = z[rows, y]
            np.exp(z, out=z)
            total = z.sum(axis=1, keepdims=True)
            self.loss = np.mean(np.log(total[:, 0]) - picked)
            z /= total
            z[rows, y] -= 1
            z *= np.float32(1.0 / n)
            g = [None] * 6
            g[4], g[5] = z.T @ s["f"], z.sum(axis=0)
            df = (z @ w3).reshape(n, 16, 4, 4).transpose(0, 2, 3, 1)
            dy2 = _pool_backward(df, s["p2"], s["q2"], s["y2"].shape)
            dy2 *= s["y2"] > 0
            dy2 = dy2.reshape(n * 64, 16)
            g[2], g[3] = dy2.T @ s["c2"], dy2.sum(axis=0)
            dc2 = (dy2 @ k2).reshape(n, 8, 8, 8, 5, 5)
            dp1 = np.zeros((n, 12, 12, 8), np.float32)
            for a in range(5):  # col2im: add each window offset back
                for b in range(5):
                    dp1[:, a : a + 8, b : b + 8, :] += dc2[..., a, b]
            dy1 = _pool_backward(dp1, s["p1"], s["q1"], s["y1"].shape)
            dy1 *= s["y1"] > 0
            dy1 = dy1.reshape(n * 576, 8)
            g[0], g[1] = dy1.T @ s["c1"], dy1.sum(axis=0)
            for p, v, gp in zip(self.params, self.moms, g, strict=True):
                v *= mu
                v += gp
                p -= lr * v

    def evaluate(self) -> float:
        m = self.cfg.cnn_test
        z, _ = self._forward(self.data.x_test[:m], False)
        return float(np.mean(np.argmax(z, axis=1) == self.data.y_test[:m]))


class FloorCNN:
    """Only the matmuls of each im2col CNN step: 2 per conv-1, 3 per conv-2, 3 for the linear."""

    name = "matmul floor"

    def __init__(self, data: Data, cfg: Config) -> None:
        self.cfg = cfg
        rng = np.random.default_rng(1)
        n = cfg.cnn_batch

        def r(*shape: int) -> np.ndarray:
            return rng.standard_normal(shape, dtype=np.float32)

        self.a = dict(
            c1=r(n * 576, 25), k1=r(8, 25), y1=r(n * 576, 8), g1=r(8, 25),
            c2=r(n * 64, 200), k2=r(16, 200), y2=r(n * 64, 16), g2=r(16, 200), dc2=r(n * 64, 200),
            f=r(n, 256), w3=r(10, 256), z=r(n, 10), g3=r(10, 256), df=r(n, 256),
        )  # fmt: skip

    def prepare(self) -> None:
        pass

    def sync(self) -> None:
        pass

    def run(self) -> None:
        a, mm = self.a, np.matmul
        for _ in range(self.cfg.cnn_steps):
            mm(a["c1"], a["k1"].T, out=a["y1"])
            mm(a["c2"], a["k2"].T, out=a["y2"])
            mm(a["f"], a["w3"].T, out=a["z"])
            mm(a["z"].T, a["f"], out=a["g3"])
            mm(a["z"], a["w3"], out=a["df"])
            mm(a["y2"].T, a["c2"], out=a["g2"])
            mm(a["y2"], a["k2"], out=a["dc2"])
            mm(a["y1"].T, a["c1"], out=a["g1"])

    def evaluate(self) -> float | None:
        return None


# -- bare NumPy: XOR ------------------------------------------------------------------


class BareXOR:
    """2-8-1 Tanh network, BCE-with-logits, Adam, full batch: NumPy only."""

    name = "bare NumPy"

    def __init__(self, data: Data, cfg: Config) -> None:
        self.data, self.cfg = data, cfg

    def prepare(self) -> None:
        self.params = linear_weights(self.cfg.seed, XOR_SIZES)
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]

    def sync(self) -> None:
        pass

    def run(self) -> None:
        w1, b1, w2, b2 = self.params
        x, t = self.data.x_xor, self.data.y_xor
        f32 = np.float32  # float32 scalars: an op with a Python float converts it every call
        beta1, beta2, lr, eps = 0.9, 0.999, self.cfg.xor_lr, 1e-8
        b1m, c1, b2m, c2 = f32(beta1), f32(1 - beta1), f32(beta2), f32(1 - beta2)
        half, one, inv_n = f32(0.5), f32(1), f32(1.0 / t.size)
        params, ms, vs = self.params, self.m, self.v
        for step in range(1, self.cfg.xor_steps + 1):
            h = x @ w1.T
            h += b1
            np.tanh(h, out=h)
            z = h @ w2.T
            z += b2
            per = np.log1p(np.exp(-np.abs(z)))
            per += np.maximum(z, 0)
            per -= z * t
            self.loss = per.sum() * inv_n
            dz = np.tanh(z * half)  # sigmoid(z) = (1 + tanh(z / 2)) / 2
            dz *= half
            dz += half
            dz -= t
            dz *= inv_n
            gw2, gb2 = dz.T @ h, dz.sum(axis=0)
            dh = dz @ w2
            dh *= one - h * h
            grads = (dh.T @ x, dh.sum(axis=0), gw2, gb2)
            # bias corrections folded: lr / (1 - b1^t) * m / (sqrt(v) / c + eps)
            #                        = step_size * m / (sqrt(v) + eps * c), c = sqrt(1 - b2^t)
            root_c2 = math.sqrt(1 - beta2**step)
            step_size = f32(lr * root_c2 / (1 - beta1**step))
            eps_hat = f32(eps * root_c2)
            for p, m, v, g in zip(params, ms, vs, grads, strict=True):
                m *= b1m
                m += c1 * g
                v *= b2m
                v += c2 * (g * g)
                d = np.sqrt(v)
                d += eps_hat
                np.divide(m, d, out=d)
                d *= step_size
                p -= d

    def evaluate(self) -> float:
        w1, b1, w2, b2 = self.params
        z = np.tanh(self.data.x_xor @ w1.T + b1) @ w2.T + b2
        return float(np.mean((z > 0) == (self.data.y_xor > 0.5)))


class FloorXOR:
    """Only the five matmuls of each XOR step."""

    name = "matmul floor"

    def __init__(self, data: Data, cfg: Config) -> None:
        self.cfg, self.x = cfg, data.x_xor
        rng = np.random.default_rng(1)
        self.a = [
            rng.standard_normal(s, dtype=np.float32) for s in [(8, 2), (1, 8), (4, 8), (4, 1)]
        ]
        self.g = [np.empty((8, 2), np.float32), np.empty((1, 8), np.float32)]
        self.dh = np.empty((4, 8), np.float32)

    def prepare(self) -> None:
        pass

    def sync(self) -> None:
        pass

    def run(self) -> None:
        (w1, w2, h, z), (g1, g2), dh, x, mm = self.a, self.g, self.dh, self.x, np.matmul
        for _ in range(self.cfg.xor_steps):
            mm(x, w1.T, out=h)
            mm(h, w2.T, out=z)
            mm(z.T, h, out=g2)
            mm(z, w2, out=dh)
            mm(dh.T, x, out=g1)

    def evaluate(self) -> float | None:
        return None


# -- PyTorch ---------------------------------------------------------------------------


def torch_devices() -> dict[str, str]:
    """{"cpu": "", "cuda": ""} for the devices torch can use, else {device: why not}."""
    try:
        import torch
    except ImportError:
        return {"cpu": "skipped: torch not installed", "cuda": "skipped: torch not installed"}
    cuda = "" if torch.cuda.is_available() else "skipped: no CUDA device"
    return {"cpu": "", "cuda": cuda}


class TorchRunner:
    """Common part of the PyTorch runners: the idiomatic loop a PyTorch user writes."""

    name = "PyTorch"
    case = ""

    def __init__(self, data: Data, cfg: Config, device: str = "cpu") -> None:
        import torch

        self.torch, self.cfg, self.device = torch, cfg, torch.device(device)
        self.name = f"PyTorch {device.upper() if device == 'cpu' else 'CUDA'}"
        dev = self.device
        self.x_train = torch.from_numpy(data.x_train).to(dev)
        self.y_train = torch.from_numpy(data.y_train).to(dev)
        self.x_test = torch.from_numpy(data.x_test).to(dev)
        self.y_test = torch.from_numpy(data.y_test).to(dev)
        self.x_xor = torch.from_numpy(data.x_xor).to(dev)
        self.y_xor = torch.from_numpy(data.y_xor).to(dev)

    def _load(self, model: Any, weights: list[np.ndarray]) -> None:
        params = list(model.parameters())
        with self.torch.no_grad():
            for p, w in zip(params, weights, strict=True):
                p.copy_(self.torch.from_numpy(w))

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)


class TorchMLP(TorchRunner):
    def prepare(self) -> None:
        nn = self.torch.nn
        self.model = nn.Sequential(
            nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
        ).to(self.device)
        self._load(self.model, linear_weights(self.cfg.seed, MLP_SIZES))
        self.loss_fn = nn.CrossEntropyLoss()
        self.opt = self.torch.optim.SGD(
            self.model.parameters(), lr=self.cfg.mlp_lr, momentum=self.cfg.momentum
        )

    def run(self) -> None:
        model, loss_fn, opt = self.model, self.loss_fn, self.opt
        X, Y = self.x_train, self.y_train
        for i, j in batches(self.cfg.mlp_train, self.cfg.mlp_batch):
            opt.zero_grad()
            loss = loss_fn(model(X[i:j]), Y[i:j])
            loss.backward()
            opt.step()
        self.loss = loss

    def evaluate(self) -> float:
        with self.torch.no_grad():
            pred = self.model(self.x_test).argmax(1)
        return float((pred == self.y_test).float().mean())


class TorchCNN(TorchRunner):
    def prepare(self) -> None:
        nn = self.torch.nn
        self.model = nn.Sequential(
            nn.Conv2d(1, 8, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(256, 10),
        ).to(self.device)  # fmt: skip
        self._load(self.model, cnn_weights(self.cfg.seed))
        self.loss_fn = nn.CrossEntropyLoss()
        self.opt = self.torch.optim.SGD(
            self.model.parameters(), lr=self.cfg.cnn_lr, momentum=self.cfg.momentum
        )
        self.images = self.x_train.reshape(-1, 1, 28, 28)

    def run(self) -> None:
        model, loss_fn, opt = self.model, self.loss_fn, self.opt
        X, Y, bs = self.images, self.y_train, self.cfg.cnn_batch
        for step in range(self.cfg.cnn_steps):
            i = step * bs
            opt.zero_grad()
            loss = loss_fn(model(X[i : i + bs]), Y[i : i + bs])
            loss.backward()
            opt.step()
        self.loss = loss

    def evaluate(self) -> float:
        m = self.cfg.cnn_test
        with self.torch.no_grad():
            pred = self.model(self.x_test[:m].reshape(-1, 1, 28, 28)).argmax(1)
        return float((pred == self.y_test[:m]).float().mean())


class TorchXOR(TorchRunner):
    def prepare(self) -> None:
        nn = self.torch.nn
        self.model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).to(self.device)
        self._load(self.model, linear_weights(self.cfg.seed, XOR_SIZES))
        self.loss_fn = nn.BCEWithLogitsLoss()
        self.opt = self.torch.optim.Adam(self.model.parameters(), lr=self.cfg.xor_lr)

    def run(self) -> None:
        model, loss_fn, opt, x, y = self.model, self.loss_fn, self.opt, self.x_xor, self.y_xor
        for _ in range(self.cfg.xor_steps):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        self.loss = loss

    def evaluate(self) -> float:
        with self.torch.no_grad():
            z = self.model(self.x_xor)
        return float(((z > 0) == (self.y_xor > 0.5)).float().mean())

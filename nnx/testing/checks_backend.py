"""Checks of the backend itself and of every array nnx makes on it: device, dtype, randomness."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np  # host side only: reference values the backend under test must match

import nnx
from nnx import layers, losses, optim
from nnx.backend import Backend, describe, get_backend, manual_seed
from nnx.data import DataLoader
from nnx.layers.base import Layer, dtype_name
from nnx.testing.examples import (
    LAYER_EXAMPLES,
    LOSS_EXAMPLES,
    OPTIMIZER_EXAMPLES,
    SEED,
    layer_classes,
)
from nnx.testing.helpers import _check, _copy, _equal, _has_float64, _host, _model_arrays


@_check("available")
def _available(backend: Backend) -> None:
    for attr in ("name", "xp", "device"):
        if getattr(backend, attr, None) is None:
            raise AssertionError(f"backend.{attr} is not set")
    ok, why = type(backend).available()
    if not ok:
        raise AssertionError(f"available() says no ({why}) yet the backend started")
    again = get_backend(backend.spec)
    if not again.owns(backend.asarray(np.zeros(2))):
        raise AssertionError(f"spec {backend.spec!r} does not select the same device again")
    backend.synchronize()


@_check("arrays")
def _arrays(backend: Backend) -> None:
    host = _host((3, 4))
    x = backend.asarray(host)
    if not backend.owns(x):
        raise AssertionError(f"asarray(host) gave an {describe(x)}, not an array of {backend.spec}")
    back = backend.to_numpy(x)
    if not isinstance(back, np.ndarray):
        raise AssertionError(f"to_numpy returned {type(back).__name__}, not numpy.ndarray")
    _equal(back, host, "asarray -> to_numpy round trip of float32 data")
    names = ["float32", "int64", "int32", "bool"] + (["float64"] if _has_float64(backend) else [])
    for dtype in names:
        src = (np.arange(6).reshape(2, 3) % 2).astype(dtype)
        y = backend.asarray(src, dtype)
        if dtype_name(backend.xp, y.dtype) != dtype:
            raise AssertionError(f"asarray(..., {dtype!r}) gave dtype {y.dtype}")
        _equal(backend.to_numpy(y), src, f"{dtype} round trip")
    s = backend.asarray(2.5)
    if tuple(s.shape) != () or float(backend.to_numpy(s)) != 2.5:
        raise AssertionError(f"asarray(2.5) gave shape {tuple(s.shape)}")


def _all_arrays(backend: Backend) -> Iterator[tuple[str, Any, bool]]:
    """(what, array, must be float32) for every array nnx makes on ``backend``."""
    xp = backend.xp
    yield "backend.asarray(float64 host data)", backend.asarray(np.ones(3)), True
    yield "nnx.asarray(float64 host data)", nnx.asarray(np.ones(3)), True
    yield "generator.uniform", backend.generator.uniform((3,)), True
    yield "generator.normal", backend.generator.normal((3,)), True
    classes = layer_classes()
    for name, examples in LAYER_EXAMPLES.items():
        if name not in classes:
            continue
        for i, (make, shape) in enumerate(examples):
            tag = f"{name}#{i}" if len(examples) > 1 else name
            layer = make(layers)
            x = backend.asarray(_host(shape))
            y = layer(x)
            yield f"{tag} output", y, True
            dy = backend.asarray(_host(tuple(y.shape), 2))
            yield f"{tag} input gradient", layer.backward(dy), True
            for pname, p in layer.named_parameters():
                yield f"{tag} {pname} value", p.value, True
                yield f"{tag} {pname}.grad", p.grad, True
            for bname, owner, attr in layer.named_buffers():
                buf = getattr(owner, attr)
                yield f"{tag} buffer {bname}", buf, xp.isdtype(buf.dtype, "real floating")
            layer.eval()
            yield f"{tag} eval output", layer(x), True
    for name, examples in LOSS_EXAMPLES.items():
        for i, (make, shape, target) in enumerate(examples):
            tag = f"{name}#{i}"
            t = target(np.random.default_rng(SEED), shape)
            t = backend.asarray(t, "float32" if t.dtype.kind == "f" else "int64")
            fn = make()
            yield f"{tag} value", fn(backend.asarray(_host(shape)), t), True
            yield f"{tag} gradient", fn.backward(), True
    images = np.random.default_rng(SEED).integers(0, 256, (8, 1, 4, 4), dtype=np.uint8)
    labels = np.arange(8) % 3
    loader = DataLoader(images, labels, batch_size=4, shuffle=True, device=backend, scale=1 / 255)
    for i, (xb, yb) in enumerate(loader):
        yield f"DataLoader batch {i} inputs", xb, True
        yield f"DataLoader batch {i} labels", yb, False
    for cname, (cls, kwargs) in OPTIMIZER_EXAMPLES.items():
        model = layers.Linear(3, 2)
        opt = getattr(optim, cls)(model.parameters(), **kwargs)
        _train_linear(model, opt, backend)
        for aname, a in _model_arrays(model):
            yield f"{cname} {aname}", a, True


def _train_linear(model: Layer, opt: optim.Optimizer, backend: Backend) -> None:
    x, t = backend.asarray(_host((4, 3))), backend.asarray(_host((4, 2), 3))
    loss_fn = losses.MSELoss()
    for _ in range(2):
        opt.zero_grad()
        loss_fn(model(x), t)
        model.backward(loss_fn.backward())
        opt.step()


def _collect(backend: Backend) -> tuple[list[tuple[str, Any, bool]], str]:
    """The arrays of :func:`_all_arrays` up to the first error, and that error ("" if none)."""
    items: list[tuple[str, Any, bool]] = []
    try:
        for item in _all_arrays(backend):
            if item[1] is not None:
                items.append(item)
    except Exception as err:
        last = items[-1][0] if items else "the start"
        return items, f"; then, after {last}: {type(err).__name__}: {err}"
    return items, ""


def _fail_list(what: str, wrong: list[str], error: str) -> None:
    if wrong:
        shown = "; ".join(wrong[:8]) + (" ..." if len(wrong) > 8 else "")
        raise AssertionError(f"{len(wrong)} arrays {what}: {shown}{error}")
    if error:
        raise AssertionError(f"could not check every array{error}")


@_check("device")
def _device(backend: Backend) -> None:
    items, error = _collect(backend)
    wrong = [f"{what} is an {describe(a)}" for what, a, _ in items if not backend.owns(a)]
    _fail_list(f"are not on {backend.spec} ({backend.device})", wrong, error)


@_check("float32")
def _float32(backend: Backend) -> None:
    items, error = _collect(backend)
    names = [(what, dtype_name(backend.xp, a.dtype)) for what, a, must in items if must]
    _fail_list("are not float32", [f"{w} is {n}" for w, n in names if n != "float32"], error)


@_check("rng")
def _rng(backend: Backend) -> None:
    def draws(g: Any) -> list[np.ndarray]:
        return [_copy(g.uniform((1000,))), _copy(g.normal((1000,))), _copy(g.uniform((7, 3)))]

    first, again, other = draws(backend.rng(5)), draws(backend.rng(5)), draws(backend.rng(6))
    for kind, a, b, c in zip(
        ("uniform", "normal", "uniform (7, 3)"), first, again, other, strict=True
    ):
        if not np.array_equal(a, b):
            raise AssertionError(f"the same seed gave different {kind} draws")
        if np.array_equal(a, c):
            raise AssertionError(f"seeds 5 and 6 gave the same {kind} draws")
    u, n = first[0], first[1]
    if u.dtype != np.float32 or n.dtype != np.float32:
        raise AssertionError(f"draws are {u.dtype}/{n.dtype}, not float32")
    if u.min() < 0 or u.max() >= 1 or abs(u.mean() - 0.5) > 0.05:
        raise AssertionError(f"uniform draws are not U[0, 1): min {u.min()}, mean {u.mean()}")
    if abs(n.mean()) > 0.15 or abs(n.std() - 1) > 0.15:
        raise AssertionError(f"normal draws have mean {n.mean():.3f}, std {n.std():.3f}")
    if first[2].shape != (7, 3):
        raise AssertionError(f"uniform((7, 3)) has shape {first[2].shape}")
    g = backend.rng(5)
    g.uniform((10,))
    state = g.get_state()
    try:
        state = json.loads(json.dumps(state))
    except TypeError as err:
        raise AssertionError(f"get_state() is not JSON-serialisable: {err}") from None
    a = _copy(g.uniform((10,)))
    g.uniform((10,))
    g.set_state(state)
    if not np.array_equal(a, _copy(g.uniform((10,)))):
        raise AssertionError("set_state(get_state()) does not replay the same draws")
    manual_seed(11)
    a = _copy(backend.generator.normal((10,)))
    manual_seed(11)
    if not np.array_equal(a, _copy(backend.generator.normal((10,)))):
        raise AssertionError("nnx.manual_seed(s) does not make backend.generator reproducible")


@_check("dropout_mask")
def _dropout_mask(backend: Backend) -> None:
    x = backend.asarray(np.ones((64, 64), dtype=np.float32))

    def mask(seed: int) -> np.ndarray:
        manual_seed(seed)
        return _copy(layers.Dropout(0.5)(x)) != 0

    a, b, c = mask(3), mask(3), mask(4)
    if not np.array_equal(a, b):
        raise AssertionError("the same seed gave different dropout masks")
    if np.array_equal(a, c):
        raise AssertionError("seeds 3 and 4 gave the same dropout mask")
    if not 0.4 < a.mean() < 0.6:
        raise AssertionError(f"Dropout(0.5) kept {a.mean():.1%} of the units")

"""The backend conformance kit: what an array library must pass to be an nnx backend.

    from nnx.testing import assert_conformant, check_backend
    print(check_backend("torch:cpu"))          # a report, one line per failing check
    assert_conformant("torch:cpu")             # AssertionError naming every failing check

Checks (``check_names()`` lists them; ``only=`` selects some, glob patterns allowed):

``available``        the spec starts, ``available()`` says yes, ``synchronize()`` runs
``arrays``           ``asarray``/``to_numpy`` round trips keep values and named dtypes
``device``           every array a layer (forward, backward, parameter gradients), a loss,
                     an optimizer's state, the generator, ``nnx.asarray`` or a DataLoader
                     makes is owned by the backend: its library on its device
``float32``          ... and is float32 when nothing else was asked for
``rng``              same seed -> same uniform/normal draws, another seed -> others;
                     get_state() is JSON-serialisable and set_state() replays
``dropout_mask``     the same seed gives the same dropout mask, another seed another
``gradcheck:<Name>`` finite differences (float64) of every layer in ``nnx.layers`` and
                     every loss in ``nnx.losses``, from the example tables below
``optim:<config>``   three steps of every optimizer configuration match numpy's
``fast_paths``       optional backend kernels (``FAST_PATHS``) match the portable code
``xor``              XOR trains to 100% accuracy
``checkpoint``       saved on the backend, loaded on numpy: identical weights, optimizer
                     state and (to float32 rounding) predictions
``to_roundtrip``     ``model.to(backend)`` then ``.to("numpy")`` gives back identical weights,
                     gradients, optimizer state and predictions; training continues on the
                     backend as it would on numpy

A check that does not apply (no Dropout layer, no fast path) is *skipped*, not
failed.  Every check reseeds nnx (``nnx.manual_seed``) before it runs.
"""

from __future__ import annotations

import fnmatch
import inspect
import itertools
import json
import os
import tempfile
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np  # host side only: reference values the backend under test must match

import nnx
from nnx import layers, losses, optim
from nnx.backend import Backend, describe, get_backend, manual_seed, to_numpy, using
from nnx.gradcheck import gradcheck
from nnx.layers.base import Layer, Parameter, dtype_name

__all__ = [
    "FAST_PATHS",
    "LAYER_EXAMPLES",
    "LOSS_EXAMPLES",
    "OPTIMIZER_EXAMPLES",
    "CheckResult",
    "ConformanceReport",
    "assert_conformant",
    "check_backend",
    "check_names",
]

SEED = 1234
#: float32 agreement between two backends running the same float32 computation
RTOL, ATOL = 1e-5, 1e-6


class Skip(Exception):
    """Raised by a check that does not apply to this backend or this nnx."""


# -- example tables ----------------------------------------------------------------------
# name in nnx.layers -> (constructor(nnx) -> Layer, input shape), one or more per layer.
# A layer that exists in nnx.layers.__all__ but has no row here is reported as skipped
# (and tests/test_conformance.py fails until the row is added).

LAYER_EXAMPLES: dict[str, list[tuple[Callable[[Any], Layer], tuple[int, ...]]]] = {
    "Identity": [(lambda m: m.Identity(), (3, 4))],
    "ReLU": [(lambda m: m.ReLU(), (3, 4))],
    "LeakyReLU": [(lambda m: m.LeakyReLU(0.1), (3, 4))],
    "Sigmoid": [(lambda m: m.Sigmoid(), (3, 4))],
    "Tanh": [(lambda m: m.Tanh(), (3, 4))],
    "GELU": [(lambda m: m.GELU(), (3, 4))],
    "Softmax": [(lambda m: m.Softmax(), (3, 4)), (lambda m: m.Softmax(axis=0), (3, 4))],
    "Linear": [(lambda m: m.Linear(4, 3), (5, 4)), (lambda m: m.Linear(4, 2, bias=False), (3, 4))],
    "Sequential": [(lambda m: m.Sequential(m.Linear(4, 5), m.Tanh(), m.Linear(5, 3)), (2, 4))],
    "Flatten": [(lambda m: m.Flatten(), (2, 3, 2, 2))],
    "Dropout": [(lambda m: m.Dropout(0.5), (4, 6))],
    "BatchNorm1d": [(lambda m: m.BatchNorm1d(4), (6, 4))],
    "BatchNorm2d": [(lambda m: m.BatchNorm2d(3), (4, 3, 3, 3))],
    "Conv2d": [
        (lambda m: m.Conv2d(2, 3, 3, padding=1), (2, 2, 5, 5)),
        (lambda m: m.Conv2d(2, 2, (3, 2), stride=2), (2, 2, 5, 6)),
    ],
    "MaxPool2d": [(lambda m: m.MaxPool2d(2), (2, 2, 4, 4))],
    "AvgPool2d": [(lambda m: m.AvgPool2d(2), (2, 2, 4, 4))],
}

# name in nnx.losses -> (constructor, prediction shape, target maker(rng, shape))
LOSS_EXAMPLES: dict[str, list[tuple[Callable[[], Any], tuple[int, ...], Callable]]] = {
    "MSELoss": [
        (lambda: losses.MSELoss(), (4, 3), lambda r, s: r.standard_normal(s)),
        (lambda: losses.MSELoss("sum"), (4, 3), lambda r, s: r.standard_normal(s)),
    ],
    "BCEWithLogitsLoss": [
        (lambda: losses.BCEWithLogitsLoss(), (4, 3), lambda r, s: r.random(s)),
        (lambda: losses.BCEWithLogitsLoss("sum"), (4, 1), lambda r, s: r.integers(0, 2, s) * 1.0),
    ],
    "CrossEntropyLoss": [
        (lambda: losses.CrossEntropyLoss(), (5, 4), lambda r, s: r.integers(0, s[1], s[0])),
        (
            lambda: losses.CrossEntropyLoss("sum", label_smoothing=0.1),
            (5, 4),
            lambda r, s: r.integers(0, s[1], s[0]),
        ),
    ],
}

# check name -> (class name in nnx.optim, keyword arguments)
OPTIMIZER_EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "SGD": ("SGD", {"lr": 0.1}),
    "SGD(momentum)": ("SGD", {"lr": 0.1, "momentum": 0.9}),
    "SGD(nesterov)": ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    "SGD(weight_decay)": ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.05}),
    "Adam": ("Adam", {"lr": 0.01}),
    "Adam(weight_decay)": ("Adam", {"lr": 0.01, "weight_decay": 0.05}),
    "AdamW": ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    "RMSprop": ("RMSprop", {"lr": 0.01}),
    "RMSprop(momentum)": ("RMSprop", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01}),
}


def layer_classes() -> dict[str, type]:
    """Every concrete layer class exported by ``nnx.layers`` (name -> class)."""
    out = {}
    for name in layers.__all__:
        obj = getattr(layers, name, None)
        if isinstance(obj, type) and issubclass(obj, Layer) and obj is not Layer:
            out[name] = obj
    return out


def loss_classes() -> dict[str, type]:
    """Every concrete loss class in ``nnx.losses``."""
    return {
        name: obj
        for name, obj in vars(losses).items()
        if isinstance(obj, type) and issubclass(obj, losses.Loss) and obj is not losses.Loss
    }


def optimizer_classes() -> dict[str, type]:
    """Every concrete optimizer class in ``nnx.optim``."""
    return {
        name: obj
        for name, obj in vars(optim).items()
        if isinstance(obj, type) and issubclass(obj, optim.Optimizer) and obj is not optim.Optimizer
    }


# -- the report ------------------------------------------------------------------------------


@dataclass
class CheckResult:
    """One check: ``status`` is "pass", "fail" or "skip"; ``message`` says why."""

    name: str
    status: str
    message: str = ""

    @property
    def ok(self) -> bool:
        """True unless the check failed."""
        return self.status != "fail"


@dataclass
class ConformanceReport:
    """Every check's result for one backend spec."""

    spec: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return all(r.ok for r in self.results)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def failures(self) -> list[CheckResult]:
        """The failed checks."""
        return [r for r in self.results if r.status == "fail"]

    @property
    def failed(self) -> list[str]:
        """Names of the failed checks."""
        return [r.name for r in self.failures]

    def __getitem__(self, name: str) -> CheckResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no check {name!r} in this report; checks: {self.names()}")

    def names(self) -> list[str]:
        """Names of every check that ran."""
        return [r.name for r in self.results]

    def summary(self) -> str:
        """ "torch:cpu: 40 passed, 1 failed, 2 skipped"."""
        count = {s: sum(r.status == s for r in self.results) for s in ("pass", "fail", "skip")}
        return (
            f"nnx conformance of {self.spec}: {count['pass']} passed, {count['fail']} failed, "
            f"{count['skip']} skipped"
        )

    def __str__(self) -> str:
        lines = [self.summary()]
        for r in self.results:
            if r.status != "pass":
                lines.append(f"  {r.status.upper():4s} {r.name}: {r.message}")
        return "\n".join(lines)


# -- helpers ------------------------------------------------------------------------------------


def _host(shape: tuple[int, ...], seed: int = SEED) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _copy(x: Any) -> np.ndarray:
    """A host copy that later in-place updates of ``x`` cannot change."""
    return np.array(to_numpy(x), copy=True)


def _close(actual: Any, expected: Any, what: str, rtol: float = RTOL, atol: float = ATOL) -> None:
    a, e = to_numpy(actual), to_numpy(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {a.shape}, expected {e.shape}")
    if not np.allclose(a, e, rtol=rtol, atol=atol):
        diff = float(np.max(np.abs(a.astype(np.float64) - e.astype(np.float64))))
        raise AssertionError(
            f"{what} differs from numpy by up to {diff:.3g} (rtol {rtol:g}, atol {atol:g})"
        )


def _equal(actual: Any, expected: Any, what: str) -> None:
    a, e = to_numpy(actual), to_numpy(expected)
    if a.dtype != e.dtype or a.shape != e.shape or not np.array_equal(a, e):
        raise AssertionError(
            f"{what} is not identical: {a.dtype}{a.shape} vs {e.dtype}{e.shape}, "
            f"max difference {float(np.max(np.abs(a - e))) if a.shape == e.shape else '-'}"
        )


def _has_float64(backend: Backend) -> bool:
    try:
        return dtype_name(backend.xp, backend.asarray(np.zeros(1), "float64").dtype) == "float64"
    except Exception:
        return False


def _mlp() -> Layer:
    """The small model of the checkpoint / to() / xor checks (BatchNorm1d when nnx has it)."""
    norm = [layers.BatchNorm1d(8)] if hasattr(layers, "BatchNorm1d") else []
    return layers.Sequential(layers.Linear(6, 8), *norm, layers.ReLU(), layers.Linear(8, 3))


def _train(model: Layer, opt: optim.Optimizer, backend: Backend, steps: int) -> Any:
    x = backend.asarray(_host((10, 6), 7))
    y = backend.asarray(np.random.default_rng(8).integers(0, 3, 10), "int64")
    loss_fn = losses.CrossEntropyLoss()
    loss = None
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()
    return loss


def _predict(model: Layer, backend: Backend) -> np.ndarray:
    was = model.training
    model.eval()
    try:
        return _copy(model(backend.asarray(_host((10, 6), 9))))
    finally:
        model.train(was)


def _model_arrays(model: Layer) -> Iterator[tuple[str, Any]]:
    """(name, array) for every parameter value, gradient, optimizer state and buffer."""
    for name, p in model.named_parameters():
        yield name, p.value
        if p.grad is not None:
            yield f"{name}.grad", p.grad
        for k, v in p.state.items():
            yield f"{name}.state[{k!r}]", v
    for name, owner, attr in model.named_buffers():
        yield name, getattr(owner, attr)


# -- the checks ---------------------------------------------------------------------------------

_STATIC: dict[str, Callable[[Backend], None]] = {}


def _check(name: str) -> Callable:
    def register(fn: Callable[[Backend], None]) -> Callable[[Backend], None]:
        _STATIC[name] = fn
        return fn

    return register


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
    try:
        from nnx.data import DataLoader
    except ImportError:  # an nnx without its data module: nothing to check there
        DataLoader = None  # noqa: N806
    if DataLoader is not None:
        images = np.random.default_rng(SEED).integers(0, 256, (8, 1, 4, 4), dtype=np.uint8)
        labels = np.arange(8) % 3
        loader = DataLoader(
            images, labels, batch_size=4, shuffle=True, device=backend, scale=1 / 255
        )
        for i, (xb, yb) in enumerate(loader):
            yield f"DataLoader batch {i} inputs", xb, True
            yield f"DataLoader batch {i} labels", yb, False
    for cname, (cls, kwargs) in OPTIMIZER_EXAMPLES.items():
        if not hasattr(optim, cls):
            continue
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
    if not hasattr(layers, "Dropout"):
        raise Skip("nnx.layers has no Dropout")
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


def _gradcheck_layer(name: str) -> Callable[[Backend], None]:
    def run(backend: Backend) -> None:
        if name not in LAYER_EXAMPLES:
            raise Skip(f"no example for {name} in nnx.testing.LAYER_EXAMPLES; add one")
        float64 = _has_float64(backend)
        opts = {} if float64 else {"dtype": "float32", "eps": 1e-2, "tolerance": 1e-2}
        for i, (make, shape) in enumerate(LAYER_EXAMPLES[name]):
            layer = make(layers)
            result = gradcheck(layer, _host(shape, SEED + i), seed=SEED, **opts)
            if not result.ok:
                raise AssertionError(f"example {i} ({layer.label()}): {result}")

    return run


def _gradcheck_loss(name: str) -> Callable[[Backend], None]:
    def run(backend: Backend) -> None:
        if name not in LOSS_EXAMPLES:
            raise Skip(f"no example for {name} in nnx.testing.LOSS_EXAMPLES; add one")
        float64 = _has_float64(backend)
        opts = {} if float64 else {"dtype": "float32", "eps": 1e-2, "tolerance": 1e-2}
        for i, (make, shape, target) in enumerate(LOSS_EXAMPLES[name]):
            fn = make()
            t = target(np.random.default_rng(SEED + i), shape)
            result = gradcheck(fn, _host(shape, SEED + i), t, seed=SEED, **opts)
            if not result.ok:
                raise AssertionError(f"example {i} ({fn!r}): {result}")

    return run


def _optim(config: str) -> Callable[[Backend], None]:
    cls_name, kwargs = OPTIMIZER_EXAMPLES[config]

    def steps(backend: Backend) -> list[np.ndarray]:
        params = [
            Parameter(backend.asarray(_host((3, 4), 1)), "w"),
            Parameter(backend.asarray(_host((4,), 2)), "b"),
        ]
        opt = getattr(optim, cls_name)(params, **kwargs)
        for step in range(3):
            for i, p in enumerate(params):
                p.grad = backend.asarray(_host(p.shape, 10 * step + i))
            opt.step()
        return [_copy(p.value) for p in params] + [
            _copy(v) for p in params for _, v in sorted(p.state.items())
        ]

    def run(backend: Backend) -> None:
        if not hasattr(optim, cls_name):
            raise Skip(f"nnx.optim has no {cls_name}")
        got = steps(backend)
        with using("numpy") as ref:
            want = steps(ref)
        if len(got) != len(want):
            raise AssertionError(f"{len(got) - 2} state arrays, numpy has {len(want) - 2}")
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            what = ["weight", "bias"][i] if i < 2 else f"state array {i - 2}"
            _close(g, w, f"{what} after 3 steps")

    return run


#: the optional backend kernels core code looks up, each checked against the portable code
FAST_PATHS = ("im2col", "col2im", "col2im_matmul", "transpose2d")


@_check("fast_paths")
def _fast_paths(backend: Backend) -> None:
    from nnx.layers import conv

    fast = [n for n in FAST_PATHS if callable(getattr(backend, n, None))]
    if not fast:
        raise Skip(f"the backend offers none of the fast paths {', '.join(FAST_PATHS)}")
    xp = backend.xp
    if "transpose2d" in fast:  # rows of 512 float32 (2 KiB) take the staged path on numpy
        for shape in ((3, 5), (4, 512)):
            a = backend.asarray(_host(shape))
            _close(backend.transpose2d(a), a.T, f"transpose2d{shape}", 0, 0)
    # every column layout core code may ask for (passed positionally, as Conv2d does)
    layouts = [()]
    if "batch_last" in inspect.signature(conv.im2col).parameters:
        layouts = [(True,), (False,)]
    cases = [((2, 3, 6, 5), (3, 3), (1, 1), (1, 1)), ((2, 2, 7, 6), (3, 2), (2, 3), (0, 1))]
    for (shape, k, s, p), layout in itertools.product(cases, layouts):
        what = f"{shape}, kernel {k}, stride {s}, padding {p}" + (
            f", batch_last={layout[0]}" if layout else ""
        )
        x = backend.asarray(_host(shape))
        cols = conv.im2col(xp, x, k, s, p, *layout)
        if "im2col" in fast:
            _close(backend.im2col(x, k, s, p, *layout), cols, f"im2col({what})", 0, 0)
        dcols = backend.asarray(_host(tuple(cols.shape), 4))
        want = conv.col2im(xp, dcols, shape, k, s, p, *layout)
        if "col2im" in fast:
            got = backend.col2im(dcols, shape, k, s, p, *layout)
            _close(got, want, f"col2im({what})")
        if "col2im_matmul" in fast:  # col2im(wt @ dy) for a conv with 4 output channels
            wt = backend.asarray(_host((cols.shape[0], 4), 5))
            dy = backend.asarray(_host((4, cols.shape[1]), 6))
            want = conv.col2im(xp, wt @ dy, shape, k, s, p, *layout)
            got = backend.col2im_matmul(wt, dy, shape, k, s, p, *layout)
            _close(got, want, f"col2im_matmul({what})")


@_check("xor")
def _xor(backend: Backend) -> None:
    x = backend.asarray(np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32))
    t = np.array([[0], [1], [1], [0]], dtype=np.float32)
    model = layers.Sequential(layers.Linear(2, 8), layers.Tanh(), layers.Linear(8, 1))
    opt, loss_fn = optim.Adam(model.parameters(), lr=0.05), losses.BCEWithLogitsLoss()
    y = backend.asarray(t)
    for _ in range(500):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()
    pred = to_numpy(model.eval()(x)) > 0
    accuracy = float(np.mean(pred == (t > 0.5)))
    if accuracy < 1.0:
        raise AssertionError(
            f"XOR reached {accuracy:.0%} accuracy after 500 Adam steps (loss {float(to_numpy(loss)):.4f})"
        )


@_check("checkpoint")
def _checkpoint(backend: Backend) -> None:
    model = _mlp()
    opt = optim.Adam(model.parameters(), lr=0.01)
    _train(model, opt, backend, 3)
    pred = _predict(model, backend)
    saved = {name: _copy(a) for name, a in _model_arrays(model) if ".grad" not in name}
    with tempfile.TemporaryDirectory() as tmp, using("numpy") as ref:
        manual_seed(SEED + 1)  # different initial weights: loading must overwrite them all
        twin = _mlp()
        twin_opt = optim.Adam(twin.parameters(), lr=0.5)
        if hasattr(nnx, "save") and hasattr(nnx, "load"):
            path = os.path.join(tmp, "model.npz")
            with using(backend):
                nnx.save(path, model, optimizer=opt, note="conformance")
            nnx.load(path, twin, optimizer=twin_opt)
        else:  # nnx.io not there yet: the state_dict round trip through a file
            path = os.path.join(tmp, "model.npz")
            np.savez(path, **{k: to_numpy(v) for k, v in model.state_dict().items()})
            with np.load(path) as f:
                twin.load_state_dict({k: f[k] for k in f.files})
            twin_opt.load_state_dict(json.loads(json.dumps(_jsonable(opt.state_dict()))))
        for name, a in _model_arrays(twin):
            if ".grad" in name:
                continue
            if not ref.owns(a):
                raise AssertionError(f"{name} was loaded as an {describe(a)}, not a numpy array")
            if name not in saved:
                raise AssertionError(f"{name} is in the loaded model only")
            _equal(a, saved[name], f"{name} loaded on numpy")
        if twin_opt.steps != opt.steps or twin_opt.lr != opt.lr:
            raise AssertionError(f"optimizer steps/lr {twin_opt.steps}/{twin_opt.lr} not restored")
        _close(_predict(twin, ref), pred, "predictions of the model loaded on numpy")


def _jsonable(state: Any) -> Any:
    if isinstance(state, dict):
        return {k: _jsonable(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return [_jsonable(v) for v in state]
    if isinstance(state, np.ndarray):
        return state.tolist()
    return state


@_check("to_roundtrip")
def _to_roundtrip(backend: Backend) -> None:
    def trained() -> tuple[Layer, optim.Optimizer]:
        with using("numpy") as ref:
            manual_seed(SEED)
            model = _mlp()
            opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            _train(model, opt, ref, 2)
        return model, opt

    ref = get_backend("numpy")
    model, opt = trained()
    twin, twin_opt = trained()
    before = {name: _copy(a) for name, a in _model_arrays(model)}
    pred = _predict(model, ref)
    model.to(backend)
    moved = dict(_model_arrays(model))
    if set(moved) != set(before):
        raise AssertionError(f"to() changed the arrays: {sorted(set(moved) ^ set(before))}")
    for name, a in moved.items():
        if not backend.owns(a):
            raise AssertionError(f"after model.to({backend.spec!r}), {name} is an {describe(a)}")
        _equal(a, before[name], f"{name} after model.to({backend.spec!r})")
    if any(layer.backend is not backend for layer in model.layers()):
        raise AssertionError("some layers still name another backend after to()")
    _close(_predict(model, backend), pred, f"predictions on {backend.spec}")
    model.to("numpy")
    for name, a in _model_arrays(model):
        _equal(a, before[name], f"{name} after the round trip to {backend.spec} and back")
    _equal(_predict(model, ref), pred, "predictions after the round trip")
    model.to(backend)  # training continues where it stopped, momentum included
    with using(backend):
        _train(model, opt, backend, 1)
    with using("numpy"):
        _train(twin, twin_opt, ref, 1)
    for (name, a), (_, b) in zip(_model_arrays(model), _model_arrays(twin), strict=True):
        _close(a, b, f"{name} after one more step on {backend.spec}")


# -- running ------------------------------------------------------------------------------------


def _checks() -> dict[str, Callable[[Backend], None]]:
    """Every check by name, in the order they run."""
    out: dict[str, Callable[[Backend], None]] = {}
    for name in ("available", "arrays", "device", "float32", "rng", "dropout_mask"):
        out[name] = _STATIC[name]
    for name in sorted(layer_classes()):
        out[f"gradcheck:{name}"] = _gradcheck_layer(name)
    for name in sorted(loss_classes()):
        out[f"gradcheck:{name}"] = _gradcheck_loss(name)
    for config in OPTIMIZER_EXAMPLES:
        out[f"optim:{config}"] = _optim(config)
    missing = sorted(set(optimizer_classes()) - {c for c, _ in OPTIMIZER_EXAMPLES.values()})
    for name in missing:
        out[f"optim:{name}"] = _no_example("OPTIMIZER_EXAMPLES", name)
    for name in ("fast_paths", "xor", "checkpoint", "to_roundtrip"):
        out[name] = _STATIC[name]
    return out


def _no_example(table: str, name: str) -> Callable[[Backend], None]:
    def run(backend: Backend) -> None:
        raise Skip(f"no example for {name} in nnx.testing.{table}; add one")

    return run


def check_names() -> list[str]:
    """Names of every check the kit runs against this version of nnx."""
    return list(_checks())


def missing_examples() -> list[str]:
    """Layers, losses and optimizers of nnx that the example tables do not cover yet."""
    used = {c for c, _ in OPTIMIZER_EXAMPLES.values()}
    return (
        [f"layer {n}" for n in sorted(layer_classes()) if n not in LAYER_EXAMPLES]
        + [f"loss {n}" for n in sorted(loss_classes()) if n not in LOSS_EXAMPLES]
        + [f"optimizer {n}" for n in sorted(optimizer_classes()) if n not in used]
    )


def check_backend(spec: str | Backend, only: Iterable[str] | None = None) -> ConformanceReport:
    """Run the conformance checks (all, or those matching ``only``) against ``spec``."""
    checks = _checks()
    if only is not None:
        patterns = [only] if isinstance(only, str) else list(only)
        unknown = [p for p in patterns if not fnmatch.filter(checks, p)]
        if unknown:
            raise ValueError(f"no conformance check matches {unknown}; checks: {list(checks)}")
        checks = {n: f for n, f in checks.items() if any(fnmatch.fnmatch(n, p) for p in patterns)}
    label = spec if isinstance(spec, str) else spec.spec
    report = ConformanceReport(label)
    try:
        backend = get_backend(spec)
    except Exception as err:
        why = f"the backend does not start: {type(err).__name__}: {err}"
        report.results.append(CheckResult("available", "fail", why))
        report.results += [CheckResult(n, "skip", why) for n in checks if n != "available"]
        return report
    report.spec = backend.spec
    for name, fn in checks.items():
        report.results.append(_run_one(name, fn, backend))
    return report


def _run_one(name: str, fn: Callable[[Backend], None], backend: Backend) -> CheckResult:
    generators = {b: b.generator for b in (backend, get_backend("numpy"))}
    try:
        with using(backend):
            manual_seed(SEED)
            fn(backend)
        return CheckResult(name, "pass")
    except Skip as why:
        return CheckResult(name, "skip", str(why))
    except AssertionError as err:
        return CheckResult(name, "fail", str(err) or _where(err))
    except Exception as err:
        return CheckResult(name, "fail", f"{type(err).__name__}: {err} ({_where(err)})")
    finally:
        for b, g in generators.items():
            b.generator = g


def _where(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return "no traceback"
    f = frames[-1]
    return f"raised at {os.path.basename(f.filename)}:{f.lineno} in {f.name}"


def assert_conformant(spec: str | Backend, only: Iterable[str] | None = None) -> ConformanceReport:
    """Run :func:`check_backend`; raise AssertionError listing every failing check."""
    report = check_backend(spec, only)
    if not report.ok:
        lines = [report.summary()] + [f"  {r.name}: {r.message}" for r in report.failures]
        raise AssertionError("\n".join(lines))
    return report

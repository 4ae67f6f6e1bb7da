"""Optimizers against hand-written NumPy references (and torch.optim when installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import dtype_name, host

import nnx
from nnx.optim import SGD, Adam, AdamW, CosineLR, RMSprop, StepLR, WarmupLR
from nnx.testing import assert_within, ulp_bound
from nnx.testing.helpers import _has_float64

W0 = np.array([0.5, -1.0, 2.0], np.float32)
GRADS = [np.array(g, np.float32) for g in ([0.1, -0.2, 0.3], [0.4, 0.0, -0.1], [-0.3, 0.2, 0.2])]


def reference(kind: str, **h) -> np.ndarray:
    """Bare NumPy (float64) versions of the update rules, as PyTorch documents them."""
    w = W0.astype(np.float64)
    m = np.zeros(3)
    v = np.zeros(3)
    buf = None
    for t, g in enumerate(GRADS, start=1):
        g = g.astype(np.float64)
        lr, wd = h.get("lr"), h.get("weight_decay", 0.0)
        if kind == "sgd":
            g = g + wd * w
            mu = h.get("momentum", 0.0)
            if mu:
                buf = g.copy() if buf is None else mu * buf + g
                g = g + mu * buf if h.get("nesterov") else buf
            w = w - lr * g
        elif kind in ("adam", "adamw"):
            b1, b2 = h.get("betas", (0.9, 0.999))
            if kind == "adamw":
                w = w - lr * wd * w
            else:
                g = g + wd * w
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            mhat, vhat = m / (1 - b1**t), v / (1 - b2**t)
            w = w - lr * mhat / (np.sqrt(vhat) + h.get("eps", 1e-8) * 1.0)
            # PyTorch's eps sits outside the bias-corrected sqrt: sqrt(v)/sqrt(c2) + eps
        elif kind == "rmsprop":
            g = g + wd * w
            alpha, eps = h.get("alpha", 0.99), h.get("eps", 1e-8)
            v = alpha * v + (1 - alpha) * g * g
            mu = h.get("momentum", 0.0)
            if mu:
                m = mu * m + g / (np.sqrt(v) + eps)
                w = w - lr * m
            else:
                w = w - lr * g / (np.sqrt(v) + eps)
    return w


CASES = [
    ("sgd", SGD, dict(lr=0.1)),
    ("sgd", SGD, dict(lr=0.1, momentum=0.9)),
    ("sgd", SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("sgd", SGD, dict(lr=0.1, momentum=0.5, weight_decay=0.01)),
    ("adam", Adam, dict(lr=0.01)),
    ("adam", Adam, dict(lr=0.01, weight_decay=0.1)),
    ("adamw", AdamW, dict(lr=0.01, weight_decay=0.1)),
    ("rmsprop", RMSprop, dict(lr=0.01)),
    ("rmsprop", RMSprop, dict(lr=0.01, momentum=0.9, weight_decay=0.01)),
]


def step_bound(want, steps: int = len(GRADS), dtype: str = "float32"):
    """Each step rounds a few elementwise operations at the size of the weights (and of
    updates no larger than them here): 8 roundings per step of ``|W0| + |want|``."""
    size = np.abs(np.resize(W0, np.shape(want))).astype(np.float64) + np.abs(want)
    return ulp_bound(size, ulps=8 * steps, dtype=dtype)


def run(optimizer_cls, hyper):
    p = nnx.Parameter(nnx.asarray(W0.copy()), "w")
    opt = optimizer_cls([p], **hyper)
    for g in GRADS:
        opt.zero_grad()
        p.accumulate(nnx.asarray(g))
        opt.step()
    return p, opt


@pytest.mark.parametrize("kind, cls, hyper", CASES, ids=[f"{c[1].__name__}-{c[2]}" for c in CASES])
def test_update_matches_reference(backend, kind, cls, hyper):
    p, opt = run(cls, hyper)
    want = reference(kind, **hyper)
    assert_within(p.value, want, step_bound(want), f"{cls.__name__} after {len(GRADS)} steps")
    assert dtype_name(p.value) == "float32"
    assert all(backend.owns(s) and dtype_name(s) == "float32" for s in p.state.values())


@pytest.mark.parametrize("kind, cls, hyper", CASES, ids=[f"{c[1].__name__}-{c[2]}" for c in CASES])
def test_update_matches_torch(kind, cls, hyper):
    torch = pytest.importorskip("torch")
    with nnx.using("numpy"):
        p, _ = run(cls, hyper)
    w = torch.tensor(W0, requires_grad=True)
    torch_cls = getattr(torch.optim, cls.__name__)
    topt = torch_cls([w], **hyper)
    for g in GRADS:
        topt.zero_grad()
        w.grad = torch.tensor(g)
        topt.step()
    want = w.detach().numpy()
    assert_within(p.value, want, step_bound(want), f"{cls.__name__} against torch.optim")


def test_adam_reference_is_independent():
    # one hand-computed Adam step: m = 0.1 g, v = 0.001 g^2, mhat = g, vhat = g^2
    # so the step is lr * g / (|g| + eps) = lr * sign(g)
    p = nnx.Parameter(nnx.asarray(W0.copy(), device="numpy"), "w")
    opt = Adam([p], lr=0.01)
    p.accumulate(nnx.asarray(GRADS[0], device="numpy"))
    opt.step()
    np.testing.assert_allclose(p.value, W0 - 0.01 * np.sign(GRADS[0]), rtol=1e-5)


def test_state_dict_round_trip_continues_identically(backend):
    p1, opt1 = run(Adam, dict(lr=0.01))
    p2 = nnx.Parameter(nnx.asarray(host(p1.value)), "w")
    opt2 = Adam([p2], lr=0.5)
    opt2.load_state_dict(opt1.state_dict())
    assert opt2.lr == 0.01 and opt2.steps == 3
    for p, opt in ((p1, opt1), (p2, opt2)):
        p.grad = nnx.asarray(GRADS[0])
        opt.step()
    np.testing.assert_array_equal(host(p1.value), host(p2.value))
    with pytest.raises(ValueError, match="is for Adam, not SGD"):
        SGD([p2]).load_state_dict(opt1.state_dict())


def test_optimizer_state_moves_with_the_model(backend):
    with nnx.using("numpy"):
        model = nnx.Sequential(nnx.Linear(2, 2))
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(np.ones((1, 2), np.float32))
    model.backward(np.ones((1, 2), np.float32))
    opt.step()
    model.to(backend)
    assert all(backend.owns(s) for p in model.parameters() for s in p.state.values())
    model(nnx.asarray(np.ones((1, 2), np.float32)))
    model.backward(nnx.asarray(np.ones((1, 2), np.float32)))
    opt.step()  # mixing devices here would raise on array_api_strict


def test_bad_arguments():
    with pytest.raises(ValueError, match="no parameters"):
        SGD([])
    with pytest.raises(ValueError, match="learning rate"):
        SGD(nnx.Linear(1, 1).parameters(), lr=0)
    with pytest.raises(ValueError, match="Nesterov"):
        SGD(nnx.Linear(1, 1).parameters(), nesterov=True)


def test_schedules():
    opt = SGD(nnx.Linear(1, 1).parameters(), lr=1.0)
    step = StepLR(opt, step_size=2, gamma=0.5)
    assert [opt.lr] + [step.step() for _ in range(4)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    opt = SGD(nnx.Linear(1, 1).parameters(), lr=1.0)
    cosine = CosineLR(opt, epochs=4)
    lrs = [opt.lr] + [cosine.step() for _ in range(4)]
    assert lrs == pytest.approx(
        [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 - math.cos(math.pi / 4)), 0.0]
    )
    opt = SGD(nnx.Linear(1, 1).parameters(), lr=1.0)
    warm = WarmupLR(opt, warmup=2, start_factor=0.5)
    assert [opt.lr] + [warm.step() for _ in range(3)] == [0.5, 0.75, 1.0, 1.0]


@pytest.mark.parametrize("mixed", [False, True], ids=["float32", "float32+float64"])
def test_sgd_momentum_over_many_parameters_matches_a_loop_per_parameter(backend, mixed):
    """SGD momentum over several parameters against plain NumPy, with a parameter that has
    no gradient in one step and, mixed, a float64 parameter (each keeps its dtype)."""
    if mixed and not _has_float64(backend):
        pytest.skip(f"{backend.name} has no float64")
    rng = np.random.default_rng(3)
    shapes = [(4, 3), (3,), (2, 5)]
    dtypes = ["float32", "float64" if mixed else "float32", "float32"]
    start = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes, strict=True)]
    params = [nnx.Parameter(nnx.asarray(w.copy(), dtype=d), f"p{i}")
              for i, (w, d) in enumerate(zip(start, dtypes, strict=True))]  # fmt: skip
    opt = SGD(params, lr=0.1, momentum=0.9)
    want, bufs = [w.astype(np.float64) for w in start], [None] * 3
    for step in range(4):
        opt.zero_grad()
        for i, p in enumerate(params):
            if step == 2 and i == 1:
                continue  # no gradient: neither the value nor the buffer moves
            g = rng.standard_normal(shapes[i]).astype(dtypes[i])
            p.accumulate(nnx.asarray(g, dtype=dtypes[i]))
            bufs[i] = g.astype(np.float64) if bufs[i] is None else 0.9 * bufs[i] + g
            want[i] = want[i] - 0.1 * bufs[i]
        opt.step()
    for p, w, d in zip(params, want, dtypes, strict=True):
        assert dtype_name(p.value) == d
        assert_within(p.value, w, step_bound(w, steps=3, dtype=d), f"a {d} parameter")


def test_deepcopy_of_model_optimizer_and_loss_continues_identically_and_independently(backend):
    """``copy.deepcopy((model, opt, loss_fn))`` after a step, as for a best-so-far snapshot."""
    import copy

    x = nnx.asarray(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3))
    y = nnx.asarray(np.array([0, 1, 1, 0]), dtype="int64")
    nnx.manual_seed(0)
    model = nnx.Sequential(nnx.Linear(3, 5), nnx.ReLU(), nnx.Linear(5, 2))
    opt, loss_fn = SGD(model.parameters(), lr=0.1, momentum=0.9), nnx.CrossEntropyLoss()

    def step(m, o, lf):
        o.zero_grad()
        lf(m(x), y)
        m.backward(lf.backward())
        o.step()

    step(model, opt, loss_fn)
    model2, opt2, loss2 = copy.deepcopy((model, opt, loss_fn))
    assert opt2.params == model2.parameters()  # the copy's optimizer updates the copy
    assert loss2.backend is loss_fn.backend and model2.backend is model.backend
    before = [host(p.value) for p in model.parameters()]
    step(model2, opt2, loss2)
    for p, b in zip(model.parameters(), before, strict=True):
        np.testing.assert_array_equal(host(p.value), b)  # the original did not move
    step(model, opt, loss_fn)
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        np.testing.assert_array_equal(host(p.value), host(q.value))  # the same arithmetic

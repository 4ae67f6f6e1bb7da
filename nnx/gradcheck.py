"""Finite-difference check of any layer's or loss's backward.

Central differences in float64 (where the backend has it) of a random linear
functional of the output, against ``backward``, for the input and every
parameter.  Perturbations are built with array-API operations, so the check
runs on immutable arrays and on any device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nnx import init
from nnx.backend import Backend, get_backend, to_numpy
from nnx.layers.base import Layer
from nnx.losses import Loss


@dataclass
class GradcheckResult:
    """Worst relative error overall, and per checked array with the element where it occurs."""

    max_error: float
    tolerance: float
    errors: dict[str, tuple[float, tuple[int, ...]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every gradient is within tolerance."""
        return self.max_error <= self.tolerance

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        worst = max(self.errors, key=lambda k: self.errors[k][0]) if self.errors else "-"
        where = self.errors.get(worst, (0.0, ()))[1]
        verdict = "ok" if self.ok else "FAILED"
        return (
            f"gradcheck {verdict}: worst relative error {self.max_error:.2e} "
            f"(tolerance {self.tolerance:.0e}) in {worst} at index {where}"
        )


def _relative_error(analytic: float, numeric: float) -> float:
    return abs(analytic - numeric) / max(1.0, abs(analytic), abs(numeric))


def _check_array(
    name: str, x: Any, analytic: Any, f: Callable[[Any], float], eps: float, xp: Any
) -> tuple[float, tuple[int, ...]]:
    """Compare ``analytic`` (d f / d x) with central differences of ``f`` at every element."""
    shape = tuple(x.shape)
    n = math.prod(shape)
    grad = to_numpy(analytic).reshape(-1)
    index = xp.arange(n, device=x.device)
    worst, where = 0.0, ()
    for i in range(n):
        bump = xp.reshape(xp.astype(index == i, x.dtype), shape) * eps
        numeric = (f(x + bump) - f(x - bump)) / (2 * eps)
        err = _relative_error(float(grad[i]), numeric)
        if err > worst:
            worst, where = err, _unravel(i, shape)
    return worst, where


def _unravel(i: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for d in reversed(shape):
        out.append(i % d)
        i //= d
    return tuple(reversed(out))


def gradcheck(
    fn: Layer | Loss,
    x: Any,
    target: Any = None,
    *,
    eps: float = 1e-6,
    tolerance: float = 1e-6,
    seed: int = 0,
    dtype: str = "float64",
) -> GradcheckResult:
    """Check ``fn.backward`` against central differences at input ``x`` (host or device array).

    For a loss, pass ``target``; for a layer, the scalar checked is
    ``sum(w * layer(x))`` with fixed random weights ``w``.  The layer is cast
    to ``dtype`` (float64) for the check and restored afterwards.
    """
    backend = get_backend(None) if isinstance(fn, Loss) else fn.backend
    with backend.activate():  # CuPy: every bump and sum on the backend's device
        if isinstance(fn, Loss):
            return _gradcheck_loss(fn, backend, x, target, eps, tolerance, dtype)
        return _gradcheck_layer(fn, x, eps, tolerance, seed, dtype)


def _gradcheck_loss(
    fn: Loss, backend: Backend, x: Any, target: Any, eps: float, tolerance: float, dtype: str
) -> GradcheckResult:
    xd = backend.asarray(to_numpy(x), dtype)
    host_t = to_numpy(target)
    td = backend.asarray(host_t, dtype if host_t.dtype.kind == "f" else host_t.dtype.name)

    def f(v: Any) -> float:
        return float(to_numpy(fn(v, td)))

    f(xd)
    analytic = fn.backward()
    err = _check_array("input", xd, analytic, f, eps, backend.xp)
    return GradcheckResult(err[0], tolerance, {"input": err})


def _gradcheck_layer(
    layer: Layer, x: Any, eps: float, tolerance: float, seed: int, dtype: str
) -> GradcheckResult:
    backend, original = layer.backend, layer.dtype
    xp = backend.xp
    generator = backend.generator
    replay = backend.rng(seed)  # one generator, rewound before every evaluation
    start = replay.get_state()
    layer.to(backend, dtype)
    try:
        layer.train()
        xd = backend.asarray(to_numpy(x), dtype)
        y = layer(xd)
        w = backend.asarray(init.standard_normal(tuple(y.shape), seed), dtype)

        def forward(v: Any) -> Any:
            # the same dropout mask every time: rewind the generator (a generator without
            # a state is made afresh instead)
            if start is None:
                backend.generator = backend.rng(seed)
            else:
                replay.set_state(start)
                backend.generator = replay
            return layer.forward(v)

        def f_input(v: Any) -> float:
            return float(to_numpy(xp.sum(forward(v) * w)))

        layer.zero_grad()
        forward(xd)
        dx = layer.backward(w)
        analytic_params = {name: p.grad for name, p in layer.named_parameters()}
        errors = {}
        if dx is not None:
            errors["input"] = _check_array("input", xd, dx, f_input, eps, xp)
        for name, p in layer.named_parameters():
            original_value = p.value

            def f_param(v: Any, p: Any = p, original_value: Any = original_value) -> float:
                p.value = v
                try:
                    return float(to_numpy(xp.sum(forward(xd) * w)))
                finally:
                    p.value = original_value

            errors[name] = _check_array(
                name, original_value, analytic_params[name], f_param, eps, xp
            )
        worst = max((e[0] for e in errors.values()), default=0.0)
        return GradcheckResult(worst, tolerance, errors)
    finally:
        backend.generator = generator
        layer.to(backend, original)
        layer.zero_grad()

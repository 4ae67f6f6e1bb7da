"""Running the kit: the checks in order, selection by name, the report, the assertion."""

from __future__ import annotations

import fnmatch
import os
import traceback
from collections.abc import Callable, Iterable

from nnx.backend import Backend, get_backend, manual_seed, using
from nnx.testing import checks_backend, checks_models, checks_ops  # noqa: F401  (register checks)
from nnx.testing.checks_models import _gradcheck_layer, _gradcheck_loss, _optim
from nnx.testing.examples import (
    LAYER_EXAMPLES,
    LOSS_EXAMPLES,
    OPTIMIZER_EXAMPLES,
    SEED,
    layer_classes,
    loss_classes,
    optimizer_classes,
)
from nnx.testing.helpers import _STATIC, Skip
from nnx.testing.report import CheckResult, ConformanceReport


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
    for name in ("ops", "xor", "checkpoint", "to_roundtrip"):
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

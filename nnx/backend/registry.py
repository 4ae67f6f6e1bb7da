"""The backend registry: names -> factories, plugin discovery, device specs, started backends."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from nnx.backend.base import Backend, BackendError

ENTRY_POINT_GROUP = "nnx.backends"


@dataclass
class BackendInfo:
    """One row of :func:`backends`: a known backend and whether it runs here."""

    name: str
    available: bool
    reason: str
    source: str

    def __repr__(self) -> str:
        state = "available" if self.available else f"unavailable: {self.reason}"
        return f"<backend {self.name}: {state} [{self.source}]>"


class BackendTable(list):
    """The rows of :func:`backends`: a list of BackendInfo that prints as an aligned table."""

    def lines(self) -> list[str]:
        """One line per backend: name, available or why not, where it comes from."""
        width = max((len(row.name) for row in self), default=0)
        out = []
        for row in self:
            state = "available" if row.available else f"unavailable: {row.reason}"
            out.append(f"{row.name:<{width}}  {state}  [{row.source}]")
        return out

    def __repr__(self) -> str:
        return "\n".join(self.lines())


_factories: dict[str, Callable[..., Backend]] = {}
_sources: dict[str, str] = {}
_ALIASES = {"cpu": "numpy", "gpu": "cupy", "cuda": "cupy", "array-api-strict": "array_api_strict"}
_instances: dict[tuple[str, str], Backend] = {}
# Discovery runs once, under a lock, and counts as done only once every plugin is
# loaded: a second thread asking meanwhile waits instead of seeing a half-filled table.
_discovery_lock = threading.RLock()
_discovered = False
_discovering = False


def register_backend(name: str, factory: Callable[..., Backend], *, source: str = "user") -> None:
    """Make ``factory`` (a Backend subclass taking an optional device) known as ``name``."""
    if not name or ":" in name:
        raise ValueError(f"backend name must be non-empty and contain no ':', got {name!r}")
    _factories[name] = factory
    _sources[name] = source
    for key in [k for k in _instances if k[0] == name]:
        del _instances[key]


def _discover() -> None:
    """Load plugins registered under the ``nnx.backends`` entry-point group, once."""
    global _discovered, _discovering
    if _discovered:
        return
    with _discovery_lock:
        if _discovered or _discovering:  # done by another thread, or re-entered by a plugin
            return
        _discovering = True
        try:
            for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
                if entry.name in _factories:
                    continue
                try:
                    _factories[entry.name] = entry.load()
                except Exception as err:  # a broken plugin must not break nnx
                    _factories[entry.name] = _broken(entry.name, f"plugin failed to load: {err}")
                _sources[entry.name] = f"plugin {entry.value}"
        finally:
            _discovering = False
            _discovered = True


def _broken(name: str, why: str) -> Callable[..., Backend]:
    class Broken(Backend):
        @classmethod
        def available(cls, device: str | None = None) -> tuple[bool, str]:
            return False, why

        def __init__(self, device: str | None = None) -> None:
            raise BackendError(f"backend {name!r} cannot be used: {why}")

    return Broken


def _available(factory: Callable[..., Backend], device: str = "") -> tuple[bool, str]:
    """Ask a backend whether it runs here (on ``device``): ``available(device=None)``."""
    check = getattr(factory, "available", None)
    if check is None:
        return True, ""
    try:
        return check(device or None)
    except TypeError as err:  # a plugin written before the one signature
        if "positional argument" not in str(err):
            raise
        return False, f"its available() must accept a device: available(cls, device=None) ({err})"


def availability(spec: str) -> tuple[bool, str]:
    """(True, "") when the device spec can run here, else (False, why not), without starting it."""
    name, device = parse_spec(spec)
    _discover()
    if name not in _factories:
        return False, f"no backend named {name!r} is installed"
    return _available(_factories[name], device)


def backends() -> BackendTable:
    """Every known backend, whether it is available here, and why not (prints as a table).

    Cheap: a backend's ``available()`` without a device must not import its
    library (see docs/adding-a-backend.md), so listing takes milliseconds.
    """
    _discover()
    rows = BackendTable()
    for name, factory in list(_factories.items()):
        ok, why = _available(factory)
        rows.append(BackendInfo(name, ok, why, _sources[name]))
    return rows


def parse_spec(spec: str) -> tuple[str, str]:
    """Split "cuda:1" -> ("cupy", "1"), "torch:cuda:0" -> ("torch", "cuda:0")."""
    spec = spec.strip()
    name, _, device = spec.partition(":")
    name = name.lower()
    if name in ("cuda", "gpu") and not device:
        device = "0"
    return _ALIASES.get(name, name), device


def started() -> list[Backend]:
    """The backends started so far (each once, however many spellings name it)."""
    return list({id(b): b for b in _instances.values()}.values())


def get_backend(spec: str | Backend | None = None) -> Backend:
    """The backend for a device spec ("cpu", "cuda:1", "torch:cpu", ...), or the current one."""
    if spec is None:
        from nnx.backend.context import current

        return current()
    if isinstance(spec, Backend):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"a device spec is a string such as 'cpu' or 'cuda:0', got {spec!r}")
    name, device = parse_spec(spec)
    key = (name, device)
    if key in _instances:
        return _instances[key]
    _discover()
    canonical = getattr(_factories.get(name), "canonical_device", None)
    if canonical is not None:
        # "cupy", "cuda", "cuda:0", "gpu", "cupy:0": one backend (one generator) per device
        key = (name, canonical(device or None))
        if key in _instances:
            return _instances.setdefault((name, device), _instances[key])
    if name not in _factories:
        known = ", ".join(sorted(_factories))
        raise BackendError(
            f"unknown backend {spec!r}; known backends: {known} "
            "(aliases: cpu, gpu, cuda, cuda:N). A plugin registers itself through the "
            f"{ENTRY_POINT_GROUP!r} entry point or nnx.register_backend()."
        )
    factory = _factories[name]
    ok, why = _available(factory, device)
    if not ok:
        raise BackendError(f"backend {name!r} is not available: {why}")
    try:
        backend = factory(device or None)
    except BackendError:
        raise
    except Exception as err:
        raise BackendError(f"backend {spec!r} failed to start: {err}") from err
    backend = _instances.setdefault(key, backend)  # two threads starting it: one wins
    return _instances.setdefault((name, device), backend)

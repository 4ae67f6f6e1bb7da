"""The backend in force: ``use`` / ``using`` / ``current``, and ``manual_seed``.

Selection, strongest first: an explicit argument (``model.to("cuda:1")``,
``with nnx.using("cupy"):``) > ``nnx.use(...)`` > ``NNX_BACKEND`` > numpy.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

from nnx.backend.base import Backend, seed_new_generators
from nnx.backend.registry import get_backend, started

_default: Backend | None = None
_scoped: contextvars.ContextVar[Backend | None] = contextvars.ContextVar(
    "nnx_backend", default=None
)


def current() -> Backend:
    """The backend in force: ``using`` > ``use`` > ``NNX_BACKEND`` > numpy."""
    scoped = _scoped.get()
    if scoped is not None:
        return scoped
    if _default is not None:
        return _default
    return get_backend(os.environ.get("NNX_BACKEND") or "numpy")


def use(spec: str | Backend | None) -> Backend | None:
    """Make ``spec`` the default backend (None returns to ``NNX_BACKEND``/numpy)."""
    global _default
    _default = None if spec is None else get_backend(spec)
    return _default


@contextlib.contextmanager
def using(spec: str | Backend) -> Iterator[Backend]:
    """Within the ``with`` block, ``spec`` is the current backend."""
    token = _scoped.set(get_backend(spec))
    try:
        yield _scoped.get()
    finally:
        _scoped.reset(token)


def manual_seed(seed: int) -> None:
    """Seed weight initialisation, every started backend's generator and every later one's."""
    from nnx import init

    init.seed(seed)
    seed_new_generators(seed)
    for backend in started():
        backend.generator = backend.rng(seed)

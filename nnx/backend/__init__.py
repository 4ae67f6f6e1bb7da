"""Backends: the only place in nnx that names a concrete array library.

A backend supplies an array-API namespace (``xp``), a device, host<->device
copies, a seeded random generator and its kernel table (``ops``).  Layers,
losses and optimizers only ever talk to a :class:`Backend`, so switching it
moves the same code from NumPy to CuPy or to any registered plugin.

Modules: ``base`` (the contract, Generator, HostGenerator), ``ops`` (the
portable kernel table), ``registry`` (names, plugins, specs), ``context``
(use/using/current/manual_seed), ``convert`` (arrays between backends),
``numpy`` and ``cupy`` (the built-in adapters), ``cupy_ops`` (CuPy's kernel table).
"""

from nnx.backend.base import Backend, BackendError, Generator, HostGenerator
from nnx.backend.context import current, manual_seed, use, using
from nnx.backend.convert import (
    OwnerCache,
    asarray,
    backend_of,
    describe,
    move,
    owner_of,
    spec_of,
    to_numpy,
)
from nnx.backend.cupy import CupyBackend, CupyGenerator
from nnx.backend.numpy import NumpyBackend, NumpyOps
from nnx.backend.ops import Ops
from nnx.backend.registry import (
    ENTRY_POINT_GROUP,
    BackendInfo,
    BackendTable,
    availability,
    backends,
    get_backend,
    parse_spec,
    register_backend,
)

register_backend("numpy", NumpyBackend, source="built-in")
register_backend("cupy", CupyBackend, source="built-in")

__all__ = [
    "Backend",
    "BackendError",
    "BackendInfo",
    "BackendTable",
    "CupyBackend",
    "CupyGenerator",
    "ENTRY_POINT_GROUP",
    "Generator",
    "HostGenerator",
    "NumpyBackend",
    "NumpyOps",
    "OwnerCache",
    "Ops",
    "asarray",
    "availability",
    "backend_of",
    "backends",
    "current",
    "describe",
    "get_backend",
    "manual_seed",
    "move",
    "owner_of",
    "parse_spec",
    "register_backend",
    "spec_of",
    "to_numpy",
    "use",
    "using",
]

"""The Backend contract, the Generator protocol and the host (NumPy) generator.

A backend supplies an array-API namespace (``xp``), a device, host<->device
copies, a seeded random generator and its kernel table (``ops``).  Layers,
losses and optimizers only ever talk to a :class:`Backend`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import array_api_compat
import numpy as np

from nnx.backend.ops import Ops


class BackendError(RuntimeError):
    """A backend cannot be found, loaded or used; the message says what to do."""


class Generator:
    """The protocol of a backend's random source: seeded draws on its device.

    ``uniform``/``normal`` return float32 arrays unless told otherwise;
    ``get_state()`` is JSON-serialisable (or None when not portable) and
    ``set_state`` replays it.  :class:`HostGenerator` is the portable default.
    """

    def __init__(self, backend: Backend, seed: int | None) -> None:
        self.backend = backend

    def uniform(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        """Uniform samples in [0, 1) of ``shape`` on the backend's device."""
        raise NotImplementedError

    def normal(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        """Standard normal samples of ``shape`` on the backend's device."""
        raise NotImplementedError

    def get_state(self) -> Any:
        """A JSON-serialisable snapshot of the generator (for checkpoints), or None."""
        return None

    def set_state(self, state: Any) -> None:
        """Restore a snapshot taken by :meth:`get_state`."""


class HostGenerator(Generator):
    """Seeded random numbers drawn on the host with NumPy, then copied to the device.

    Portable and exact across backends for one seed; backends whose library has
    a fast device generator return their own from :meth:`Backend.rng`.
    """

    def __init__(self, backend: Backend, seed: int | None) -> None:
        super().__init__(backend, seed)
        self.host = np.random.default_rng(seed)

    def uniform(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        """Uniform samples in [0, 1) of ``shape`` on the backend's device."""
        return self.backend.asarray(self.host.random(shape, dtype=np.float32), dtype)

    def normal(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        """Standard normal samples of ``shape`` on the backend's device."""
        return self.backend.asarray(self.host.standard_normal(shape, dtype=np.float32), dtype)

    def get_state(self) -> Any:
        """The NumPy bit generator's state (a JSON-serialisable dict)."""
        return self.host.bit_generator.state

    def set_state(self, state: Any) -> None:
        """Restore a snapshot taken by :meth:`get_state`."""
        self.host.bit_generator.state = state


#: the seed a backend's generator starts from when it is first used (nnx.manual_seed sets it)
_seed_for_new: list[int | None] = [None]


def seed_new_generators(seed: int | None) -> None:
    """Generators created from now on (lazily, on first use) start from ``seed``."""
    _seed_for_new[0] = seed


_NO_SCOPE = contextlib.nullcontext()


class Backend:
    """One array library on one device.

    Subclasses set ``name``, ``xp`` and ``device`` (in any order relative to
    ``super().__init__``: the generator and the ops are made on first use) and
    may override the copies, ``rng`` and ``ops_class``.  ``available(device)``
    says whether the library can run here and, when not, why.
    """

    name: str = "base"
    xp: Any = None
    device: Any = None
    #: arrays of exactly this type are accepted without a namespace lookup
    array_type: type | None = None
    #: the kernel table's class; a backend with faster kernels names its Ops subclass
    ops_class: type[Ops] = Ops
    #: a context manager that makes this backend's device the library's *current* device
    #: (CuPy: its ``cuda.Device``), entered around the work nnx does on the backend; None
    #: when arrays created without ``device=`` land on the right device anyway (the CPU)
    device_scope: Any = None
    #: True when arrays live in host memory, so reading one back waits for no device
    #: (checks such as the label range may then run every batch); False on a GPU
    host_memory: bool = True

    def __init__(self, device: str | None = None) -> None:
        pass

    # -- availability ---------------------------------------------------------
    @classmethod
    def available(cls, device: str | None = None) -> tuple[bool, str]:
        """(True, "") when the backend can run here (on ``device``), else (False, why not)."""
        return True, ""

    @classmethod
    def canonical_device(cls, device: str | None) -> str:
        """The one spelling of ``device`` (from a spec) that names a physical device.

        The registry keeps one backend per canonical device, so spellings that name
        the same device (CuPy: "", "0", ...) share one backend and one generator.
        """
        return device or ""

    def activate(self) -> contextlib.AbstractContextManager[Any]:
        """A ``with`` block in which arrays created without ``device=`` land on this device."""
        scope = self.device_scope
        return _NO_SCOPE if scope is None else scope

    # -- kernels and randomness, made on first use -----------------------------------
    @property
    def ops(self) -> Ops:
        """This backend's kernel table (an instance of ``ops_class``)."""
        ops = self.__dict__.get("_ops")
        if ops is None:
            ops = self.__dict__["_ops"] = self.ops_class(self.xp, self.device)
        return ops

    @property
    def generator(self) -> Generator:
        """The backend's random source (dropout masks, shuffling), seeded by nnx.manual_seed."""
        gen = self.__dict__.get("_generator")
        if gen is None:
            gen = self.__dict__["_generator"] = self.rng(_seed_for_new[0])
        return gen

    @generator.setter
    def generator(self, value: Generator) -> None:
        self.__dict__["_generator"] = value

    # -- arrays -----------------------------------------------------------------
    def asarray(self, host: Any, dtype: Any = None) -> Any:
        """Copy a host (NumPy) array or scalar onto this backend's device."""
        return self.xp.asarray(host, dtype=self.dtype(dtype), device=self.device)

    def to_numpy(self, x: Any) -> np.ndarray:
        """An array of this backend on the host (may be a zero-copy view on the CPU)."""
        return np.asarray(x)

    def dtype(self, dtype: Any = None) -> Any:
        """Resolve None (float32), a name such as "float64", or a dtype of xp."""
        if dtype is None:
            return self.xp.float32
        if isinstance(dtype, str):
            return getattr(self.xp, dtype)
        if isinstance(dtype, np.dtype) or (
            isinstance(dtype, type) and issubclass(dtype, np.generic)
        ):
            return getattr(self.xp, np.dtype(dtype).name)
        return dtype

    def owns(self, x: Any) -> bool:
        """True when ``x`` is an array of this library on this backend's device."""
        if self.array_type is not None and type(x) is self.array_type:
            return self._same_device(x)
        try:
            return array_api_compat.array_namespace(x) is self.xp and self._same_device(x)
        except TypeError:
            return False

    def _same_device(self, x: Any) -> bool:
        return array_api_compat.device(x) == self.device

    def rng(self, seed: int | None) -> Generator:
        """A new seeded generator producing arrays on this device."""
        return HostGenerator(self, seed)

    def synchronize(self) -> None:
        """Wait until queued device work has finished (a no-op on the CPU)."""

    # -- description ------------------------------------------------------------
    @property
    def spec(self) -> str:
        """The device spec that selects this backend, e.g. "cupy:0"."""
        return f"{self.name}:{self.device}"

    def __deepcopy__(self, memo: dict[int, Any]) -> Backend:
        """The backend itself: there is one per device in a process (and its namespace is
        a module), so ``copy.deepcopy`` of a loss or an optimizer shares it, as a model's does."""
        return self

    def __repr__(self) -> str:
        return f"<nnx backend {self.spec}>"

"""Backends: the only place in nnx that names a concrete array library.

A backend supplies an array-API namespace (``xp``), a device, host<->device
copies and a seeded random generator.  Layers, losses and optimizers only ever
talk to a :class:`Backend`, so switching it moves the same code from NumPy to
CuPy or to any registered plugin.

Selection, strongest first: an explicit argument (``model.to("cuda:1")``,
``with nnx.using("cupy"):``) > ``nnx.use(...)`` > ``NNX_BACKEND`` > numpy.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import array_api_compat
import numpy as np

__all__ = [
    "Backend",
    "BackendError",
    "BackendInfo",
    "NumpyBackend",
    "CupyBackend",
    "asarray",
    "availability",
    "backends",
    "current",
    "get_backend",
    "manual_seed",
    "register_backend",
    "to_numpy",
    "use",
    "using",
]

ENTRY_POINT_GROUP = "nnx.backends"


class BackendError(RuntimeError):
    """A backend cannot be found, loaded or used; the message says what to do."""


class Generator:
    """Seeded random numbers on a device, drawn on the host with NumPy.

    Backends whose library has a fast device generator override this; the
    default is portable and exact across backends for one seed.
    """

    def __init__(self, backend: Backend, seed: int | None) -> None:
        self.backend = backend
        self.host = np.random.default_rng(seed)

    def uniform(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        """Uniform samples in [0, 1) of ``shape`` on the backend's device."""
        return self.backend.asarray(self.host.random(shape, dtype=np.float32), dtype)

    def normal(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        """Standard normal samples of ``shape`` on the backend's device."""
        return self.backend.asarray(self.host.standard_normal(shape, dtype=np.float32), dtype)

    def get_state(self) -> Any:
        """A JSON-serialisable snapshot of the generator (for checkpoints)."""
        return self.host.bit_generator.state

    def set_state(self, state: Any) -> None:
        """Restore a snapshot taken by :meth:`get_state`."""
        self.host.bit_generator.state = state


class Backend:
    """One array library on one device.

    Subclasses set ``name``, ``xp`` and ``device`` and may override the copies
    and the generator.  ``available()`` says whether the library can run here
    and, when not, why.
    """

    name: str = "base"
    xp: Any = None
    device: Any = None
    #: arrays of exactly this type are accepted without a namespace lookup
    array_type: type | None = None

    def __init__(self, device: str | None = None) -> None:
        self.generator = self.rng(None)

    # -- availability ---------------------------------------------------------
    @classmethod
    def available(cls) -> tuple[bool, str]:
        """(True, "") when the backend can run here, else (False, why not)."""
        return True, ""

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

    # -- randomness and timing --------------------------------------------------
    def rng(self, seed: int | None) -> Generator:
        """A new seeded generator producing arrays on this device."""
        return Generator(self, seed)

    def synchronize(self) -> None:
        """Wait until queued device work has finished (a no-op on the CPU)."""

    # -- description ------------------------------------------------------------
    @property
    def spec(self) -> str:
        """The device spec that selects this backend, e.g. "cupy:0"."""
        return f"{self.name}:{self.device}"

    def __repr__(self) -> str:
        return f"<nnx backend {self.spec}>"


class NumpyBackend(Backend):
    """NumPy on the CPU: always available."""

    name = "numpy"
    xp = array_api_compat.array_namespace(np.empty(0))
    device = "cpu"
    array_type = np.ndarray

    def __init__(self, device: str | None = None) -> None:
        if device not in (None, "", "cpu"):
            raise BackendError(f"numpy has only the device 'cpu', not {device!r}")
        super().__init__(device)

    def asarray(self, host: Any, dtype: Any = None) -> np.ndarray:
        return np.asarray(host, dtype=self.dtype(dtype))

    def _same_device(self, x: Any) -> bool:
        return True

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    # -- fast paths for nnx.layers.conv (same layouts as its portable im2col/col2im) --
    def transpose2d(self, a: np.ndarray) -> np.ndarray:
        """A C-contiguous copy of the transpose of 2-D ``a``.

        When ``a``'s rows lie a multiple of 2 KiB apart, the column-wise reads of a
        plain transposing copy fall into a few cache sets and run ~5x slower;
        staging ``a`` in a buffer with an odd number of cache lines per row avoids it.
        """
        m, n = a.shape
        if (n * a.itemsize) % 2048 == 0 and m > 1:
            lines = n * a.itemsize // 64 + 1
            buf = np.empty((m, lines * 64 // a.itemsize), dtype=a.dtype)
            buf[:, :n] = a
            a = buf[:, :n]
        return np.ascontiguousarray(a.T)

    def im2col(
        self,
        x: np.ndarray,
        kernel: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
        batch_last: bool = True,
    ) -> np.ndarray:
        """NCHW ``x`` -> windows ``(C*kh*kw, pixels)`` with one copy (sliding_window_view)."""
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        n, c, h, w = x.shape
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        # (C, H, W, N) or (C, N, H, W), contiguous: the window copy reads long runs
        if batch_last:
            xt = self.transpose2d(x.reshape(n, c * h * w)).reshape(c, h, w, n)
        else:
            xt = x.transpose(1, 0, 2, 3)
        a = 1 if batch_last else 2  # first spatial axis
        if ph or pw:
            shape = list(xt.shape)
            shape[a], shape[a + 1] = h + 2 * ph, w + 2 * pw
            padded = np.zeros(shape, dtype=x.dtype)
            index = [slice(None)] * 4
            index[a], index[a + 1] = slice(ph, ph + h), slice(pw, pw + w)
            padded[tuple(index)] = xt
            xt = padded
        else:
            xt = np.ascontiguousarray(xt)
        win = np.lib.stride_tricks.sliding_window_view(xt, (kh, kw), axis=(a, a + 1))
        index = [slice(None)] * 4
        index[a], index[a + 1] = slice(0, sh * (oh - 1) + 1, sh), slice(0, sw * (ow - 1) + 1, sw)
        win = win[tuple(index)]  # (C, OH, OW, N, kh, kw) or (C, N, OH, OW, kh, kw)
        return win.transpose(0, 4, 5, 1, 2, 3).reshape(c * kh * kw, oh * ow * n)

    def col2im(
        self,
        cols: np.ndarray,
        shape: tuple[int, ...],
        kernel: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
        batch_last: bool = True,
    ) -> np.ndarray:
        """Sum windows ``(C*kh*kw, pixels)`` back into NCHW ``shape`` (kh*kw in-place adds)."""
        (kh, kw), (n, c) = kernel, shape[:2]
        oh, ow = _out_size(shape, kernel, stride, padding)
        if batch_last:
            d = cols.reshape(c, kh, kw, oh, ow, n)
            return self._sum_windows(lambda i, j: d[:, i, j], shape, kernel, stride, padding, True)
        d = cols.reshape(c, kh, kw, n, oh, ow).transpose(3, 0, 1, 2, 4, 5)
        return self._sum_windows(lambda i, j: d[:, :, i, j], shape, kernel, stride, padding, False)

    def col2im_matmul(
        self,
        wt: np.ndarray,
        dy: np.ndarray,
        shape: tuple[int, ...],
        kernel: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
        batch_last: bool = True,
    ) -> np.ndarray:
        """``col2im(wt @ dy)`` without the big product: one matmul per kernel offset, added hot."""
        (kh, kw), (n, c) = kernel, shape[:2]
        oh, ow = _out_size(shape, kernel, stride, padding)
        w4 = wt.reshape(c, kh, kw, wt.shape[1])
        if batch_last:
            piece = lambda i, j: (w4[:, i, j] @ dy).reshape(c, oh, ow, n)  # noqa: E731
        else:
            piece = lambda i, j: (w4[:, i, j] @ dy).reshape(c, n, oh, ow).transpose(1, 0, 2, 3)  # noqa: E731
        return self._sum_windows(piece, shape, kernel, stride, padding, batch_last)

    @staticmethod
    def _sum_windows(
        piece: Callable[[int, int], np.ndarray],
        shape: tuple[int, ...],
        kernel: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
        batch_last: bool,
    ) -> np.ndarray:
        """Add ``piece(i, j)`` (the gradient of kernel offset i, j) into a padded image, crop it."""
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        n, c, h, w = shape
        oh, ow = _out_size(shape, kernel, stride, padding)
        hp, wp = h + 2 * ph, w + 2 * pw
        a = 1 if batch_last else 2  # first spatial axis of the (C, H, W, N) or NCHW buffer
        out = None
        index = [slice(None)] * 4
        for i in range(kh):
            for j in range(kw):
                p = piece(i, j)
                if out is None:
                    out = np.zeros((c, hp, wp, n) if batch_last else (n, c, hp, wp), p.dtype)
                index[a] = slice(i, i + sh * (oh - 1) + 1, sh)
                index[a + 1] = slice(j, j + sw * (ow - 1) + 1, sw)
                out[tuple(index)] += p
        index[a], index[a + 1] = slice(ph, ph + h), slice(pw, pw + w)
        out = out[tuple(index)]
        return np.ascontiguousarray(out.transpose(3, 0, 1, 2) if batch_last else out)


def _out_size(
    shape: tuple[int, ...],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> tuple[int, int]:
    """Output height and width of a window operation on NCHW ``shape``."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    return (shape[2] + 2 * ph - kh) // sh + 1, (shape[3] + 2 * pw - kw) // sw + 1


class CupyBackend(Backend):
    """CuPy on a CUDA device ("cuda", "cuda:N", "cupy:N")."""

    name = "cupy"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import cupy  # noqa: F401
        except ImportError:
            return False, (
                "CuPy is not installed: pip install 'nnx[cuda12]' (CUDA 12) "
                "or 'nnx[cuda13]' (CUDA 13)"
            )
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as err:  # CUDA's own message: no driver, no device, ...
            return False, f"CuPy is installed but CUDA does not answer: {err}"
        if count == 0:
            return False, "CuPy is installed but CUDA reports no device"
        return True, ""

    def __init__(self, device: str | None = None) -> None:
        import cupy

        ok, why = self.available()
        if not ok:
            raise BackendError(why)
        index = int(device) if device not in (None, "", "cuda", "gpu") else 0
        count = cupy.cuda.runtime.getDeviceCount()
        if not 0 <= index < count:
            raise BackendError(f"CUDA device {index} does not exist; this machine has {count}")
        self._cupy = cupy
        self.xp = array_api_compat.array_namespace(cupy.empty(0))
        self.device = cupy.cuda.Device(index)
        self.array_type = cupy.ndarray
        super().__init__(device)

    def asarray(self, host: Any, dtype: Any = None) -> Any:
        with self.device:
            return self._cupy.asarray(host, dtype=self.dtype(dtype))

    def to_numpy(self, x: Any) -> np.ndarray:
        return self._cupy.asnumpy(x)

    def _same_device(self, x: Any) -> bool:
        return x.device == self.device

    def rng(self, seed: int | None) -> Generator:
        return CupyGenerator(self, seed)

    def synchronize(self) -> None:
        self.device.synchronize()

    @property
    def spec(self) -> str:
        return f"cupy:{self.device.id}"


class CupyGenerator(Generator):
    """Random numbers drawn on the GPU by CuPy's own generator."""

    def __init__(self, backend: CupyBackend, seed: int | None) -> None:
        self.backend = backend
        with backend.device:
            self.device_rng = backend._cupy.random.default_rng(seed)

    def uniform(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        with self.backend.device:
            return self.device_rng.random(shape, dtype=self.backend.dtype(dtype))

    def normal(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        with self.backend.device:
            return self.device_rng.standard_normal(shape, dtype=self.backend.dtype(dtype))

    def get_state(self) -> Any:
        return None  # CuPy's generator state is not portable; resume is exact on numpy

    def set_state(self, state: Any) -> None:
        pass


# -- the registry ------------------------------------------------------------------


@dataclass
class BackendInfo:
    """One row of :func:`backends`: a known backend and whether it runs here."""

    name: str
    available: bool
    reason: str
    source: str


_factories: dict[str, Callable[..., Backend]] = {}
_sources: dict[str, str] = {}
_ALIASES = {"cpu": "numpy", "gpu": "cupy", "cuda": "cupy", "array-api-strict": "array_api_strict"}
_instances: dict[tuple[str, str], Backend] = {}
_discovered = False


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
    global _discovered
    if _discovered:
        return
    _discovered = True
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in _factories:
            continue
        try:
            _factories[entry.name] = entry.load()
            _sources[entry.name] = f"plugin {entry.value}"
        except Exception as err:  # a broken plugin must not break nnx
            _factories[entry.name] = _broken(entry.name, f"plugin failed to load: {err}")
            _sources[entry.name] = f"plugin {entry.value}"


def _broken(name: str, why: str) -> Callable[..., Backend]:
    class Broken(Backend):
        @classmethod
        def available(cls) -> tuple[bool, str]:
            return False, why

        def __init__(self, device: str | None = None) -> None:
            raise BackendError(f"backend {name!r} cannot be used: {why}")

    return Broken


register_backend("numpy", NumpyBackend, source="built-in")
register_backend("cupy", CupyBackend, source="built-in")


def _available(factory: Callable[..., Backend], device: str = "") -> tuple[bool, str]:
    """Ask a backend whether it runs here (on ``device``, when it takes one)."""
    check = getattr(factory, "available", None)
    if check is None:
        return True, ""
    if device and len(inspect.signature(check).parameters) >= 1:
        return check(device)
    return check()


def availability(spec: str) -> tuple[bool, str]:
    """(True, "") when the device spec can run here, else (False, why not), without starting it."""
    name, device = _parse(spec)
    _discover()
    if name not in _factories:
        return False, f"no backend named {name!r} is installed"
    return _available(_factories[name], device)


def backends() -> list[BackendInfo]:
    """Every known backend, whether it is available here, and why not."""
    _discover()
    rows = []
    for name, factory in _factories.items():
        ok, why = _available(factory)
        rows.append(BackendInfo(name, ok, why, _sources[name]))
    return rows


def _parse(spec: str) -> tuple[str, str]:
    """Split "cuda:1" -> ("cupy", "1"), "torch:cuda:0" -> ("torch", "cuda:0")."""
    spec = spec.strip()
    name, _, device = spec.partition(":")
    name = name.lower()
    if name in ("cuda", "gpu") and not device:
        device = "0"
    return _ALIASES.get(name, name), device


def get_backend(spec: str | Backend | None = None) -> Backend:
    """The backend for a device spec ("cpu", "cuda:1", "torch:cpu", ...), or the current one."""
    if spec is None:
        return current()
    if isinstance(spec, Backend):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"a device spec is a string such as 'cpu' or 'cuda:0', got {spec!r}")
    name, device = _parse(spec)
    key = (name, device)
    if key in _instances:
        return _instances[key]
    _discover()
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
    _instances[key] = backend
    return backend


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
    """Seed weight initialisation and every started backend's generator."""
    from nnx import init

    init.seed(seed)
    for backend in _instances.values():
        backend.generator = backend.rng(seed)


def backend_of(x: Any) -> Backend:
    """The started backend that owns array ``x`` (or the one a plugin gives for it)."""
    for backend in (current(), *_instances.values()):
        if backend.owns(x):
            return backend
    raise BackendError(f"no started nnx backend owns this {describe(x)}")


def spec_of(x: Any) -> str:
    """The device spec of a started backend owning ``x`` (for error messages)."""
    if isinstance(x, np.ndarray):
        return "cpu"
    for backend in _instances.values():
        if backend.owns(x):
            return backend.spec
    return "<the input's device>"


def to_numpy(x: Any, copy: bool = False) -> np.ndarray:
    """Any array (NumPy, CuPy, a plugin's) as a host NumPy array.

    A host array comes back as it is unless ``copy`` is True: pass it when the
    result will be stored where in-place updates could reach the caller's data.
    """
    if isinstance(x, np.ndarray | np.generic | int | float | list | tuple):
        return np.array(x, copy=True) if copy else np.asarray(x)
    for backend in (current(), *_instances.values()):
        if backend.owns(x):
            host = backend.to_numpy(x)
            break
    else:
        try:
            host = np.from_dlpack(x)
        except Exception:
            host = np.asarray(x)
    # device copies are already fresh; zero-copy views (DLPack, CPU tensors) are not
    return host.copy() if copy and not host.flags.owndata else host


def asarray(x: Any, device: str | Backend | None = None, dtype: Any = None) -> Any:
    """Put host data or another backend's array on ``device`` (default: current).

    Without ``dtype``, floating data becomes float32 and integer data keeps its type.
    """
    backend = get_backend(device)
    if dtype is None and backend.owns(x) and x.dtype == backend.xp.float32:
        return x
    host = to_numpy(x)
    if dtype is None:
        dtype = "float32" if host.dtype.kind in "fc" else host.dtype.name
    return backend.asarray(host, dtype)


def describe(x: Any) -> str:
    """ "array on numpy:cpu", "array on array_api_strict:device1", ... for error messages."""
    for backend in _instances.values():
        if backend.owns(x):
            return f"array on {backend.spec}"
    try:
        ns = array_api_compat.array_namespace(x).__name__.replace("array_api_compat.", "")
        return f"array of {ns} on {array_api_compat.device(x)}"
    except TypeError:
        return f"{type(x).__module__}.{type(x).__name__} (not an array)"

"""A CuPy-shaped stand-in with two fake GPUs, so the CuPy backend's code runs without one.

It copies the CuPy behaviours behind the device bugs of issue 13:

- a *current device* (0 unless a ``cuda.Device(n)`` block is entered), on which every
  array is created: the creation functions of the namespace ignore ``device=``, as
  array-api-compat's CuPy namespace does for ``zeros``/``ones``/``full``/``arange``;
- ``cuda.Device`` objects (a backend's ``device``) that compare by number and are
  unhashable (the arrays carry array-api-strict's devices, which strict must hash);
- arrays that refuse implicit conversion to NumPy (``GpuArray``: DLPack only, and only
  with ``device="cpu"``), like CuPy arrays;
- ``ElementwiseKernel`` compiled at call time, which fails like a missing NVRTC when
  ``fake.nvrtc_missing`` is set;
- a full device: with ``fake.out_of_memory = "allocate"`` ``asarray`` raises
  ``cuda.memory.OutOfMemoryError`` (CuPy's memory pool), with ``"launch"`` a kernel
  raises CUDA's ``cudaErrorMemoryAllocation: out of memory``.

Arrays are array-api-strict arrays on its fake devices (GPU 0 = ``CPU_DEVICE``, GPU 1 =
``device1``), which refuse to mix with arrays on another device, exactly like two GPUs.
:class:`FakeCupyBackend` is :class:`nnx.backend.CupyBackend` with this module for cupy.
"""

from __future__ import annotations

import threading
import types
from typing import Any

import array_api_strict as strict
import numpy as np
from array_api_strict._array_object import Array

from nnx.backend import CupyBackend, Ops

_STRICT = ["CPU_DEVICE", "device1"]
_state = threading.local()


def current() -> int:
    """The current fake GPU's number."""
    return getattr(_state, "device", 0)


class Device(strict.Device):
    """``cupy.cuda.Device``: a context manager making GPU ``id`` current; unhashable."""

    __hash__ = None  # type: ignore[assignment]  # as cupy.cuda.Device

    def __init__(self, device: int | None = None) -> None:
        self.id = current() if device is None else int(device)
        super().__init__(_STRICT[self.id])

    def __enter__(self) -> Device:
        stack = _state.__dict__.setdefault("stack", [])
        stack.append(current())
        _state.device = self.id
        return self

    def __exit__(self, *exc: object) -> None:
        _state.device = _state.stack.pop()

    def synchronize(self) -> None:
        """Nothing is queued on a fake GPU."""

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"


def _on_current(name: str) -> Any:
    """A creation function that ignores ``device=`` and creates on the current GPU."""
    make = getattr(strict, name)

    def create(*args: Any, device: Any = None, **kwargs: Any) -> Any:
        return make(*args, device=strict.Device(_STRICT[current()]), **kwargs)

    create.__name__ = name
    return create


def _like_on_current(like: Any) -> Any:
    """A ``*_like`` function that creates on the current GPU, as CuPy's do."""

    def create(x: Any, *args: Any, device: Any = None, **kwargs: Any) -> Any:
        return like(x, *args, device=strict.Device(_STRICT[current()]), **kwargs)

    return create


def _index(device: Any) -> int:
    """The fake GPU number of ``device`` (None: the current one)."""
    if device is None:
        return current()
    if isinstance(device, Device):
        return device.id
    if isinstance(device, strict.Device) and device._device in _STRICT:
        return _STRICT.index(device._device)
    raise ValueError(f"not a fake GPU: {device!r}")


def _asarray(obj: Any, dtype: Any = None, device: Any = None, copy: Any = None) -> Any:
    """array-api-compat's CuPy ``asarray`` honours ``device=`` (else the current GPU)."""
    with Device(_index(device)) as gpu:
        if isinstance(obj, Array):
            obj = np.from_dlpack(obj, device="cpu")
        return strict.asarray(obj, dtype=dtype, device=strict.Device(_STRICT[gpu.id]))


def namespace() -> types.SimpleNamespace:
    """The array-API namespace the fake backend computes with (array-api-compat's role)."""
    xp = types.SimpleNamespace(**{k: getattr(strict, k) for k in dir(strict) if k[0] != "_"})
    for name in ("arange", "empty", "eye", "full", "linspace", "ones", "zeros"):
        setattr(xp, name, _on_current(name))
    for name in ("empty_like", "full_like", "ones_like", "zeros_like"):
        like = getattr(strict, name)
        setattr(xp, name, _like_on_current(like))
    xp.asarray = _asarray
    xp.__name__ = "fake_cupy_namespace"
    return xp


class GpuArray:
    """An array in fake GPU memory: DLPack to the host only when asked for ``device="cpu"``."""

    def __init__(self, host: np.ndarray) -> None:
        self._host = host

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 0)  # kDLCUDA, device 0

    def __dlpack__(self, *, stream: Any = None, max_version: Any = None, dl_device: Any = None,
                   copy: Any = None) -> Any:  # fmt: skip
        if dl_device is None or tuple(dl_device) != (1, 0):
            raise BufferError("this array lives in GPU memory; ask for dl_device=(kDLCPU, 0)")
        return self._host.__dlpack__(max_version=max_version)

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("Implicit conversion to a NumPy array is not allowed (as in CuPy)")


class OutOfMemoryError(MemoryError):
    """``cupy.cuda.memory.OutOfMemoryError``: the memory pool could not allocate."""

    def __init__(self, size: int, total: int) -> None:
        super().__init__(
            f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes)."
        )


def make_module(device_count: int = 2) -> types.ModuleType:
    """A fresh fake ``cupy`` module."""
    cupy = types.ModuleType("fake_cupy")
    cupy.nvrtc_missing = False
    cupy.out_of_memory = ""  # "allocate" or "launch": the device is full
    cupy.ndarray = Array
    cupy.float32 = strict.float32
    cupy.cuda = types.SimpleNamespace(
        Device=Device,
        runtime=types.SimpleNamespace(
            getDeviceCount=lambda: device_count,
            runtimeGetVersion=lambda: 12080,
            driverGetVersion=lambda: 12090,
            getDeviceProperties=lambda i: {
                "name": b"Fake GPU",
                "totalGlobalMem": 16 * 2**30,
                "major": 9,
                "minor": 0,
            },  # fmt: skip
        ),
        memory=types.SimpleNamespace(OutOfMemoryError=OutOfMemoryError),
    )
    cupy.__version__ = "14.0.0-fake"

    def asarray(obj: Any, dtype: Any = None) -> Any:
        if cupy.out_of_memory == "allocate":
            raise OutOfMemoryError(512, 0)
        return _asarray(obj, dtype=dtype)

    def asnumpy(x: Any) -> np.ndarray:
        return np.from_dlpack(x, device="cpu")

    class ElementwiseKernel:
        """Compiled (by NVRTC, in CuPy) at the first call; only the probe's operation."""

        def __init__(self, in_params: str, out_params: str, operation: str, name: str) -> None:
            self.operation = operation

        def __call__(self, x: Any) -> Any:
            if cupy.out_of_memory == "launch":
                raise RuntimeError("cudaErrorMemoryAllocation: out of memory")
            if cupy.nvrtc_missing:
                raise RuntimeError(
                    "CuPy failed to load libnvrtc.so.12: OSError: libnvrtc.so.12: "
                    "cannot open shared object file: No such file or directory"
                )
            assert self.operation == "y = x + 1", self.operation
            return x + 1

    cupy.asarray, cupy.asnumpy, cupy.ElementwiseKernel = asarray, asnumpy, ElementwiseKernel
    cupy.empty = _on_current("empty")
    return cupy


MODULE = make_module()


class FakeCupyBackend(CupyBackend):
    """:class:`nnx.backend.CupyBackend` on the fake module ("fakecupy:N").

    The portable Ops: CupyOps's NumPy-style kernels need CuPy's array methods, which
    array-api-strict arrays lack (CupyOps is tested with NumPy for its module).
    """

    name = "fakecupy"
    ops_class = Ops

    @classmethod
    def module(cls) -> Any:
        return MODULE

    def namespace(self, cupy: Any) -> Any:
        return namespace()

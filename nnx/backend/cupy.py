"""CuPy on a CUDA device ("cuda", "cuda:N", "cupy:N", "gpu").

CuPy runs every kernel, and creates every array, on its *current* device, and
array-api-compat's CuPy namespace ignores ``device=`` in ``zeros``/``ones``/
``full``/``arange``.  So the backend's ``device_scope`` is its ``cuda.Device``:
nnx enters it around the work it does on the backend (a layer's forward and
backward, a loss, an optimizer step, a DataLoader batch, fit/evaluate), and
``cuda:1`` works whatever device is current.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy

from nnx.backend.base import Backend, BackendError, HostGenerator
from nnx.backend.cupy_ops import CupyOps

#: (id of the cupy module, device index) -> the result of the kernel probe, run once
_probed: dict[tuple[int, int], tuple[bool, str]] = {}


def device_index(device: str | None) -> int:
    """The CUDA device number of a spec's device part: None, "", "cuda", "gpu" -> 0; "1" -> 1."""
    text = (device or "").strip().lower()
    for prefix in ("cuda:", "gpu:"):
        text = text.removeprefix(prefix)
    if text in ("", "cuda", "gpu"):
        return 0
    if not text.isdigit():
        raise BackendError(f"a CUDA device is a number such as 'cuda:1', not {device!r}")
    return int(text)


def _toolkit_hint(cupy: Any, part: str) -> str:
    """The pip command that installs CUDA toolkit library ``part`` for this CuPy's CUDA."""
    try:
        major = cupy.cuda.runtime.runtimeGetVersion() // 1000
    except Exception:  # no answer: name the common case
        major = 12
    return (
        f"pip install 'nnx[cuda{major}]' (pulls cupy-cuda{major}x[ctk]) or "
        f"pip install 'cuda-toolkit[{part}]=={major}.*'"
    )


def _out_of_memory(cupy: Any, err: BaseException) -> bool:
    """Whether ``err`` says the device is out of memory (CuPy's pool or CUDA itself)."""
    memory = getattr(getattr(cupy, "cuda", None), "memory", None)
    oom = getattr(memory, "OutOfMemoryError", None)
    if isinstance(oom, type) and isinstance(err, oom):
        return True
    text = str(err).lower()  # cudaErrorMemoryAllocation, CUDA_ERROR_OUT_OF_MEMORY, cuBLAS's
    return any(
        m in text for m in ("out of memory", "out_of_memory", "memoryallocation", "alloc_failed")
    )


def probe(cupy: Any, index: int) -> tuple[bool, str]:
    """Compile and run one tiny elementwise kernel (NVRTC) and one matmul (cuBLAS) on
    device ``index``; (False, the missing library and its install command) on failure.

    The answer is kept for the process, except an out-of-memory failure: that says the
    device is full now (another process holds it), not that a library is missing, so it
    is reported as such and the next call probes again.
    """
    key = (id(cupy), index)
    if key in _probed:
        return _probed[key]
    result = True, ""
    stage = "nvrtc"  # the library the step being run needs
    with cupy.cuda.Device(index):
        try:
            add_one = cupy.ElementwiseKernel("float32 x", "float32 y", "y = x + 1", "nnx_probe")
            y = add_one(cupy.asarray(numpy.arange(4, dtype=numpy.float32)))
            if cupy.asnumpy(y).tolist() != [1.0, 2.0, 3.0, 4.0]:
                raise RuntimeError(f"the probe kernel computed {cupy.asnumpy(y)}")
            stage = "cublas"
            a = cupy.asarray(numpy.ones((2, 2), dtype=numpy.float32))
            if cupy.asnumpy(a @ a).tolist() != [[2.0, 2.0], [2.0, 2.0]]:
                raise RuntimeError("the probe matmul computed a wrong product")
        except Exception as err:
            if _out_of_memory(cupy, err):
                return False, (
                    f"CUDA device {index} is out of memory ({type(err).__name__}: {err}); "
                    "another process may hold it (JAX takes most of a GPU unless "
                    "XLA_PYTHON_CLIENT_PREALLOCATE=false). Not cached: the next call tries again"
                )
            text = str(err).lower()
            part = next((lib for lib in ("nvrtc", "cublas", "curand") if lib in text), stage)
            names = {"nvrtc": "NVRTC (the CUDA runtime compiler)", "cublas": "cuBLAS"}
            result = (
                False,
                (
                    f"CuPy starts but {names.get(part, part)} fails on device {index}: {err}. "
                    f"Install it: {_toolkit_hint(cupy, part)}"
                ),
            )
    _probed[key] = result
    return result


def _cuda_version(code: int) -> str:
    return f"{code // 1000}.{code % 1000 // 10}"


def _import_cupy() -> Any:
    import cupy

    return cupy


class CupyBackend(Backend):
    """CuPy on one CUDA device (one backend per device, however the spec spells it).

    Its generator is the portable :class:`~nnx.backend.base.HostGenerator`: draws
    are exact across backends for one seed, and its state is saved in checkpoints.
    """

    name = "cupy"
    ops_class = CupyOps

    @classmethod
    def module(cls) -> Any:
        """The ``cupy`` module (a test stand-in overrides this)."""
        return _import_cupy()

    @classmethod
    def device_lines(cls) -> list[str]:
        """CUDA runtime, driver and CuPy versions, then one line per device (``nnx info``)."""
        cupy = cls.module()
        runtime = cupy.cuda.runtime
        lines = [
            f"CUDA runtime {_cuda_version(runtime.runtimeGetVersion())}, "
            f"driver {_cuda_version(runtime.driverGetVersion())}, CuPy {cupy.__version__}"
        ]
        for i in range(runtime.getDeviceCount()):
            props = runtime.getDeviceProperties(i)
            name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            memory = props["totalGlobalMem"] / 2**30
            lines.append(
                f"cuda:{i}  {name}, {memory:.1f} GiB, compute {props['major']}.{props['minor']}"
            )
        return lines

    @classmethod
    def canonical_device(cls, device: str | None) -> str:
        try:
            return str(device_index(device))
        except BackendError:
            return device or ""

    @classmethod
    def available(cls, device: str | None = None) -> tuple[bool, str]:
        try:
            cupy = cls.module()
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
        try:
            index = device_index(device)
        except BackendError as err:
            return False, str(err)
        if not 0 <= index < count:
            return False, f"CUDA device {index} does not exist; this machine has {count}"
        return probe(cupy, index)

    def __init__(self, device: str | None = None) -> None:
        ok, why = self.available(device)
        if not ok:
            raise BackendError(why)
        cupy = self._cupy = self.module()
        self.device = cupy.cuda.Device(device_index(device))
        self.device_scope = self.device  # a cuda.Device is a re-entrant context manager
        self.host_memory = False
        self.array_type = cupy.ndarray
        with self.device:
            self.xp = self.namespace(cupy)
        super().__init__(device)

    def namespace(self, cupy: Any) -> Any:
        """The array-API namespace of ``cupy`` (array-api-compat's wrapper)."""
        return array_api_compat.array_namespace(cupy.empty(0))

    def asarray(self, host: Any, dtype: Any = None) -> Any:
        with self.device:
            return self._cupy.asarray(host, dtype=self.dtype(dtype))

    def to_numpy(self, x: Any) -> numpy.ndarray:
        with self.device:
            return self._cupy.asnumpy(x)

    def _same_device(self, x: Any) -> bool:
        return x.device == self.device

    def rng(self, seed: int | None) -> HostGenerator:
        return CupyGenerator(self, seed)

    def synchronize(self) -> None:
        self.device.synchronize()

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.device.id}"


class CupyGenerator(HostGenerator):
    """CuPy's random source: seeded NumPy draws copied to the device.

    Its state is NumPy's (JSON-serialisable), so checkpoints resume it exactly and
    one seed gives the same dropout masks on CuPy as on NumPy. A dropout mask costs
    a host draw and a copy, which is small next to the layers it masks.
    """

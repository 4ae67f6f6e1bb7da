"""CuPy on a CUDA device ("cuda", "cuda:N", "cupy:N")."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy

from nnx.backend.base import Backend, BackendError, Generator


class CupyBackend(Backend):
    """CuPy on one CUDA device; its generator draws on the GPU."""

    name = "cupy"

    @classmethod
    def available(cls, device: str | None = None) -> tuple[bool, str]:
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

    def to_numpy(self, x: Any) -> numpy.ndarray:
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
        super().__init__(backend, seed)
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

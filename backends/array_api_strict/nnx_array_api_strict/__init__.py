"""nnx backend for array-api-strict: the strictest array-API library, with fake devices.

Specs: "array_api_strict" (its CPU device), "array_api_strict:device1",
"array_api_strict:device2".  Arrays on different fake devices refuse to mix,
exactly like arrays on two GPUs, so tests catch anything created on the wrong
device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnx.backend import Backend, BackendError


class ArrayApiStrictBackend(Backend):
    """array_api_strict on one of its devices (CPU_DEVICE, device1, device2)."""

    name = "array_api_strict"

    @classmethod
    def available(cls, device: str | None = None) -> tuple[bool, str]:
        try:
            import array_api_strict  # noqa: F401
        except ImportError:
            return False, "array-api-strict is not installed: pip install array-api-strict"
        return True, ""

    def __init__(self, device: str | None = None) -> None:
        import array_api_strict as xp

        devices = {d._device: d for d in xp.__array_namespace_info__().devices()}
        name = device or "CPU_DEVICE"
        if name not in devices:
            raise BackendError(
                f"array_api_strict has no device {name!r}; choose one of {sorted(devices)}"
            )
        self.xp = xp
        self.device = devices[name]
        self.array_type = type(xp.empty(0))
        super().__init__(device)

    def _same_device(self, x: Any) -> bool:
        return x.device == self.device

    def to_numpy(self, x: Any) -> np.ndarray:
        # array_api_strict refuses implicit conversion; go through its CPU device explicitly
        cpu = self.xp.Device("CPU_DEVICE")
        return np.from_dlpack(x.to_device(cpu)).copy()

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.device._device}"

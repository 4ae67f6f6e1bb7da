"""nnx backend for PyTorch: specs "torch", "torch:cpu", "torch:cuda", "torch:cuda:N".

Only tensors are used (no autograd): nnx's own backward runs on torch's kernels.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import numpy as np

from nnx.backend import Backend, BackendError, Generator

_NOT_INSTALLED = "PyTorch is not installed: see https://pytorch.org/get-started"


class TorchBackend(Backend):
    """PyTorch on one device; ``xp`` is array_api_compat's torch namespace."""

    name = "torch"

    @classmethod
    def available(cls, device: str | None = None) -> tuple[bool, str]:
        if not (device or "").startswith("cuda") and "torch" not in sys.modules:
            # importing torch takes seconds: for the CPU, finding it is enough
            if importlib.util.find_spec("torch") is None:
                return False, _NOT_INSTALLED
            return True, ""
        try:
            import torch
        except ImportError:
            return False, _NOT_INSTALLED
        if device and device.startswith("cuda") and not torch.cuda.is_available():
            return False, f"torch {torch.__version__} sees no CUDA device"
        return True, ""

    def __init__(self, device: str | None = None) -> None:
        import array_api_compat.torch as xp
        import torch

        ok, why = self.available(device)
        if not ok:
            raise BackendError(why)
        supported = f"nnx-torch supports 'cpu' and 'cuda[:N]', not {device!r}"
        try:
            dev = torch.device(device or "cpu")
        except RuntimeError:
            raise BackendError(supported) from None
        if dev.type == "cuda":
            index = torch.cuda.current_device() if dev.index is None else dev.index
            if index >= torch.cuda.device_count():
                raise BackendError(f"CUDA device {index} does not exist for torch")
            dev = torch.device("cuda", index)
        elif dev.type != "cpu" or dev.index not in (None, 0):
            raise BackendError(supported)  # torch has one CPU device; "cpu:3" is not another
        else:
            dev = torch.device("cpu")
        self._torch, self.xp, self.device, self.array_type = torch, xp, dev, torch.Tensor
        self.host_memory = dev.type == "cpu"
        super().__init__(device)

    def asarray(self, host: Any, dtype: Any = None) -> Any:
        # always a copy, as on a GPU: a parameter never aliases the caller's host buffer
        return self._torch.asarray(host, dtype=self.dtype(dtype), device=self.device, copy=True)

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.detach().cpu().numpy()  # zero-copy view for CPU tensors; a copy from CUDA

    def _same_device(self, x: Any) -> bool:
        return x.device == self.device

    def rng(self, seed: int | None) -> Generator:
        return TorchGenerator(self, seed)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self._torch.cuda.synchronize(self.device)


class TorchGenerator(Generator):
    """Draws on the device with a seeded ``torch.Generator``."""

    def __init__(self, backend: TorchBackend, seed: int | None) -> None:
        self.backend, self._torch = backend, backend._torch
        self.gen = self._torch.Generator(device=backend.device)
        if seed is None:
            self.gen.seed()
        else:
            self.gen.manual_seed(seed)

    def uniform(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        b = self.backend
        return self._torch.rand(shape, generator=self.gen, dtype=b.dtype(dtype), device=b.device)

    def normal(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        b = self.backend
        return self._torch.randn(shape, generator=self.gen, dtype=b.dtype(dtype), device=b.device)

    def get_state(self) -> list[int]:
        return self.gen.get_state().tolist()

    def set_state(self, state: Any) -> None:
        if state is not None:
            self.gen.set_state(self._torch.tensor(state, dtype=self._torch.uint8))

"""nnx backend for JAX: specs "jax" (= "jax:cpu"), "jax:cpu", "jax:cpu:N", "jax:gpu", "jax:gpu:N".

JAX arrays are immutable: nnx updates by rebinding (``p.value -= u``). Starting the
backend sets two of JAX's process-wide options (see :func:`config_for`):
``jax_enable_x64`` (for float64 gradchecks; nnx names float32 everywhere), and, for a
GPU (any device but the CPU), ``jax_default_matmul_precision="highest"``: JAX computes
float32 matmuls and convolutions on a GPU in TF32 by default (errors near 1e-3), which
nnx's comparisons with NumPy and PyTorch reject. Every array the backend and its
generator create, the random key included, lives on the backend's device.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import numpy as np

from nnx.backend import Backend, BackendError, Generator


def _parse(device: str | None) -> tuple[str, int]:
    kind, _, index = (device or "cpu").partition(":")
    return ("gpu" if kind == "cuda" else kind), int(index or 0)


_NOT_INSTALLED = "JAX is not installed: pip install jax (or 'jax[cuda12]')"


def config_for(kind: str) -> dict[str, Any]:
    """The JAX options starting a backend on a ``kind`` ("cpu", "gpu", ...) device sets."""
    options: dict[str, Any] = {"jax_enable_x64": True}
    if kind != "cpu":  # TF32 (GPU) or bfloat16 passes (TPU) by default: ask for float32
        options["jax_default_matmul_precision"] = "highest"
    return options


class JaxBackend(Backend):
    """jax.numpy on one JAX device."""

    name = "jax"

    @classmethod
    def available(cls, device: str | None = None) -> tuple[bool, str]:
        if not device and "jax" not in sys.modules:
            # importing jax takes a second: for its default (CPU) device, finding it is enough
            if importlib.util.find_spec("jax") is None:
                return False, _NOT_INSTALLED
            return True, ""
        try:
            import jax
        except ImportError:
            return False, _NOT_INSTALLED
        kind, index = _parse(device)
        try:
            count = len(jax.devices(kind))
        except RuntimeError as err:
            return False, f"JAX has no {kind} device: {err}"
        if index >= count:
            return False, f"JAX {kind} device {index} does not exist; it has {count}"
        return True, ""

    def __init__(self, device: str | None = None) -> None:
        import jax
        import jax.numpy as jnp

        ok, why = self.available(device)
        if not ok:
            raise BackendError(why)
        kind, index = _parse(device)
        for option, value in config_for(kind).items():
            jax.config.update(option, value)
        self._jax, self.xp, self.device = jax, jnp, jax.devices(kind)[index]
        self._kind, self._index = kind, index
        self.array_type = type(jnp.zeros(0, device=self.device))
        self.host_memory = self.device.platform == "cpu"
        super().__init__(device)

    def asarray(self, host: Any, dtype: Any = None) -> Any:
        return self.xp.asarray(host, dtype=self.dtype(dtype), device=self.device)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.array(x)  # a writeable copy: JAX's own view of the buffer is read-only

    def rng(self, seed: int | None) -> Generator:
        return JaxGenerator(self, seed)

    def synchronize(self) -> None:
        self.xp.zeros((), device=self.device).block_until_ready()

    @property
    def spec(self) -> str:
        return f"jax:{self._kind}" + (f":{self._index}" if self._index else "")


class JaxGenerator(Generator):
    """A ``jax.random`` key on the backend's device, split for every draw."""

    def __init__(self, backend: JaxBackend, seed: int | None) -> None:
        self.backend, self._random = backend, backend._jax.random
        seed = int(np.random.SeedSequence(seed).generate_state(1)[0])  # None: fresh entropy
        jax = backend._jax
        with self._on_device():  # made there, then committed there (as set_state's key is)
            self.key = jax.device_put(self._random.PRNGKey(seed), backend.device)

    def _on_device(self) -> Any:
        """A block in which JAX creates arrays on the backend's device, not its default one."""
        return self.backend._jax.default_device(self.backend.device)

    def _split(self) -> Any:
        self.key, sub = self._random.split(self.key)
        return sub

    def uniform(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        with self._on_device():
            return self._random.uniform(self._split(), shape, dtype=self.backend.dtype(dtype))

    def normal(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        with self._on_device():
            return self._random.normal(self._split(), shape, dtype=self.backend.dtype(dtype))

    def get_state(self) -> list[int]:
        return self.key.tolist()  # two uint32 words

    def set_state(self, state: Any) -> None:
        if state is not None:
            self.key = self.backend.asarray(np.asarray(state, dtype=np.uint32), "uint32")

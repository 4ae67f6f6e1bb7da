"""nnx backend for JAX: specs "jax" (= "jax:cpu"), "jax:cpu", "jax:gpu", "jax:gpu:N".

JAX arrays are immutable: nnx updates by rebinding (``p.value -= u``). Starting the
backend turns on ``jax_enable_x64`` (for float64 gradchecks); nnx names float32 everywhere.
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
        jax.config.update("jax_enable_x64", True)
        kind, index = _parse(device)
        self._jax, self.xp, self.device = jax, jnp, jax.devices(kind)[index]
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
        index = self.device.id if self.device.platform != "cpu" else 0
        return f"jax:{self.device.platform}" + (f":{index}" if index else "")


class JaxGenerator(Generator):
    """A ``jax.random`` key on the backend's device, split for every draw."""

    def __init__(self, backend: JaxBackend, seed: int | None) -> None:
        self.backend, self._random = backend, backend._jax.random
        seed = int(np.random.SeedSequence(seed).generate_state(1)[0])  # None: fresh entropy
        self.set_state(self._random.PRNGKey(seed).tolist())

    def _split(self) -> Any:
        self.key, sub = self._random.split(self.key)
        return sub

    def uniform(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        return self._random.uniform(self._split(), shape, dtype=self.backend.dtype(dtype))

    def normal(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        return self._random.normal(self._split(), shape, dtype=self.backend.dtype(dtype))

    def get_state(self) -> list[int]:
        return self.key.tolist()  # two uint32 words

    def set_state(self, state: Any) -> None:
        if state is not None:
            self.key = self.backend.asarray(np.asarray(state, dtype=np.uint32), "uint32")

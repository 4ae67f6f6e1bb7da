"""Arrays between backends: which backend owns an array, host copies, device copies."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from nnx.backend.base import Backend, BackendError
from nnx.backend.context import current
from nnx.backend.registry import get_backend, started


def owner_of(x: Any, hint: Backend | None = None) -> Backend | None:
    """The started backend that owns array ``x`` (``hint`` first, then the current one), or None."""
    if hint is not None and hint.owns(x):
        return hint
    for backend in (current(), *started()):
        if backend.owns(x):
            return backend
    return None


def backend_of(x: Any, hint: Backend | None = None) -> Backend:
    """The started backend that owns array ``x``; BackendError when none does."""
    backend = owner_of(x, hint)
    if backend is None:
        raise BackendError(f"no started nnx backend owns this {describe(x)}")
    return backend


class OwnerCache:
    """The backend owning the arrays a loss or an optimizer is handed, looked up once per
    array type: the one way both find their ``xp`` and ``ops`` (layers cache theirs instead).

    A hit costs one type comparison, which matters in small-batch loops (XOR: ~40 us a step).
    """

    __slots__ = ("backend", "array_type")

    def __init__(self) -> None:
        self.backend: Backend | None = None
        self.array_type: type | None = None

    def of(self, x: Any) -> Backend | None:
        """The backend owning ``x`` (None when no started backend does)."""
        if type(x) is self.array_type:
            return self.backend
        backend = owner_of(x, self.backend)
        if backend is not None:
            self.backend = backend
            # one array type on several devices (CuPy): the type alone does not say which
            # backend, so such arrays take owner_of's first test (hint.owns) every call
            self.array_type = type(x) if backend.device_scope is None else None
        return backend


def spec_of(x: Any) -> str:
    """The device spec of a started backend owning ``x`` (for error messages)."""
    if isinstance(x, np.ndarray):
        return "cpu"
    backend = owner_of(x)
    return backend.spec if backend is not None else "<the input's device>"


def to_numpy(x: Any, copy: bool = False) -> np.ndarray:
    """Any array (NumPy, CuPy, a plugin's) as a host NumPy array.

    A host array comes back as it is unless ``copy`` is True: pass it when the
    result will be stored where in-place updates could reach the caller's data.
    """
    if isinstance(x, np.ndarray | np.generic | int | float | list | tuple):
        return np.array(x, copy=True) if copy else np.asarray(x)
    backend = owner_of(x)
    if backend is not None:
        host = backend.to_numpy(x)
    else:
        host = _from_any_library(x)
    # device copies are already fresh; zero-copy views (DLPack, CPU tensors) are not
    return host.copy() if copy and not host.flags.owndata else host


def _from_any_library(x: Any) -> np.ndarray:
    """An array no started backend owns (any library, any device) on the host, via DLPack.

    ``device="cpu"`` asks the producer to copy GPU memory to the host (NumPy refuses a
    GPU buffer otherwise, and CuPy refuses the implicit conversion of ``np.asarray``).
    """
    try:
        return np.from_dlpack(x, device="cpu")
    except (AttributeError, TypeError, BufferError, ValueError, RuntimeError) as dlpack_error:
        try:
            host = np.asarray(x)
            if host.dtype == object:  # not an array at all (None, a dict, a model, ...)
                raise TypeError(f"numpy.asarray gave an object array for {type(x).__name__}")
            return host
        except Exception:
            raise TypeError(
                f"cannot copy this {describe(x)} to the host: DLPack failed ({dlpack_error}) "
                "and so did numpy.asarray; pass a NumPy array, or an array of a library "
                "that supports DLPack"
            ) from dlpack_error


def asarray(x: Any, device: str | Backend | None = None, dtype: Any = None) -> Any:
    """Put host data or another backend's array on ``device`` (default: current).

    Without ``dtype``, floating data becomes float32 and integer data keeps its type;
    with one (a name such as "float64", or a dtype), the result has that dtype.
    """
    backend = get_backend(device)
    if dtype is None:
        if backend.owns(x) and x.dtype == backend.xp.float32:
            return x
        return move(x, backend)
    want = backend.dtype(dtype)
    if backend.owns(x):
        return x if x.dtype == want else backend.xp.astype(x, want)
    return backend.asarray(to_numpy(x), want)


def move(
    x: Any, backend: Backend, float_dtype: str | None = None, keep_floats: bool = False
) -> Any:
    """``x`` copied onto ``backend``, casting floating data to ``float_dtype``.

    Without ``float_dtype``, floats become float32, or keep their dtype when
    ``keep_floats``; other dtypes are always kept.
    """
    host = to_numpy(x)
    if host.dtype.kind in "fc" and not (keep_floats and float_dtype is None):
        name = float_dtype or "float32"
    else:
        name = host.dtype.name
    return backend.asarray(host, name)


def describe(x: Any) -> str:
    """ "array on numpy:cpu", "array on array_api_strict:device1", ... for error messages."""
    for backend in started():
        if backend.owns(x):
            return f"array on {backend.spec}"
    try:
        ns = array_api_compat.array_namespace(x).__name__.replace("array_api_compat.", "")
        return f"array of {ns} on {array_api_compat.device(x)}"
    except TypeError:
        return f"{type(x).__module__}.{type(x).__name__} (not an array)"

"""Parameter: a trainable array, its gradient and the optimizer state that moves with it."""

from __future__ import annotations

from typing import Any

from nnx.backend import Backend, move


class Parameter:
    """A trainable array: ``value``, its accumulated ``grad``, a name and optimizer ``state``."""

    __slots__ = ("value", "grad", "name", "state")

    def __init__(self, value: Any, name: str = "") -> None:
        self.value = value
        self.grad: Any = None
        self.name = name
        self.state: dict[str, Any] = {}  # optimizer state lives (and moves) with the parameter

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the value."""
        return tuple(self.value.shape)

    def accumulate(self, grad: Any) -> None:
        """Add ``grad`` into ``self.grad`` (the first call takes ``grad`` itself, no copy)."""
        if self.grad is None:
            self.grad = grad
        else:
            self.grad += grad  # in place where writeable, a rebind where immutable

    def to(self, backend: Backend, dtype: str | None = None) -> None:
        """Move value, grad and optimizer state to ``backend`` (optionally casting floats)."""

        def moved(x: Any) -> Any:
            if x is None or not hasattr(x, "shape"):
                return x
            return move(x, backend, dtype, keep_floats=dtype is None)

        self.value = moved(self.value)
        self.grad = moved(self.grad)
        self.state = {k: moved(v) for k, v in self.state.items()}

    def __repr__(self) -> str:
        return f"Parameter({self.name or '?'}, shape={self.shape})"

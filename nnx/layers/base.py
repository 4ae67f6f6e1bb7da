"""Parameter, Layer and Sequential: the contracts every layer follows.

``y = layer(x)`` runs forward and, in training mode, keeps what backward needs.
``dx = layer.backward(dy)`` returns d loss / d x and *accumulates* into each
``Parameter.grad``.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Iterator
from typing import Any

from nnx.backend import Backend, current, describe, get_backend, move, spec_of, to_numpy
from nnx.layers.plan import plan
from nnx.parameter import Parameter

__all__ = ["Layer", "Parameter", "Sequential", "dtype_name"]

FLOAT_DTYPES = ("float16", "float32", "float64")


def dtype_name(xp: Any, dtype: Any) -> str:
    """The standard name ("float32", ...) of a dtype of namespace ``xp``."""
    for name in (*FLOAT_DTYPES, "int64", "int32", "uint8", "bool"):
        if hasattr(xp, name) and dtype == getattr(xp, name):
            return name
    return str(dtype)


def _on_device(backward: Any) -> Any:
    """``backward`` run inside its layer's backend device scope (free when it has none)."""

    @functools.wraps(backward)
    def scoped(self: Layer, dy: Any) -> Any:
        scope = self.backend.device_scope
        if scope is None:
            return backward(self, dy)
        with scope:
            return backward(self, dy)

    scoped._nnx_scoped = True  # type: ignore[attr-defined]
    return scoped


class Layer:
    """Base class: explicit forward/backward, train/eval, parameters, devices, state."""

    def __init__(self) -> None:
        self.backend = current()
        self.xp = self.backend.xp  # cached: no namespace lookup per call
        self.ops = self.backend.ops  # the backend's kernel table, cached likewise
        self.training = True
        self.requires_input_grad = True
        self._buffers: list[str] = []
        self._saved: tuple[Any, ...] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Run every ``backward`` a subclass defines on its backend's device (see __call__)."""
        super().__init_subclass__(**kwargs)
        body = cls.__dict__.get("backward")
        if body is not None and not getattr(body, "_nnx_scoped", False):
            cls.backward = _on_device(body)
            cls._backward_body = body  # Sequential runs its layers' bodies: one scope, not N

    # -- running ------------------------------------------------------------------
    def __call__(self, x: Any) -> Any:
        backend = self.backend
        if not backend.owns(x):
            raise self._foreign(x)
        scope = backend.device_scope  # CuPy: its cuda.Device, so cuda:1 works; else None
        if scope is None:
            return self.forward(x)
        with scope:
            return self.forward(x)

    def forward(self, x: Any) -> Any:
        """Compute the output; in training mode keep what backward needs."""
        raise NotImplementedError

    def backward(self, dy: Any) -> Any:
        """Return d loss / d input and accumulate parameter gradients."""
        raise NotImplementedError

    _backward_body = backward  # the unscoped body of backward (set per subclass)

    def _foreign(self, x: Any) -> Exception:
        if not hasattr(x, "shape"):
            return TypeError(
                f"{self.label()} expects an array on {self.backend.spec}, got "
                f"{type(x).__name__}; convert it with nnx.asarray(x)"
            )
        return TypeError(
            f"{self.label()} has its parameters on {self.backend.spec} but the input is an "
            f"{describe(x)}. Move the model with model.to({spec_of(x)!r}) or the data with "
            f"nnx.asarray(x, device={self.backend.spec!r})"
        )

    # -- what forward keeps for backward ----------------------------------------------
    def save_for_backward(self, *values: Any) -> None:
        """Keep ``values`` for :meth:`backward` in training mode; keep nothing in eval mode."""
        self._saved = values if self.training else None

    def saved(self) -> tuple[Any, ...]:
        """What the last forward kept, or the no-forward error (eval mode or no forward yet)."""
        saved = self._saved
        if saved is None:
            raise self._no_forward()
        return saved

    def clear(self) -> None:
        """Drop what the last forward kept for backward."""
        self._saved = None

    def _no_forward(self) -> RuntimeError:
        if not self.training:
            why = "the layer is in eval mode, which keeps nothing for backward; call .train()"
        else:
            why = "call the layer on an input first"
        return RuntimeError(f"{self.label()}.backward() called without a forward pass: {why}")

    def label(self) -> str:
        """Short name used in error messages."""
        return f"{type(self).__name__}({self.extra_repr()})"

    # -- structure ----------------------------------------------------------------
    def children(self) -> Iterator[tuple[str, Layer]]:
        """(name, layer) for each direct sub-layer."""
        for name, value in vars(self).items():
            if isinstance(value, Layer):
                yield name, value

    def own_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """(name, parameter) for the parameters this layer holds directly."""
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield name, value

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Every parameter of this layer and its sub-layers, with dotted names."""
        for name, p in self.own_parameters():
            yield prefix + name, p
        for name, child in self.children():
            yield from child.named_parameters(f"{prefix}{name}.")

    def parameters(self) -> list[Parameter]:
        """Every trainable parameter, in a stable order."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Layer, str]]:
        """(dotted name, owner, attribute) for non-trainable state such as running means."""
        for name in self._buffers:
            yield prefix + name, self, name
        for name, child in self.children():
            yield from child.named_buffers(f"{prefix}{name}.")

    def layers(self) -> Iterator[Layer]:
        """This layer and every sub-layer, depth first."""
        yield self
        for _, child in self.children():
            yield from child.layers()

    def zero_grad(self) -> None:
        """Forget accumulated gradients (set to None, as PyTorch does by default)."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Layer:
        """Training mode (keep activations for backward; dropout and batch stats on)."""
        for layer in self.layers():
            layer.training = mode
        return self

    def eval(self) -> Layer:
        """Evaluation mode: keep nothing for backward, dropout off, running stats used."""
        return self.train(False)

    def __deepcopy__(self, memo: dict[int, Any]) -> Layer:
        """``copy.deepcopy(model)``: new parameters, buffers and state on the same backend.

        The namespace ``xp`` is shared (a module, which cannot be copied); the backend and
        its kernel table share themselves (``Backend.__deepcopy__``).
        """
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for name, value in vars(self).items():
            setattr(new, name, value if name == "xp" else copy.deepcopy(value, memo))
        return new

    def to(self, device: str | Backend | None = None, dtype: str | None = None) -> Layer:
        """Move parameters, gradients, optimizer state and buffers to a device (and dtype)."""
        backend = get_backend(device) if device is not None else self.backend
        for p in self.parameters():
            p.to(backend, dtype)
        for _, owner, attr in self.named_buffers():
            setattr(owner, attr, move(getattr(owner, attr), backend, dtype, keep_floats=True))
        for layer in self.layers():
            layer.backend = backend
            layer.xp = backend.xp
            layer.ops = backend.ops
            layer.clear()
        return self

    @property
    def dtype(self) -> str:
        """Name of the parameters' floating dtype ("float32" unless moved)."""
        for p in self.parameters():
            return dtype_name(self.xp, p.value.dtype)
        return "float32"

    # -- state --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Parameter values and buffers by dotted name (arrays on the model's device)."""
        state = {name: p.value for name, p in self.named_parameters()}
        for name, owner, attr in self.named_buffers():
            state[name] = getattr(owner, attr)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy arrays (from any backend or the host) into this model, checking names and shapes."""
        params = dict(self.named_parameters())
        buffers = {name: (owner, attr) for name, owner, attr in self.named_buffers()}
        expected = set(params) | set(buffers)
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise KeyError(
                f"state does not match {type(self).__name__}: missing {sorted(missing)}, "
                f"unexpected {sorted(unexpected)}"
            )
        updates = []
        for name, value in state.items():
            host = to_numpy(value, copy=True)  # never share memory with the caller's arrays
            if name in params:
                target, owner, attr = params[name].value, params[name], "value"
            else:
                owner, attr = buffers[name]
                target = getattr(owner, attr)
            if tuple(host.shape) != tuple(target.shape):
                raise ValueError(
                    f"cannot load {name!r}: the checkpoint has shape {tuple(host.shape)}, "
                    f"the model has {tuple(target.shape)} (a different architecture?)"
                )
            updates.append((owner, attr, host, dtype_name(self.xp, target.dtype)))
        for owner, attr, host, dtype in updates:  # all checked first: no half-loaded model
            setattr(owner, attr, self.backend.asarray(host, dtype))

    # -- description ----------------------------------------------------------------
    def extra_repr(self) -> str:
        """Arguments shown inside the repr's parentheses."""
        return ""

    def __repr__(self) -> str:
        kids = list(self.children())
        if not kids:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in kids:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the output for an input of ``input_shape`` (found by a forward pass)."""
        xp, dtype = self.xp, getattr(self.xp, self.dtype)
        was = self.training
        self.eval()
        try:
            with self.backend.activate():
                x = xp.zeros(tuple(input_shape), dtype=dtype, device=self.backend.device)
                return tuple(self.forward(x).shape)
        finally:
            self.train(was)

    def summary(self, input_shape: tuple[int, ...]) -> str:
        """A table of sub-layers, output shapes and parameter counts for ``input_shape``."""
        rows = [("Layer", "Output shape", "Params")]
        shape = tuple(input_shape)
        kids = [child for _, child in self.children()] or [self]
        for child in kids:
            shape = child.output_shape(shape)
            count = sum(math.prod(p.shape) for p in child.parameters())
            rows.append((child.label(), str(shape), f"{count:,}"))
        total = sum(math.prod(p.shape) for p in self.parameters())
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        rule = "-" * (sum(widths) + 4)
        out = [rule]
        for i, r in enumerate(rows):
            out.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}")
            if i == 0:
                out.append(rule)
        out += [rule, f"Total params: {total:,} ({self.dtype}, {self.backend.spec})"]
        return "\n".join(out)


class Sequential(Layer):
    """Layers applied one after another; backward runs them in reverse.

    Two exact pairs run another way with the same results (see :mod:`nnx.layers.plan`):
    a ReLU followed by a MaxPool2d runs as the pool, then the ReLU; a Linear followed by
    a ReLU runs as one step.  Calling the layers one by one runs them as listed.
    """

    def __init__(self, *layers: Layer) -> None:
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], list | tuple):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential item {i} is a {type(layer).__name__}, not a Layer")
        self._sequence = list(layers)
        self._plan(start=0)

    def children(self) -> Iterator[tuple[str, Layer]]:
        for i, layer in enumerate(self._sequence):
            yield str(i), layer

    def __getitem__(self, index: int) -> Layer:
        return self._sequence[index]

    def __len__(self) -> int:
        return len(self._sequence)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self._sequence)

    def forward(self, x: Any) -> Any:
        for step in self._forward_steps:
            x = step.forward(x)
        return x

    def backward(self, dy: Any) -> Any:
        for step in self._backward_steps:
            dy = step(dy)  # this call's device scope is already entered
        return dy if self.requires_input_grad else None

    @property
    def requires_input_grad(self) -> bool:
        """When False, backward skips the work that only the input gradient needs."""
        return self._requires_input_grad

    @requires_input_grad.setter
    def requires_input_grad(self, value: bool) -> None:
        self._requires_input_grad = value
        layers = getattr(self, "_sequence", [])
        for layer in layers:
            layer.requires_input_grad = True
        start = 0
        if not value:
            # layers before the first one with parameters need no backward at all
            start = next((i for i, lay in enumerate(layers) if lay.parameters()), len(layers))
            if start < len(layers):
                layers[start].requires_input_grad = False
        self._plan(start)

    def _plan(self, start: int) -> None:
        """The forward steps, and the backward steps from layer ``start`` (the first that
        needs a backward); see :func:`nnx.layers.plan.plan`."""
        layers = getattr(self, "_sequence", [])  # Layer.__init__ runs the setter before it exists
        self._forward_steps, self._backward_steps = plan(layers, start)

    def add(self, layer: Layer) -> Sequential:
        """Append a layer (Keras style)."""
        self._sequence.append(layer)
        self.requires_input_grad = self._requires_input_grad
        return self

"""Optimizers and learning-rate schedules.

State (momenta, moments) lives in ``Parameter.state``, so it sits on the
parameter's device and moves with ``model.to(...)``.  Updates use augmented
assignment on attributes (``p.value -= u``): in place where arrays are
writeable, a rebind where they are immutable (JAX).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from nnx.backend import Backend, BackendError, OwnerCache, backend_of, describe, to_numpy
from nnx.optim_state import check_optimizer_state
from nnx.parameter import Parameter


class Optimizer:
    """Base class: holds parameters, a learning rate and the step count."""

    #: names of the per-parameter state arrays this optimizer keeps
    state_names: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got no parameters; pass model.parameters()")
        for p in self.params:
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizer expects nnx Parameters, got {type(p).__name__}")
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.lr = float(lr)
        self.steps = 0
        self._cache: dict[Any, tuple[Any, ...]] = {}  # see _constants
        self._owner = OwnerCache()

    def backend(self, p: Parameter) -> Backend:
        """The backend owning ``p`` (its ``xp`` and ``ops``), found as losses find theirs."""
        backend = self._owner.of(p.value)
        if backend is None:
            raise BackendError(f"no started nnx backend owns {p!r}, an {describe(p.value)}")
        return backend

    def zero_grad(self) -> None:
        """Forget accumulated gradients."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        self.steps += 1
        scope = self.backend(self.params[0]).device_scope
        if scope is None:
            self._update_all()
        else:
            with scope:  # CuPy: update on the parameters' device, whatever device is current
                self._update_all()

    def _update_all(self) -> None:
        for p in self.params:
            if p.grad is not None:
                self.update(p, p.grad)

    def update(self, p: Parameter, g: Any) -> None:
        """Apply one update to ``p`` given its gradient ``g``."""
        raise NotImplementedError

    def _state(self, p: Parameter, name: str) -> Any:
        """Zero-initialised state array ``name`` of ``p``, created on its device."""
        s = p.state.get(name)
        if s is None:
            s = p.state[name] = p.value * 0.0  # same dtype, same device, fresh buffer
        return s

    def _constants(self, p: Parameter, values: tuple[float, ...]) -> tuple[Any, ...]:
        """``values`` as 0-d arrays of ``p``'s dtype on its device, made once and cached.

        An array-with-array operation skips the conversion of a Python scalar that
        every ``array * 0.9`` pays (on NumPy it costs as much as a small operation
        itself). Every optimizer passes its constant hyper-parameters (momentum,
        betas, alpha, weight decay) through here; not the learning rate or Adam's
        per-step bias corrections, which change (a host-to-device copy each time on a GPU).
        """
        x = p.value
        backend = self.backend(p)  # one per device: a key even where devices are unhashable
        try:
            key = (backend, x.dtype, values)
            hit = self._cache.get(key)
        except TypeError:  # an unhashable dtype: plain scalars
            return values
        if hit is None:
            if len(self._cache) > 32:  # hyper-parameters changed many times: start over
                self._cache.clear()
            hit = self._cache[key] = tuple(backend.asarray(v, x.dtype) for v in values)
        return hit

    # -- state ---------------------------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        """The scalar settings saved with the state."""
        return {"lr": self.lr}

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters, step count and per-parameter state (host NumPy arrays)."""
        return {
            "type": type(self).__name__,
            "steps": self.steps,
            "hyperparameters": self.hyperparameters(),
            "state": [{k: to_numpy(v) for k, v in p.state.items()} for p in self.params],
        }

    def check_state(self, state: Any) -> None:
        """Raise ValueError naming the problem if ``state`` cannot be loaded into this optimizer.

        Checks the optimizer type, the step count, every hyperparameter (known
        names only, each of the right type and range) and every state array
        (known names, the parameter's shape, a floating dtype).
        """
        check_optimizer_state(self, state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` onto the parameters' devices (checked first)."""
        self.check_state(state)
        for p, saved in zip(self.params, state["state"], strict=True):
            backend = backend_of(p.value)
            p.state = {}
            for k, v in saved.items():
                host = to_numpy(v, copy=True)  # updated in place later: never the caller's memory
                p.state[k] = backend.asarray(host, host.dtype.name)
        self.steps = int(state["steps"])
        for k, v in state["hyperparameters"].items():
            setattr(self, k, tuple(v) if isinstance(v, list) else v)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """SGD with optional momentum, Nesterov momentum and (coupled) weight decay, as PyTorch."""

    state_names = ("momentum",)

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }

    def update(self, p: Parameter, g: Any) -> None:
        if self.weight_decay:
            (decay,) = self._constants(p, (self.weight_decay,))
            g = g + decay * p.value
        momentum = self.momentum
        if momentum:
            state = p.state
            buf = state.get("momentum")
            if buf is None:
                buf = state["momentum"] = g * 1.0  # a copy: g may be aliased by p.grad
            else:
                (mu,) = self._constants(p, (momentum,))
                ops = self.backend(p).ops
                if not self.nesterov:  # the common case: both sweeps in one kernel
                    p.value, state["momentum"] = ops.momentum_step(p.value, buf, g, mu, self.lr)
                    return
                buf = state["momentum"] = ops.momentum_update(buf, g, mu)
            g = g + momentum * buf if self.nesterov else buf
        p.value = self.backend(p).ops.sub_scaled(p.value, self.lr, g)


class Adam(Optimizer):
    """Adam (Kingma & Ba); ``weight_decay`` is added to the gradient, as in PyTorch's Adam."""

    decoupled = False
    state_names = ("m", "v")

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
        }

    def step(self) -> None:
        b1, b2 = self.betas
        t = self.steps + 1
        # Bias corrections folded into two scalars, computed once per step:
        # lr / (1 - b1^t) * m / (sqrt(v) / c + eps) = step_size * m / (sqrt(v) + eps * c)
        # with c = sqrt(1 - b2^t) and step_size = lr * c / (1 - b1^t).
        root_c2 = math.sqrt(1.0 - b2**t)
        self._step_size = self.lr * root_c2 / (1.0 - b1**t)
        self._eps_hat = self.eps * root_c2
        self._hyper = (b1, 1.0 - b1, b2, 1.0 - b2)
        super().step()

    def update(self, p: Parameter, g: Any) -> None:
        if self.weight_decay:
            if self.decoupled:
                p.value -= (self.lr * self.weight_decay) * p.value
            else:
                (decay,) = self._constants(p, (self.weight_decay,))
                g = g + decay * p.value
        betas = self._constants(p, self._hyper)
        state = p.state
        m, v = state.get("m"), state.get("v")
        if m is None or v is None:
            m, v = self._state(p, "m"), self._state(p, "v")
        ops = self.backend(p).ops
        p.value, state["m"], state["v"] = ops.adam_step(
            p.value, m, v, g, betas, self._step_size, self._eps_hat
        )


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), default 0.01 as in PyTorch."""

    decoupled = True

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)


class RMSprop(Optimizer):
    """RMSprop as in PyTorch: v = a v + (1 - a) g^2, p -= lr g / (sqrt(v) + eps); optional momentum."""

    state_names = ("square_avg", "momentum")

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 0.01,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        self.alpha, self.eps, self.momentum, self.weight_decay = alpha, eps, momentum, weight_decay

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "alpha": self.alpha,
            "eps": self.eps,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
        }

    def update(self, p: Parameter, g: Any) -> None:
        if self.weight_decay:
            (decay,) = self._constants(p, (self.weight_decay,))
            g = g + decay * p.value
        alpha, rest = self._constants(p, (self.alpha, 1.0 - self.alpha))
        v = self._state(p, "square_avg")
        v *= alpha
        v += rest * (g * g)
        p.state["square_avg"] = v
        denom = v**0.5
        denom += self.eps
        if self.momentum:
            (mu,) = self._constants(p, (self.momentum,))
            buf = self._state(p, "momentum")
            buf = p.state["momentum"] = self.backend(p).ops.momentum_update(buf, g / denom, mu)
            p.value -= self.lr * buf
        else:
            p.value -= self.lr * (g / denom)


# -- learning-rate schedules -----------------------------------------------------------


class Schedule:
    """Sets ``optimizer.lr`` from the epoch count; call ``step()`` once per epoch."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.epoch = 0
        optimizer.lr = self.lr_at(0)

    def lr_at(self, epoch: int) -> float:
        """Learning rate for ``epoch`` (0-based)."""
        raise NotImplementedError

    def step(self) -> float:
        """Advance one epoch and return the new learning rate."""
        self.epoch += 1
        self.optimizer.lr = self.lr_at(self.epoch)
        return self.optimizer.lr

    def state_dict(self) -> dict[str, Any]:
        """The epoch count and base learning rate."""
        return {"epoch": self.epoch, "base_lr": self.base_lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.epoch, self.base_lr = int(state["epoch"]), float(state["base_lr"])
        self.optimizer.lr = self.lr_at(self.epoch)


class StepLR(Schedule):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineLR(Schedule):
    """Cosine decay from the base rate to ``min_lr`` over ``epochs``."""

    def __init__(self, optimizer: Optimizer, epochs: int, min_lr: float = 0.0) -> None:
        self.epochs, self.min_lr = epochs, min_lr
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        t = min(epoch, self.epochs) / self.epochs
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * t))


class WarmupLR(Schedule):
    """Linear warm-up from ``start_factor * lr`` over ``warmup`` epochs, then ``after`` (or flat)."""

    def __init__(
        self,
        optimizer: Optimizer,
        warmup: int,
        start_factor: float = 0.1,
        after: Schedule | None = None,
    ) -> None:
        self.warmup, self.start_factor, self.after = warmup, start_factor, after
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        if epoch < self.warmup:
            frac = self.start_factor + (1 - self.start_factor) * epoch / self.warmup
            return self.base_lr * frac
        if self.after is not None:
            return self.after.lr_at(epoch - self.warmup)
        return self.base_lr

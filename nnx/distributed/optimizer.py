"""DistributedOptimizer: average gradients across ranks in flat buckets, then step."""

from __future__ import annotations

import math
from typing import Any

import array_api_compat

from nnx.layers.base import dtype_name
from nnx.optim import Optimizer
from nnx.parameter import Parameter

DEFAULT_BUCKET_MB = 25.0


def plan_buckets(params: list[Parameter], bucket_bytes: int) -> list[list[int]]:
    """Parameter indices grouped into buckets of one dtype and at most ``bucket_bytes``.

    Parameters keep their order; one larger than a bucket gets a bucket of its own.
    """
    groups: list[list[int]] = []
    open_by_dtype: dict[str, tuple[list[int], list[int]]] = {}  # dtype -> (bucket, [bytes])
    for i, p in enumerate(params):
        x = p.value
        dtype = dtype_name(array_api_compat.array_namespace(x), x.dtype)
        nbytes = math.prod(x.shape) * _itemsize(dtype)
        bucket = open_by_dtype.get(dtype)
        if bucket is None or (bucket[0] and bucket[1][0] + nbytes > bucket_bytes):
            bucket = ([], [0])
            open_by_dtype[dtype] = bucket
            groups.append(bucket[0])
        bucket[0].append(i)
        bucket[1][0] += nbytes
    return groups


def _itemsize(dtype: str) -> int:
    digits = "".join(c for c in dtype if c.isdigit())
    return int(digits) // 8 if digits else 1


class DistributedOptimizer:
    """Wrap an optimizer so that ``step()`` first averages every gradient across ranks.

    Gradients travel in flat buckets of at most ``bucket_mb`` megabytes (one
    collective per bucket), made on the first step and reused after.  Every
    rank must call ``step()`` the same number of times.  Everything else
    (``zero_grad``, ``lr``, schedules, ``state_dict``, ``nnx.save`` /
    ``nnx.load``) is the wrapped optimizer's.  After ``step()`` each
    ``Parameter.grad`` holds the averaged gradient; on NumPy it is a view of
    the bucket, valid until the next step.
    """

    def __init__(
        self, optimizer: Optimizer, comm: Any = None, *, bucket_mb: float = DEFAULT_BUCKET_MB
    ) -> None:
        if isinstance(optimizer, DistributedOptimizer):
            raise TypeError("this optimizer is already a DistributedOptimizer")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"DistributedOptimizer wraps an nnx Optimizer, got {type(optimizer).__name__}"
            )
        if bucket_mb <= 0:
            raise ValueError(f"bucket_mb must be positive, got {bucket_mb}")
        if comm is None:
            from nnx.distributed.runtime import init

            comm = init()
        object.__setattr__(self, "optimizer", optimizer)
        object.__setattr__(self, "comm", comm)
        object.__setattr__(self, "bucket_bytes", int(bucket_mb * 2**20))
        object.__setattr__(self, "buckets", None)  # [(param indices, bucket)] after step 1

    # the wrapped optimizer's attributes (lr, steps, params, ...) read and write through
    def __getattr__(self, name: str) -> Any:
        return getattr(self.optimizer, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.optimizer, name, value)

    def _make_buckets(self) -> list[tuple[list[int], Any]]:
        params = self.optimizer.params
        out = []
        for indices in plan_buckets(params, self.bucket_bytes):
            values = [params[i].value for i in indices]
            dtype = dtype_name(array_api_compat.array_namespace(values[0]), values[0].dtype)
            out.append((indices, self.comm.make_bucket(values, dtype)))
        return out

    def synchronize_gradients(self) -> None:
        """Replace every parameter's gradient by its mean over ranks (a missing one counts as 0)."""
        params = self.optimizer.params
        # CuPy: buckets and averages on the parameters' GPU, whatever device is current
        with self.optimizer.backend(params[0]).activate():
            if self.buckets is None:
                object.__setattr__(self, "buckets", self._make_buckets())
            for indices, bucket in self.buckets:
                group = [params[i] for i in indices]
                averaged = bucket.average([p.grad for p in group], [p.value for p in group])
                for p, g in zip(group, averaged, strict=True):
                    p.grad = g

    def step(self) -> None:
        """Average the gradients across ranks, then take the wrapped optimizer's step."""
        self.synchronize_gradients()  # also with one rank: the same code path everywhere
        self.optimizer.step()

    def zero_grad(self) -> None:
        """Forget accumulated gradients."""
        self.optimizer.zero_grad()

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimizer's state (identical on every rank)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the wrapped optimizer's state."""
        self.optimizer.load_state_dict(state)

    def __repr__(self) -> str:
        return f"DistributedOptimizer({self.optimizer!r}, {self.comm!r})"

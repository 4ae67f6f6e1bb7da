"""A small persistent thread pool for the CPU kernels (NumPy releases the GIL in copies and ufuncs).

``parallel_for(n, body, work)`` splits ``range(n)`` into one contiguous chunk per
thread and runs ``body(lo, hi)`` on each, the calling thread taking the first
chunk.  Work below :data:`MIN_PARALLEL` elements runs as a single ``body(0, n)``
call: handing a chunk to another thread costs more than a small copy or ufunc
takes.

The splitting is opt-in: one thread unless :func:`set_num_threads` or the
environment variable ``NNX_NUM_THREADS`` says otherwise (``blas_threads()`` is the
BLAS pool's count, the natural choice on idle cores; BLAS calls and these chunks
never run at the same time, so the two pools share the cores).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

__all__ = [
    "MIN_PARALLEL",
    "blas_threads",
    "forced",
    "get_num_threads",
    "parallel_for",
    "set_num_threads",
    "worth_splitting",
]

#: elements a kernel touches below which it stays on one thread: below it, a 2-way
#: split of an elementwise ufunc takes longer than one call (docs/performance.md)
MIN_PARALLEL = 1 << 18

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_threads: int | None = None
_min_parallel = MIN_PARALLEL


def _forget_pool_after_fork() -> None:
    """A forked child has none of the parent's worker threads: start a new pool if needed."""
    global _pool, _lock
    _pool, _lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _default_threads() -> int:
    env = os.environ.get("NNX_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(
                f"NNX_NUM_THREADS must be a positive integer, got {env!r}; unset it or set e.g. 2"
            ) from None
        if n < 1:
            raise ValueError(f"NNX_NUM_THREADS must be at least 1, got {n}")
        return n
    # One thread unless asked: where BLAS already uses every core, splitting nnx's
    # kernels too made the CNN steps slower (docs/performance.md, "Threads").
    return 1


def blas_threads() -> int:
    """The BLAS pool's thread count (threadpoolctl, when installed; else the core count):
    the natural value for ``set_num_threads`` on a machine with idle cores."""
    try:
        from threadpoolctl import threadpool_info

        blas = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
        if blas:
            return max(1, max(blas))
    except Exception:  # threadpoolctl missing or unable to inspect: fall back
        pass
    return max(1, os.cpu_count() or 1)


def get_num_threads() -> int:
    """How many threads nnx's CPU kernels split large work over."""
    global _threads
    if _threads is None:
        _threads = _default_threads()
    return _threads


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for nnx's CPU kernels (1 turns the splitting off).

    BLAS keeps its own setting (``threadpoolctl.threadpool_limits`` or
    ``OPENBLAS_NUM_THREADS``); keep the two equal to avoid oversubscribing cores.
    """
    global _threads, _pool
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads needs a positive integer, got {n!r}")
    with _lock:
        _threads = n
        if _pool is not None:
            _pool.shutdown(wait=True)
            _pool = None


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None or _pool._max_workers < workers:  # noqa: SLF001
            if _pool is not None:
                _pool.shutdown(wait=True)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nnx-kernel")
        return _pool


def chunks(n: int, parts: int) -> list[tuple[int, int]]:
    """``range(n)`` as ``parts`` (at most ``n``) contiguous, nearly equal ``(lo, hi)`` ranges."""
    parts = max(1, min(parts, n))
    step, extra = divmod(n, parts)
    out, lo = [], 0
    for i in range(parts):
        hi = lo + step + (1 if i < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def worth_splitting(work: int) -> bool:
    """Whether ``parallel_for`` would split ``work`` elements (kernels take a plain path if not)."""
    threads = _threads if _threads is not None else get_num_threads()
    return threads > 1 and work >= _min_parallel


def parallel_for(n: int, body: Callable[[int, int], None], work: int) -> None:
    """Run ``body(lo, hi)`` over ``range(n)`` split across the threads (one call when small).

    ``work`` is the number of elements the whole loop touches; below the
    threshold, or with one thread, ``body(0, n)`` runs on the calling thread.
    ``body`` must write disjoint parts of its outputs for disjoint ranges.
    """
    threads = get_num_threads()
    if threads < 2 or n < 2 or work < _min_parallel:
        body(0, n)
        return
    parts = chunks(n, threads)
    pool = _executor(len(parts) - 1)
    futures = [pool.submit(body, lo, hi) for lo, hi in parts[1:]]
    try:
        body(*parts[0])
    finally:
        for f in futures:
            f.result()  # re-raises a worker's exception here


@contextlib.contextmanager
def forced(threads: int = 2) -> Iterator[None]:
    """Split every kernel over ``threads`` threads, however small (tests use it to check
    the parallel paths against the portable kernels on small arrays)."""
    global _min_parallel
    old_threads, old_min = get_num_threads(), _min_parallel
    set_num_threads(threads)
    _min_parallel = 0
    try:
        yield
    finally:
        _min_parallel = old_min
        set_num_threads(old_threads)

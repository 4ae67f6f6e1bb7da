"""CupyOps: the NumPy backend's kernels run on CuPy (which mirrors NumPy's API), plus a
fused elementwise update.

:class:`~nnx.backend.numpy.NumpyOps` writes every kernel against ``self.np``; CuPy
mirrors ``numpy`` down to ``lib.stride_tricks.sliding_window_view``, so CuPy runs
them with ``np = cupy``: one window copy for im2col instead of the portable path's
kh*kw small kernels.  The kernels are tested here with NumPy and on a GPU by
``scripts/gpu_check.sh`` (the conformance kit checks every override).
"""

from __future__ import annotations

from typing import Any

from nnx.backend.numpy import NumpyOps


class CupyOps(NumpyOps):
    """NumpyOps with ``np = cupy`` (or any module that mirrors NumPy, given as ``np``)."""

    def __init__(self, xp: Any, device: Any = None, np: Any = None) -> None:
        super().__init__(xp, device)
        if np is None:
            import cupy as np
        self.np = np
        self._momentum_kernel: Any = None

    def transpose2d(self, a: Any) -> Any:
        """A C-contiguous copy of the transpose of 2-D ``a`` (one kernel on a GPU).

        NumpyOps's staging buffer avoids CPU cache-set conflicts; a GPU has none.
        """
        return self.np.ascontiguousarray(a.T)

    def momentum_update(self, buf: Any, g: Any, momentum: Any) -> Any:
        """``buf * momentum + g`` written into ``buf`` by one fused CuPy kernel."""
        kernel = self._momentum_kernel
        if kernel is None:
            if not hasattr(self.np, "ElementwiseKernel"):  # a NumPy-like module: two ops
                return super().momentum_update(buf, g, momentum)
            kernel = self._momentum_kernel = self.np.ElementwiseKernel(
                "T g, T mu", "T buf", "buf = buf * mu + g", "nnx_momentum_update"
            )
        kernel(g, momentum, buf)
        return buf

"""Conv2d by im2col + one matmul (window layouts in :mod:`nnx.window`).

The window gathering and its adjoint come from the backend's kernel table
(``self.ops``): portable array-API code by default, NumPy's sliding-window
kernels and fused backward on the NumPy backend.
"""

from __future__ import annotations

from typing import Any

from nnx import init
from nnx.layers.base import Layer, Parameter
from nnx.window import Pair, count, pair, window_output

__all__ = ["Conv2d"]


class Conv2d(Layer):
    """2-D convolution (cross-correlation, as PyTorch) on NCHW inputs via im2col + one matmul.

    Weights (out, in, kh, kw) are drawn by ``init_name`` (a name or a callable
    ``(shape, fan_in, fan_out)``; He uniform by default, fan_in = in * kh * kw);
    the bias starts at zero, like nnx's Linear (PyTorch draws it uniformly instead).
    """

    #: window layout: "auto" (the backend's ops choose), "inner" or "outer"
    batch_layout = "auto"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        init_name: init.Initialiser | str = "he_uniform",
    ) -> None:
        super().__init__()
        in_channels = count(in_channels, "Conv2d in_channels")
        out_channels = count(out_channels, "Conv2d out_channels")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding", minimum=0)
        kh, kw = self.kernel_size
        fan_in, fan_out = in_channels * kh * kw, out_channels * kh * kw
        w = init.draw(init_name, (out_channels, in_channels, kh, kw), fan_in, fan_out)
        self.weight = Parameter(self.backend.asarray(w), "weight")
        zeros = init.zeros((out_channels,))
        self.bias = Parameter(self.backend.asarray(zeros), "bias") if bias else None

    def _check(self, x: Any) -> Pair:
        return window_output(self, x, self.kernel_size, self.stride, self.padding, self.in_channels)

    def batch_last(self, ow: int) -> bool:
        """Window layout for output width ``ow``: True puts the batch innermost.

        ``batch_layout`` forces one; "auto" asks the backend's ops
        (:meth:`nnx.backend.Ops.conv_batch_last`), whose choice depends on the library.
        """
        if self.batch_layout != "auto":
            return self.batch_layout == "inner"
        return self.ops.conv_batch_last(self.in_channels, self.out_channels, self.kernel_size, ow)

    def forward(self, x: Any) -> Any:
        xp = self.xp
        oh, ow = self._check(x)
        n, o = x.shape[0], self.out_channels
        batch_last = self.batch_last(ow)
        cols = self.ops.im2col(x, self.kernel_size, self.stride, self.padding, batch_last)
        y = xp.reshape(self.weight.value, (o, -1)) @ cols  # one matmul: (O, pixels)
        self.save_for_backward(cols, tuple(x.shape), batch_last)
        bias = None if self.bias is None else self.bias.value
        return self.ops.conv_output(y, bias, (n, o, oh, ow), batch_last)

    def backward(self, dy: Any) -> Any:
        cols, shape, batch_last = self.saved()
        xp, ops, o = self.xp, self.ops, self.out_channels
        dy2 = ops.from_nchw(dy, batch_last)  # (O, pixels), as cols
        self.weight.accumulate(xp.reshape(ops.conv_weight_grad(dy2, cols), self.weight.shape))
        if self.bias is not None:
            self.bias.accumulate(ops.sum_axis1(dy2))
        if not self.requires_input_grad:
            return None
        wt = xp.reshape(self.weight.value, (o, -1)).T
        return ops.col2im_matmul(
            wt, dy2, shape, self.kernel_size, self.stride, self.padding, batch_last
        )

    def extra_repr(self) -> str:
        kh, kw = self.kernel_size
        text = f"{self.in_channels}, {self.out_channels}, kernel_size=({kh}, {kw})"
        if self.stride != (1, 1):
            text += f", stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        return text + ("" if self.bias is not None else ", bias=False")

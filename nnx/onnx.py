"""Export a trained nnx model to ONNX, for onnxruntime, TensorRT, OpenVINO, browsers, ...

``nnx.export_onnx(model, "model.onnx", input_shape=(None, 1, 28, 28))`` (also
``nnx.onnx.export``) writes an ONNX graph in **opset 17** (``OPSET``) of the
model in evaluation mode: BatchNorm uses its running statistics and Dropout is
left out. ``None`` in ``input_shape`` becomes a dynamic axis (the first one is
named ``batch``), so one file serves any batch size.

Supported layers: Sequential (nested too), Linear, Conv2d (stride, padding,
with or without bias), MaxPool2d, AvgPool2d (padding counts in the mean, as in
nnx), BatchNorm1d, BatchNorm2d, Dropout (dropped), Flatten, Identity, ReLU,
LeakyReLU, Sigmoid, Tanh, GELU (its tanh form, spelled out in elementary ops,
since ONNX's own Gelu needs opset 20) and Softmax. Anything else raises a
``TypeError`` naming the layer.

Parameters are copied to the host (``nnx.to_numpy``), so a model on any
backend (numpy, CuPy, torch, jax, array-api-strict) exports the same file.
Needs the ``onnx`` package: ``pip install 'nnx[onnx]'``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nnx.atomic import atomic_write
from nnx.backend import to_numpy
from nnx.layers import (
    GELU,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    Layer,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
)

OPSET = 17

__all__ = ["OPSET", "export"]


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "nnx.export_onnx needs the onnx package: pip install 'nnx[onnx]' (or pip install onnx)"
        ) from None
    return onnx


class _Graph:
    """The nodes and initializers being built, with fresh names for intermediate values."""

    def __init__(self, onnx: Any, dtype: np.dtype) -> None:
        self.onnx, self.dtype = onnx, dtype
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: Any, dtype: Any = None) -> str:
        """Add ``value`` (host array or number) as an initializer; return its name."""
        array = np.asarray(value, dtype=dtype or self.dtype)
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def param(self, hint: str, value: Any) -> str:
        """A parameter or buffer from any backend, copied to the host in the model's dtype."""
        return self.const(hint, to_numpy(value).astype(self.dtype, copy=False))

    def node(self, op: str, inputs: Sequence[str], hint: str = "", **attrs: Any) -> str:
        out = self.name(hint or op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out


def _linear(g: _Graph, layer: Linear, x: str, _: tuple[int, ...]) -> str:
    inputs = [x, g.param("linear_weight", layer.weight.value)]
    if layer.bias is not None:
        inputs.append(g.param("linear_bias", layer.bias.value))
    return g.node("Gemm", inputs, "linear", transB=1)


def _conv(g: _Graph, layer: Conv2d, x: str, _: tuple[int, ...]) -> str:
    inputs = [x, g.param("conv_weight", layer.weight.value)]
    if layer.bias is not None:
        inputs.append(g.param("conv_bias", layer.bias.value))
    (ph, pw) = layer.padding
    return g.node(
        "Conv",
        inputs,
        "conv",
        kernel_shape=list(layer.kernel_size),
        strides=list(layer.stride),
        pads=[ph, pw, ph, pw],
    )


def _pool(g: _Graph, layer: MaxPool2d | AvgPool2d, x: str, _: tuple[int, ...]) -> str:
    (ph, pw) = layer.padding
    attrs: dict[str, Any] = {
        "kernel_shape": list(layer.kernel_size),
        "strides": list(layer.stride),
        "pads": [ph, pw, ph, pw],
    }
    if isinstance(layer, MaxPool2d):
        return g.node("MaxPool", [x], "maxpool", **attrs)
    return g.node("AveragePool", [x], "avgpool", count_include_pad=1, **attrs)


def _batchnorm(g: _Graph, layer: BatchNorm1d | BatchNorm2d, x: str, _: tuple[int, ...]) -> str:
    c = layer.num_features
    if layer.affine:
        scale, shift = g.param("bn_scale", layer.weight.value), g.param("bn_bias", layer.bias.value)
    else:
        scale, shift = g.const("bn_scale", np.ones(c)), g.const("bn_bias", np.zeros(c))
    mean, var = g.param("bn_mean", layer.running_mean), g.param("bn_var", layer.running_var)
    return g.node(
        "BatchNormalization", [x, scale, shift, mean, var], "batchnorm", epsilon=float(layer.eps)
    )


def _flatten(g: _Graph, layer: Flatten, x: str, shape: tuple[int, ...]) -> str:
    nd = len(shape)
    start, end = layer.start_dim % nd, layer.end_dim % nd
    if start == 0:
        raise TypeError(
            f"nnx.export_onnx cannot export {layer.label()}: it merges the batch axis; "
            "use Flatten(start_dim=1)"
        )
    if end == nd - 1:
        return g.node("Flatten", [x], "flatten", axis=start)
    # keep the batch axis (0 copies it), write out the others, which are static
    target = [0, *shape[1:start], math.prod(shape[start : end + 1]), *shape[end + 1 :]]
    return g.node("Reshape", [x, g.const("shape", target, np.int64)], "flatten")


def _gelu(g: _Graph, layer: GELU, x: str, _: tuple[int, ...]) -> str:
    # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as nnx computes it
    x3 = g.node("Mul", [g.node("Mul", [x, x]), x])
    inner = g.node("Add", [x, g.node("Mul", [x3, g.const("gelu_a", 0.044715)])])
    t = g.node("Tanh", [g.node("Mul", [inner, g.const("gelu_c", math.sqrt(2.0 / math.pi))])])
    half_x = g.node("Mul", [x, g.const("half", 0.5)])
    return g.node("Mul", [half_x, g.node("Add", [t, g.const("one", 1.0)])], "gelu")


def _passthrough(g: _Graph, layer: Layer, x: str, _: tuple[int, ...]) -> str:
    return x  # Identity, and Dropout, which does nothing in evaluation mode


_EXPORTERS: dict[type, Callable[[_Graph, Any, str, tuple[int, ...]], str]] = {
    Linear: _linear,
    Conv2d: _conv,
    MaxPool2d: _pool,
    AvgPool2d: _pool,
    BatchNorm1d: _batchnorm,
    BatchNorm2d: _batchnorm,
    Flatten: _flatten,
    GELU: _gelu,
    Dropout: _passthrough,
    Identity: _passthrough,
    ReLU: lambda g, layer, x, _: g.node("Relu", [x]),
    LeakyReLU: lambda g, layer, x, _: g.node("LeakyRelu", [x], alpha=float(layer.negative_slope)),
    Sigmoid: lambda g, layer, x, _: g.node("Sigmoid", [x]),
    Tanh: lambda g, layer, x, _: g.node("Tanh", [x]),
    Softmax: lambda g, layer, x, _: g.node("Softmax", [x], axis=int(layer.axis)),
}


def _emit(g: _Graph, layer: Layer, x: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """Add ``layer``'s nodes for input ``x`` of (traced) ``shape``; return output name and shape."""
    if isinstance(layer, Sequential):
        for child in layer:
            x, shape = _emit(g, child, x, shape)
        return x, shape
    exporter = _EXPORTERS.get(type(layer))
    if exporter is None:
        names = ", ".join(sorted(t.__name__ for t in _EXPORTERS))
        raise TypeError(
            f"nnx.export_onnx cannot export {layer.label()} (a {type(layer).__name__}): "
            f"ONNX export supports Sequential and {names}"
        )
    return exporter(g, layer, x, shape), layer.output_shape(shape)


def export(
    model: Layer,
    path: str | os.PathLike[str],
    input_shape: Sequence[int | None],
    *,
    input_name: str = "input",
    output_name: str = "output",
) -> Any:
    """Write ``model`` (evaluation mode) as an ONNX file (opset 17) and return the ModelProto.

    ``input_shape`` is the shape of one input including the batch axis;
    ``None`` marks a dynamic axis, e.g. ``(None, 1, 28, 28)``. The graph is
    checked with ``onnx.checker`` and written atomically (a temporary file in
    the same folder, then renamed), so an interrupted export never leaves a
    truncated file. Raises ``TypeError`` naming the first layer it cannot
    export, and ``ImportError`` when the ``onnx`` package is missing.
    """
    onnx = _onnx()
    if not isinstance(model, Layer):
        raise TypeError(f"nnx.export_onnx expects an nnx Layer, got {type(model).__name__}")
    dims = list(input_shape)
    if not dims or any(d is not None and (not isinstance(d, int) or d < 1) for d in dims):
        raise ValueError(
            f"input_shape must list positive ints or None (dynamic), e.g. (None, 1, 28, 28); "
            f"got {tuple(input_shape)!r}"
        )
    dtype = np.dtype(model.dtype)
    g = _Graph(onnx, dtype)
    traced = tuple(1 if d is None else d for d in dims)  # a dynamic axis is traced at size 1
    output, out_shape = _emit(g, model, input_name, traced)
    if output == input_name:  # a model that exports to nothing still needs one node
        output = g.node("Identity", [output])
    g.nodes.append(onnx.helper.make_node("Identity", [output], [output_name], name=output_name))

    elem = onnx.helper.np_dtype_to_tensor_dtype(dtype)
    names = ["batch" if i == 0 else f"dim{i}" for i in range(len(dims))]
    in_dims = [names[i] if d is None else d for i, d in enumerate(dims)]
    # the batch axis stays dynamic through the network; other output axes are as traced
    out_dims: list[int | str] = list(out_shape)
    if dims[0] is None and out_dims:
        out_dims[0] = "batch"
    graph = onnx.helper.make_graph(
        g.nodes,
        type(model).__name__,
        [onnx.helper.make_tensor_value_info(input_name, elem, in_dims)],
        [onnx.helper.make_tensor_value_info(output_name, elem, out_dims)],
        initializer=g.initializers,
    )
    proto = onnx.helper.make_model(
        graph,
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        producer_name="nnx",
        producer_version=_version(),
    )
    onnx.checker.check_model(proto, full_check=True)
    with atomic_write(path) as f:  # a temporary file, renamed into place when complete
        f.write(proto.SerializeToString())
    return proto


def _version() -> str:
    import nnx

    return str(getattr(nnx, "__version__", ""))

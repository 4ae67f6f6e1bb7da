"""ONNX export: onnx.checker accepts the file and onnxruntime agrees with nnx (eval mode)."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.testing import assert_within, forward_bound
from tests.helpers import host

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def mlp() -> nnx.Sequential:
    """Every elementwise layer the exporter knows, around Linear and BatchNorm1d."""
    return nnx.Sequential(
        nnx.Linear(20, 32), nnx.BatchNorm1d(32), nnx.ReLU(), nnx.Dropout(0.5),
        nnx.Linear(32, 32), nnx.LeakyReLU(0.2), nnx.Identity(),
        nnx.Sequential(nnx.Linear(32, 16), nnx.GELU()),
        nnx.Linear(16, 16, bias=False), nnx.Tanh(), nnx.Linear(16, 16), nnx.Sigmoid(),
        nnx.Linear(16, 5), nnx.Softmax(),
    )  # fmt: skip


def cnn() -> nnx.Sequential:
    """Conv2d with stride and padding, both pools, BatchNorm2d and both Flatten spellings."""
    return nnx.Sequential(
        nnx.Conv2d(1, 6, 3, padding=1), nnx.BatchNorm2d(6), nnx.ReLU(), nnx.MaxPool2d(2),
        nnx.Conv2d(6, 8, 3, stride=2, padding=1, bias=False), nnx.BatchNorm2d(8), nnx.ReLU(),
        nnx.AvgPool2d(3, stride=1, padding=1), nnx.MaxPool2d(3, stride=2, padding=1),
        nnx.Flatten(start_dim=1, end_dim=2), nnx.Flatten(),
        nnx.Dropout(0.3), nnx.Linear(8 * 2 * 2, 10),
    )  # fmt: skip


#: the terms of every sum in each model's forward (fan-ins, BatchNorm, pools, softmax)
FAN_INS = {"mlp": 20 + 32 + 32 + 16 + 16 + 16 + 16 + 5 + 2, "cnn": 9 + 2 + 4 + 54 + 2 + 9 + 9 + 32}


def trained(model: nnx.Sequential, shape: tuple[int, ...], backend) -> nnx.Sequential:
    """Move the BatchNorm statistics and affine parameters away from their defaults."""
    rng = np.random.default_rng(1)
    for _ in range(3):  # training-mode passes update the running mean and variance
        model(backend.asarray(rng.normal(0.5, 2.0, (16, *shape)), "float32"))
    for layer in model.layers():
        if isinstance(layer, nnx.BatchNorm1d | nnx.BatchNorm2d):
            c = layer.num_features
            layer.weight.value = backend.asarray(rng.uniform(0.5, 1.5, c), "float32")
            layer.bias.value = backend.asarray(rng.normal(0, 0.3, c), "float32")
    return model.eval()


@pytest.mark.parametrize("kind, shape", [("mlp", (20,)), ("cnn", (1, 12, 12))])
def test_onnxruntime_matches_nnx_at_batch_1_and_64(backend, tmp_path, kind, shape):
    model = trained(mlp() if kind == "mlp" else cnn(), shape, backend)
    path = tmp_path / f"{kind}.onnx"
    proto = nnx.export_onnx(model, path, input_shape=(None, *shape))
    onnx.checker.check_model(str(path), full_check=True)
    assert proto.opset_import[0].version == nnx.onnx.OPSET == 17
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert not any(n.op_type == "Dropout" for n in proto.graph.node)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    for batch in (1, 64):
        x = rng.normal(0.5, 2.0, (batch, *shape)).astype(np.float32)
        expected = host(model(backend.asarray(x, "float32")))
        (got,) = session.run(None, {"input": x})
        assert got.shape == expected.shape
        # onnxruntime sums every layer's fan-in in its own order
        assert_within(
            got, expected, forward_bound(expected, FAN_INS[kind]), f"onnxruntime ({kind})"
        )


def test_export_names_the_unsupported_layer(tmp_path):
    class Square(nnx.Layer):
        def forward(self, x):
            return x * x

    model = nnx.Sequential(nnx.Linear(4, 4), nnx.Sequential(Square()), nnx.Linear(4, 2))
    path = tmp_path / "m.onnx"
    with pytest.raises(TypeError, match=r"cannot export Square\(\)"):
        nnx.export_onnx(model, path, input_shape=(None, 4))
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_export_rejects_a_bad_shape_and_a_flattened_batch(tmp_path):
    with pytest.raises(ValueError, match="input_shape"):
        nnx.export_onnx(nnx.Linear(4, 2), tmp_path / "m.onnx", input_shape=(None, 0))
    model = nnx.Sequential(nnx.Flatten(start_dim=0))
    with pytest.raises(TypeError, match="batch axis"):
        nnx.onnx.export(model, tmp_path / "m.onnx", input_shape=(2, 4))


def test_export_replaces_an_existing_file_whole(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old contents")
    nnx.export_onnx(nnx.Sequential(nnx.Linear(3, 2), nnx.ReLU()), path, input_shape=(8, 3))
    model = onnx.load(str(path))
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [8, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]

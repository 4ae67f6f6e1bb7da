"""nnx: neural networks written once against the Python array API.

Layers, losses and optimizers use only the array-API namespace a backend
supplies; ``nnx.use("cuda")`` (or ``NNX_BACKEND=cupy``, or ``model.to("cuda")``)
moves the same code from NumPy to CuPy or to any registered plugin.
"""

from nnx import datasets, distributed, init, losses, onnx, optim
from nnx.backend import (
    Backend,
    BackendError,
    asarray,
    backends,
    current,
    get_backend,
    manual_seed,
    register_backend,
    to_numpy,
    use,
    using,
)
from nnx.backend.threads import get_num_threads, set_num_threads
from nnx.data import DataLoader
from nnx.divergence import TrainingDiverged
from nnx.gradcheck import gradcheck
from nnx.io import CheckpointError, load, save
from nnx.layers import *  # noqa: F403  (every layer, listed in nnx.layers.__all__)
from nnx.layers import __all__ as _layers
from nnx.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from nnx.onnx import export as export_onnx
from nnx.train import EarlyStopping, History, evaluate, fit, predict

__version__ = "0.1.0"

__all__ = [
    *_layers,
    "Backend",
    "BackendError",
    "BCEWithLogitsLoss",
    "CheckpointError",
    "CrossEntropyLoss",
    "DataLoader",
    "EarlyStopping",
    "History",
    "MSELoss",
    "TrainingDiverged",
    "asarray",
    "backends",
    "current",
    "datasets",
    "distributed",
    "evaluate",
    "export_onnx",
    "fit",
    "get_num_threads",
    "load",
    "predict",
    "save",
    "set_num_threads",
    "get_backend",
    "gradcheck",
    "init",
    "losses",
    "manual_seed",
    "onnx",
    "optim",
    "register_backend",
    "to_numpy",
    "use",
    "using",
]

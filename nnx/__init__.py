"""nnx: neural networks written once against the Python array API.

import nnx
nnx.use("cuda")                      # or NNX_BACKEND=cupy, or model.to("cuda")
model = nnx.Sequential(nnx.Linear(2, 8), nnx.Tanh(), nnx.Linear(8, 1))
"""

from nnx import init, losses, optim
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
from nnx.gradcheck import gradcheck
from nnx.layers import *  # noqa: F403  (every layer, listed in nnx.layers.__all__)
from nnx.layers import __all__ as _layers
from nnx.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss

__version__ = "0.1.0"

__all__ = [
    *_layers,
    "Backend",
    "BackendError",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "MSELoss",
    "asarray",
    "backends",
    "current",
    "get_backend",
    "gradcheck",
    "init",
    "losses",
    "manual_seed",
    "optim",
    "register_backend",
    "to_numpy",
    "use",
    "using",
]

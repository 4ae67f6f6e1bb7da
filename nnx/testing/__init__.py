"""The backend conformance kit: what an array library must pass to be an nnx backend.

    from nnx.testing import assert_conformant, check_backend
    print(check_backend("torch:cpu"))          # a report, one line per failing check
    assert_conformant("torch:cpu")             # AssertionError naming every failing check

Checks (``check_names()`` lists them; ``only=`` selects some, glob patterns allowed):

``available``        the spec starts, ``available()`` says yes, ``synchronize()`` runs
``arrays``           ``asarray``/``to_numpy`` round trips keep values and named dtypes
``device``           every array a layer (forward, backward, parameter gradients), a loss,
                     an optimizer's state, the generator, ``nnx.asarray`` or a DataLoader
                     makes is owned by the backend: its library on its device
``float32``          ... and is float32 when nothing else was asked for
``rng``              same seed -> same uniform/normal draws, another seed -> others;
                     get_state() is JSON-serialisable and set_state() replays
``dropout_mask``     the same seed gives the same dropout mask, another seed another
``gradcheck:<Name>`` finite differences (float64) of every layer in ``nnx.layers`` and
                     every loss in ``nnx.losses``, from the tables in ``nnx.testing.examples``
``optim:<config>``   three steps of every optimizer configuration match numpy's
``ops``              every kernel the backend's ``Ops`` subclass overrides matches the
                     portable default of ``nnx.backend.Ops``
``xor``              XOR trains to 100% accuracy
``checkpoint``       saved on the backend, loaded on numpy: identical weights, optimizer
                     state and (to float32 rounding) predictions
``to_roundtrip``     ``model.to(backend)`` then ``.to("numpy")`` gives back identical weights,
                     gradients, optimizer state and predictions; training continues on the
                     backend as it would on numpy

A check that does not apply (no kernel overridden) is *skipped*, not failed.
Every check reseeds nnx (``nnx.manual_seed``) before it runs.

Modules: ``examples`` (the tables, also used by nnx's tests), ``report``,
``helpers``, ``tolerances`` (rounding bounds derived from the arithmetic), ``checks_backend``, ``checks_models``, ``checks_ops``, ``runner``.
"""

from nnx.testing.examples import (
    LAYER_EXAMPLES,
    LOSS_EXAMPLES,
    OPTIMIZER_EXAMPLES,
    SEED,
    layer_classes,
    loss_classes,
    optimizer_classes,
)
from nnx.testing.helpers import Skip
from nnx.testing.report import CheckResult, ConformanceReport
from nnx.testing.runner import assert_conformant, check_backend, check_names, missing_examples
from nnx.testing.tolerances import (
    assert_within,
    forward_bound,
    product_bound,
    sum_bound,
    ulp_bound,
    unit_roundoff,
)

__all__ = [
    "LAYER_EXAMPLES",
    "LOSS_EXAMPLES",
    "OPTIMIZER_EXAMPLES",
    "SEED",
    "CheckResult",
    "ConformanceReport",
    "Skip",
    "assert_conformant",
    "check_backend",
    "check_names",
    "layer_classes",
    "loss_classes",
    "missing_examples",
    "optimizer_classes",
    "assert_within",
    "forward_bound",
    "product_bound",
    "sum_bound",
    "ulp_bound",
    "unit_roundoff",
]

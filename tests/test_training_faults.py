"""Labels and non-finite losses: nothing trains silently on bad data, nothing is lost on NaN.

Every test runs on every available backend.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import host
from hypothesis import given, settings
from hypothesis import strategies as st

import nnx


def blobs(n=96, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, 4)) * 4
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.standard_normal((n, 4))).astype(np.float32), y


def mlp():
    return nnx.Sequential(nnx.Linear(4, 16), nnx.ReLU(), nnx.Linear(16, 3))


def weights(model):
    return {k: host(v).copy() for k, v in model.state_dict().items()}


def logits_and_labels(backend, labels, c=10, n=None):
    n = len(labels) if n is None else n
    x = np.random.default_rng(0).standard_normal((n, c)).astype(np.float32)
    return backend.asarray(x, "float32"), backend.asarray(np.asarray(labels), "int64")


# -- labels ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, position", [([0, 3, 10, 1], 2), ([-1, 2, 3, 4], 0)])
def test_out_of_range_label_names_value_and_position(backend, bad, position):
    pred, target = logits_and_labels(backend, bad)
    value = bad[position]
    # the default checks every batch where labels live in host memory; on a GPU
    # (the CuPy stand-in) the immediate check is asked for by name
    loss_fn = nnx.CrossEntropyLoss(check_labels="auto" if backend.host_memory else "every_batch")
    with pytest.raises(ValueError, match=rf"label {value} at position {position} .*\[0, 10\)"):
        loss_fn(pred, target)


def test_the_default_label_check_follows_the_backends_memory(backend):
    """auto: an immediate check in host memory, a deferred one on a GPU (no sync per step)."""
    pred, target = logits_and_labels(backend, [0, 12, 3])
    loss_fn = nnx.CrossEntropyLoss()
    if backend.host_memory:
        with pytest.raises(ValueError, match="label 12 at position 1"):
            loss_fn(pred, target)
    else:
        loss_fn(pred, target)  # nothing read back yet
        with pytest.raises(ValueError, match=r"label 12 is outside \[0, 10\)"):
            loss_fn.check_pending_labels()


def test_a_deferred_bad_label_is_not_lost_when_the_class_count_changes(backend):
    loss_fn = nnx.CrossEntropyLoss(check_labels="deferred")
    loss_fn(*logits_and_labels(backend, [0, 12, 3]))  # bad for 10 classes: no read yet
    with pytest.raises(ValueError, match=r"label 12 is outside \[0, 10\)"):
        loss_fn(*logits_and_labels(backend, [0, 1, 2], c=3))  # read before mixing counts


def test_deferred_label_check_reads_one_flag(backend):
    loss_fn = nnx.CrossEntropyLoss(check_labels="deferred")
    pred, good = logits_and_labels(backend, [0, 9, 3])
    _, bad = logits_and_labels(backend, [0, 12, 3])
    loss_fn(pred, good)
    loss_fn.check_pending_labels()  # nothing wrong
    loss_fn(pred, good)
    loss_fn(pred, bad)  # no error yet: nothing is read from the device
    loss_fn(pred, good)
    with pytest.raises(ValueError, match=r"label 12 is outside \[0, 10\)"):
        loss_fn.check_pending_labels()
    loss_fn.check_pending_labels()  # the flag was reset


def test_float_labels_are_refused_even_float64(backend):
    pred, _ = logits_and_labels(backend, [0, 1])
    for dtype in ("float64", "float32"):
        target = backend.asarray(np.array([0.5, 1.7]), dtype)
        with pytest.raises(TypeError, match="integer class labels"):
            nnx.CrossEntropyLoss()(pred, target)


def test_numpy_float64_labels_are_refused():
    pred = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(TypeError, match="integer class labels, got float64"):
        nnx.CrossEntropyLoss()(pred, np.array([0.5, 1.7]))


def test_list_labels_and_empty_batch_get_clear_errors(backend):
    pred, _ = logits_and_labels(backend, [0, 1])
    with pytest.raises(TypeError, match="got list; convert with nnx.asarray"):
        nnx.CrossEntropyLoss()(pred, [0, 1])
    empty, target = logits_and_labels(backend, [], n=0)
    with pytest.raises(ValueError, match="empty batch"):
        nnx.CrossEntropyLoss()(empty, target)


def test_masked_minus_inf_logit_gives_the_finite_loss(backend):
    x = np.array([[2.0, -np.inf, 0.5], [-np.inf, 1.0, 3.0]], dtype=np.float32)
    y = np.array([0, 2])
    loss_fn = nnx.CrossEntropyLoss()
    loss = float(host(loss_fn(backend.asarray(x, "float32"), backend.asarray(y, "int64"))))
    grad = host(loss_fn.backward())
    # by hand: log-softmax over the unmasked classes only
    ref = -np.mean(
        [2.0 - np.log(np.exp(2.0) + np.exp(0.5)), 3.0 - np.log(np.exp(1.0) + np.exp(3.0))]
    )
    assert np.isfinite(loss) and loss == pytest.approx(ref, rel=1e-6)
    assert np.all(np.isfinite(grad)) and grad[0, 1] == 0 and grad[1, 0] == 0


def test_masked_logits_match_pytorch():
    torch = pytest.importorskip("torch")
    x = np.array([[2.0, -np.inf, 0.5, 1.0], [-np.inf, 1.0, 3.0, -np.inf]], dtype=np.float32)
    y = np.array([3, 1])
    ours = float(nnx.CrossEntropyLoss()(x, y))
    theirs = float(torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(y)))
    assert ours == pytest.approx(theirs, rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    labels=st.lists(st.integers(-3, 12), min_size=1, max_size=20),
    dtype=st.sampled_from(["int8", "int16", "int32", "int64", "uint8"]),
)
def test_random_label_arrays(labels, dtype):
    """An error exactly when a label is outside [0, C); otherwise the NumPy reference loss."""
    c = 10
    y = np.array(labels).astype(dtype)  # uint8 wraps negatives to large values
    x = np.random.default_rng(len(labels)).standard_normal((len(y), c)).astype(np.float32)
    bad = (y.astype(np.int64) < 0) | (y.astype(np.int64) >= c)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        with pytest.raises(ValueError, match=rf"label {int(y[i])} at position {i} "):
            nnx.CrossEntropyLoss()(x, y)
        return
    log_softmax = x - x.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    ref = -log_softmax[np.arange(len(y)), y.astype(np.int64)].mean()
    assert float(nnx.CrossEntropyLoss()(x, y)) == pytest.approx(ref, rel=1e-5)


def test_fit_checks_loader_labels_before_any_step(backend):
    x, y = blobs()
    y[40] = 3  # three classes: 3 is out of range
    model = mlp()
    before = weights(model)
    opt = nnx.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"label 3 of sample 40 is outside \[0, 3\)"):
        nnx.fit(model, nnx.CrossEntropyLoss(), opt, (x, y), progress=False)
    after = weights(model)
    assert all(np.array_equal(before[k], after[k]) for k in before) and opt.steps == 0


def test_fit_with_a_generic_iterable_still_catches_bad_labels(backend):
    x, y = blobs(32)
    y[5] = -1
    batches = [(backend.asarray(x, "float32"), backend.asarray(y, "int64"))]
    model = mlp()
    with pytest.raises(ValueError, match="label -1"):
        nnx.fit(model, nnx.CrossEntropyLoss(check_labels="deferred"),
                nnx.optim.SGD(model.parameters(), lr=0.1), batches, progress=False)  # fmt: skip


# -- non-finite losses -------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("log_every", [1, 3, 50])
def test_nan_input_stops_restores_and_names_the_step(backend, log_every):
    x, y = blobs(96)
    x[8 * 4 + 2, 1] = np.nan  # batch 5 (0-based 4) of batch size 8, no shuffling
    model = mlp()
    opt = nnx.optim.Adam(model.parameters(), lr=0.01)
    before = weights(model)
    loader = nnx.DataLoader(x, y, batch_size=8)
    with pytest.raises(
        nnx.TrainingDiverged, match="epoch 1 at step 5; that batch's inputs hold"
    ) as e:
        nnx.fit(model, nnx.CrossEntropyLoss(), opt, loader, log_every=log_every, progress=False)
    assert (e.value.epoch, e.value.step, e.value.inputs_finite) == (1, 5, False)
    assert "start of the epoch" in str(e.value)
    after = weights(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert opt.steps == 0 and all(not p.state for p in opt.params)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_with_finite_inputs_says_lower_the_learning_rate(backend):
    x, y = blobs(96)
    model = mlp()
    opt = nnx.optim.SGD(model.parameters(), lr=1e30)
    with pytest.raises(
        nnx.TrainingDiverged, match="inputs are finite: lower the learning rate"
    ) as e:
        nnx.fit(model, nnx.CrossEntropyLoss(), opt, (x, y), batch_size=8, progress=False)
    assert e.value.inputs_finite is True
    assert all(np.isfinite(v).all() for v in weights(model).values())


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_restores_early_stoppings_best_model(backend):
    x, y = blobs(96)
    model = mlp()
    opt = nnx.optim.SGD(model.parameters(), lr=0.05)
    stopper = nnx.EarlyStopping(monitor="loss", patience=5)
    state_after = {}

    def blow_up(epoch, record):
        state_after[epoch] = (weights(model), opt.steps)
        if epoch == 1:
            opt.lr = 1e30  # epoch 3 diverges

    with pytest.raises(nnx.TrainingDiverged, match="epoch 3 .*EarlyStopping's best state"):
        nnx.fit(model, nnx.CrossEntropyLoss(), opt, (x, y), epochs=5, batch_size=8,
                early_stopping=stopper, on_epoch_end=blow_up, progress=False)  # fmt: skip
    best = weights(model)
    assert all(np.array_equal(best[k], stopper.best_state[k]) for k in best)
    assert opt.steps == state_after[1][1] and opt.lr == 1e30  # optimizer: start of epoch 3


def test_on_an_accelerator_the_label_check_waits_for_fit_to_read(backend, monkeypatch):
    """The GPU path, on any backend: no read per batch; fit reads the flag every log_every steps."""
    monkeypatch.setattr(backend, "host_memory", False)  # as on a GPU
    x, y = blobs(64)
    y[37] = 7
    batches = [
        (backend.asarray(x[i : i + 8], "float32"), backend.asarray(y[i : i + 8], "int64"))
        for i in range(0, 64, 8)
    ]
    loss_fn = nnx.CrossEntropyLoss()
    model = mlp()
    out = model(batches[4][0])
    loss_fn(out, batches[4][1])  # batch 4 holds sample 37: no error yet
    with pytest.raises(ValueError, match=r"label 7 is outside \[0, 3\)"):
        loss_fn.check_pending_labels()
    with pytest.raises(ValueError, match=r"label 7 is outside \[0, 3\)"):
        nnx.fit(model, loss_fn, nnx.optim.SGD(model.parameters(), lr=0.1), batches,
                log_every=2, progress=False)  # fmt: skip

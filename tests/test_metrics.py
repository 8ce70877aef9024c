"""jloss.metrics against float64 NumPy references written from the formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jloss
from jloss import metrics

RNG = np.random.default_rng(0)
N, C = 97, 5
LOGITS = RNG.normal(size=(N, C)).astype(np.float32)
LABELS = RNG.integers(0, C, size=N)
WEIGHTS = RNG.uniform(0.1, 2.0, size=N).astype(np.float32)
MASK = RNG.uniform(size=N) > 0.3
SCORES = RNG.uniform(size=N).astype(np.float32)
BINARY = (RNG.uniform(size=N) < np.clip(SCORES + 0.2 * RNG.normal(size=N), 0, 1)).astype(np.int32)
PRED = RNG.normal(size=(N, 3)).astype(np.float32)
TARGET = RNG.normal(size=(N, 3)).astype(np.float32)


def _w(weights, where, shape):
    w = np.ones(shape) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), shape)
    return w * (np.ones(shape) if where is None else np.broadcast_to(where, shape))


def ref_accuracy(logits, labels, w):
    return np.sum(w * (np.argmax(logits, -1) == labels)) / np.sum(w)


def ref_top_k(logits, labels, k, w):
    # label among the k largest: fewer than k scores are strictly larger than it
    label_score = logits[np.arange(len(labels)), labels]
    larger = np.sum(logits > label_score[:, None], axis=-1)
    return np.sum(w * (larger < k)) / np.sum(w)


def ref_binary(scores, targets, threshold, w):
    pred = scores > threshold
    pos = targets == 1
    tp = np.sum(w * (pred & pos))
    fp = np.sum(w * (pred & ~pos))
    fn = np.sum(w * (~pred & pos))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return precision, recall, f1


def ref_ece(conf, correct, num_bins, w):
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    total = 0.0
    for b in range(num_bins):
        lo, hi = edges[b], edges[b + 1]
        in_bin = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        n_b = np.sum(w * in_bin)
        if n_b > 0:
            acc = np.sum(w * in_bin * correct) / n_b
            avg_conf = np.sum(w * in_bin * conf) / n_b
            total += n_b * abs(acc - avg_conf)
    return total / np.sum(w)


OPTIONS = [  # weights and where together cover each alone (a wrong one would show)
    pytest.param({}, id="plain"),
    pytest.param({"weights": WEIGHTS, "where": MASK}, id="weights+where"),
]


@pytest.mark.parametrize("opts", OPTIONS)
def test_accuracy(opts):
    w = _w(opts.get("weights"), opts.get("where"), (N,))
    np.testing.assert_allclose(metrics.accuracy(LOGITS, LABELS, **opts), ref_accuracy(LOGITS, LABELS, w),
                               rtol=1e-6)
    # predicted indices instead of scores give the same value
    np.testing.assert_allclose(metrics.accuracy(np.argmax(LOGITS, -1), LABELS, **opts),
                               ref_accuracy(LOGITS, LABELS, w), rtol=1e-6)


@pytest.mark.parametrize("opts", OPTIONS)
@pytest.mark.parametrize("k", [2, 5])
def test_top_k_accuracy(opts, k):
    w = _w(opts.get("weights"), opts.get("where"), (N,))
    np.testing.assert_allclose(metrics.top_k_accuracy(LOGITS, LABELS, k=k, **opts),
                               ref_top_k(LOGITS, LABELS, k, w), rtol=1e-6)


def test_top_1_is_accuracy_and_top_c_is_one():
    np.testing.assert_allclose(metrics.top_k_accuracy(LOGITS, LABELS, k=1), metrics.accuracy(LOGITS, LABELS))
    assert float(metrics.top_k_accuracy(LOGITS, LABELS, k=C)) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("opts", OPTIONS)
@pytest.mark.parametrize("threshold", [0.3, 0.8])
def test_binary_precision_recall_f1(opts, threshold):
    w = _w(opts.get("weights"), opts.get("where"), (N,))
    p, r, f = ref_binary(SCORES, BINARY, threshold, w)
    kw = dict(threshold=threshold, **opts)
    np.testing.assert_allclose(metrics.binary_precision(SCORES, BINARY, **kw), p, rtol=1e-6)
    np.testing.assert_allclose(metrics.binary_recall(SCORES, BINARY, **kw), r, rtol=1e-6)
    np.testing.assert_allclose(metrics.binary_f1(SCORES, BINARY, **kw), f, rtol=1e-6)


def test_binary_metrics_accept_booleans():
    pred = SCORES > 0.5
    w = _w(WEIGHTS, None, (N,))
    for fn, expected in zip((metrics.binary_precision, metrics.binary_recall, metrics.binary_f1),
                            ref_binary(SCORES, BINARY, 0.5, w), strict=True):
        np.testing.assert_allclose(fn(pred, BINARY.astype(bool), weights=WEIGHTS), expected, rtol=1e-6)


def test_binary_metrics_zero_division_is_zero():
    targets = np.array([0, 0, 1])
    none_predicted = np.array([0.1, 0.2, 0.3])
    assert float(metrics.binary_precision(none_predicted, targets)) == 0.0
    assert float(metrics.binary_recall(none_predicted, np.zeros(3))) == 0.0
    assert float(metrics.binary_f1(none_predicted, np.zeros(3))) == 0.0


@pytest.mark.parametrize("opts", [
    pytest.param({}, id="plain"),
    pytest.param({"weights": WEIGHTS[:, None]}, id="weights-broadcast"),
    pytest.param({"where": MASK[:, None] & (RNG.uniform(size=(N, 3)) > 0.2)}, id="where"),
])
def test_mae_rmse(opts):
    w = _w(opts.get("weights"), opts.get("where"), (N, 3))
    err = PRED.astype(np.float64) - TARGET
    np.testing.assert_allclose(metrics.mae(PRED, TARGET, **opts), np.sum(w * np.abs(err)) / np.sum(w),
                               rtol=1e-6)
    np.testing.assert_allclose(metrics.rmse(PRED, TARGET, **opts),
                               np.sqrt(np.sum(w * err**2) / np.sum(w)), rtol=1e-6)


def test_masked_nan_does_not_leak():
    pred = PRED.copy()
    pred[0] = np.nan
    where = np.ones((N, 3), bool)
    where[0] = False
    assert np.isfinite(metrics.mae(pred, TARGET, where=where))
    assert np.isfinite(metrics.rmse(pred, TARGET, where=where))


@pytest.mark.parametrize("opts", OPTIONS)
@pytest.mark.parametrize("num_bins", [1, 15])
def test_expected_calibration_error_multiclass(opts, num_bins):
    probs = np.asarray(jax.nn.softmax(LOGITS * 2, axis=-1), np.float64)
    w = _w(opts.get("weights"), opts.get("where"), (N,))
    expected = ref_ece(probs.max(-1), probs.argmax(-1) == LABELS, num_bins, w)
    got = metrics.expected_calibration_error(probs.astype(np.float32), LABELS, num_bins=num_bins, **opts)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("opts", OPTIONS)
def test_expected_calibration_error_binary(opts):
    w = _w(opts.get("weights"), opts.get("where"), (N,))
    p = SCORES.astype(np.float64)
    pred = p >= 0.5
    expected = ref_ece(np.where(pred, p, 1 - p), pred == (BINARY == 1), 10, w)
    got = metrics.expected_calibration_error(SCORES, BINARY, num_bins=10, **opts)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    # the binary form equals the two-class form
    two_class = np.stack([1 - SCORES, SCORES], axis=-1)
    np.testing.assert_allclose(metrics.expected_calibration_error(two_class, BINARY, num_bins=10, **opts),
                               got, rtol=1e-5, atol=1e-7)


def test_perfectly_calibrated_is_zero():
    # confidence 1 and always right, confidence 0.5 and right half the time (one bin)
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.5, 0.5]], np.float32)
    labels = np.array([0, 1, 0, 1])
    ece = metrics.expected_calibration_error(probs, labels, num_bins=4)
    assert float(ece) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("fn,args", [
    (metrics.accuracy, (LOGITS, LABELS)),
    (metrics.top_k_accuracy, (LOGITS, LABELS)),
    (metrics.binary_precision, (SCORES, BINARY)),
    (metrics.binary_recall, (SCORES, BINARY)),
    (metrics.binary_f1, (SCORES, BINARY)),
    (metrics.mae, (PRED, TARGET)),
    (metrics.rmse, (PRED, TARGET)),
    (metrics.expected_calibration_error, (jax.nn.softmax(LOGITS), LABELS)),
])
def test_inside_jit_empty_mask_and_dtype(fn, args):
    value = fn(*args)
    assert value.dtype == jnp.float32 and value.shape == ()
    np.testing.assert_allclose(jax.jit(lambda *a: fn(*a) + 0.0)(*args), value, rtol=1e-6)
    nothing = np.zeros(np.shape(args[1]), bool)
    assert float(fn(*args, where=nothing)) == 0.0


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"labels.shape \+ \(num_classes,\)"):
        metrics.accuracy(LOGITS[:, :, None], LABELS)
    with pytest.raises(TypeError, match="labels must be an integer array"):
        metrics.top_k_accuracy(LOGITS, LABELS.astype(np.float32))
    with pytest.raises(ValueError, match="k must be in"):
        metrics.top_k_accuracy(LOGITS, LABELS, k=C + 1)
    with pytest.raises(ValueError, match="same shape"):
        metrics.binary_f1(SCORES, BINARY[:-1])
    with pytest.raises(ValueError, match="weights has shape"):
        metrics.mae(PRED, TARGET, weights=np.ones(4))
    with pytest.raises(TypeError, match="where must be a boolean mask"):
        metrics.rmse(PRED, TARGET, where=np.ones((N, 3)))
    with pytest.raises(ValueError, match="num_bins"):
        metrics.expected_calibration_error(SCORES, BINARY, num_bins=0)


def test_module_is_exported():
    assert jloss.metrics is metrics


@pytest.mark.parametrize("opts", OPTIONS)
def test_reliability_bins_count_each_bin_as_the_ece_does(opts):
    probs = np.asarray(jax.nn.softmax(LOGITS * 2, axis=-1), np.float64)
    w = _w(opts.get("weights"), opts.get("where"), (N,))
    conf, correct, in_bin = (np.asarray(a, np.float64) for a in
                             metrics.reliability_bins(probs.astype(np.float32), LABELS, num_bins=10, **opts))
    np.testing.assert_allclose(correct, probs.argmax(-1) == LABELS)
    edges = np.linspace(0.0, 1.0, 11)
    top = probs.max(-1)
    for b in range(10):  # bin b holds (b/M, (b+1)/M]
        members = (top > edges[b]) & (top <= edges[b + 1])
        np.testing.assert_allclose(in_bin[:, b], w * members, rtol=1e-6)
    np.testing.assert_allclose(conf[w > 0], top[w > 0], rtol=1e-6)
    # the ECE from the bins: sum_b |sum_i in_bin (correct - confidence)| / sum w
    ece = np.sum(np.abs(in_bin.T @ (correct - conf))) / np.sum(w)
    got = metrics.expected_calibration_error(probs.astype(np.float32), LABELS, num_bins=10, **opts)
    np.testing.assert_allclose(got, ece, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="num_bins"):
        metrics.reliability_bins(probs, LABELS, num_bins=0)

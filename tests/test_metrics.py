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
SCORE_LOGITS = np.log(SCORES.astype(np.float64) / (1 - SCORES)).astype(np.float32)
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
    expected = ref_binary(SCORES, BINARY, threshold, w)
    fns = (metrics.binary_precision, metrics.binary_recall, metrics.binary_f1)
    for fn, value in zip(fns, expected, strict=True):
        # probabilities, and their logits (the default): the same decisions
        np.testing.assert_allclose(fn(SCORES, BINARY, from_logits=False, threshold=threshold, **opts), value,
                                   rtol=1e-6)
        np.testing.assert_allclose(fn(SCORE_LOGITS, BINARY, threshold=threshold, **opts), value, rtol=1e-6)


def test_binary_metrics_accept_booleans():
    pred = SCORES > 0.5
    w = _w(WEIGHTS, None, (N,))
    for fn, expected in zip((metrics.binary_precision, metrics.binary_recall, metrics.binary_f1),
                            ref_binary(SCORES, BINARY, 0.5, w), strict=True):
        np.testing.assert_allclose(fn(pred, BINARY.astype(bool), weights=WEIGHTS), expected, rtol=1e-6)


def test_binary_metrics_zero_division_is_zero():
    targets = np.array([0, 0, 1])
    none_predicted = np.array([-0.1, -2.0, -0.3])  # logits: all negative
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
    got = metrics.expected_calibration_error(probs.astype(np.float32), LABELS, from_logits=False,
                                             num_bins=num_bins, **opts)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    from_logits = metrics.expected_calibration_error(LOGITS * 2, LABELS, num_bins=num_bins, **opts)
    np.testing.assert_allclose(from_logits, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opts", OPTIONS)
def test_expected_calibration_error_binary(opts):
    w = _w(opts.get("weights"), opts.get("where"), (N,))
    p = SCORES.astype(np.float64)
    pred = p > 0.5
    expected = ref_ece(np.where(pred, p, 1 - p), pred == (BINARY == 1), 10, w)
    got = metrics.expected_calibration_error(SCORES, BINARY, from_logits=False, num_bins=10, **opts)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    # the binary form equals the two-class form, and the logits give the same
    two_class = np.stack([1 - SCORES, SCORES], axis=-1)
    np.testing.assert_allclose(metrics.expected_calibration_error(two_class, BINARY, from_logits=False,
                                                                  num_bins=10, **opts),
                               got, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(metrics.expected_calibration_error(SCORE_LOGITS, BINARY, num_bins=10, **opts),
                               got, rtol=1e-5, atol=1e-6)


def test_perfectly_calibrated_is_zero():
    # confidence 1 and always right, confidence 0.5 and right half the time (one bin)
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.5, 0.5]], np.float32)
    labels = np.array([0, 1, 0, 1])
    ece = metrics.expected_calibration_error(probs, labels, from_logits=False, num_bins=4)
    assert float(ece) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("fn,args", [
    (metrics.accuracy, (LOGITS, LABELS)),
    (metrics.top_k_accuracy, (LOGITS, LABELS)),
    (metrics.binary_precision, (SCORES, BINARY)),
    (metrics.binary_recall, (SCORES, BINARY)),
    (metrics.binary_f1, (SCORES, BINARY)),
    (metrics.mae, (PRED, TARGET)),
    (metrics.rmse, (PRED, TARGET)),
    (metrics.expected_calibration_error, (LOGITS, LABELS)),
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
                             metrics.reliability_bins(probs.astype(np.float32), LABELS, from_logits=False,
                                                    num_bins=10, **opts))
    np.testing.assert_allclose(correct, probs.argmax(-1) == LABELS)
    edges = np.linspace(0.0, 1.0, 11)
    top = probs.max(-1)
    for b in range(10):  # bin b holds (b/M, (b+1)/M]
        members = (top > edges[b]) & (top <= edges[b + 1])
        np.testing.assert_allclose(in_bin[:, b], w * members, rtol=1e-6)
    np.testing.assert_allclose(conf[w > 0], top[w > 0], rtol=1e-6)
    # the ECE from the bins: sum_b |sum_i in_bin (correct - confidence)| / sum w
    ece = np.sum(np.abs(in_bin.T @ (correct - conf))) / np.sum(w)
    got = metrics.expected_calibration_error(probs.astype(np.float32), LABELS, from_logits=False, num_bins=10,
                                             **opts)
    np.testing.assert_allclose(got, ece, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="num_bins"):
        metrics.reliability_bins(probs, LABELS, num_bins=0)


# ------------------------------------------------------------- logits by default, checked probabilities


def test_calibration_error_of_logits_is_in_the_unit_interval():
    # once 4.0: the logits were taken for probabilities
    logits = np.eye(3, dtype=np.float32) * 5
    confidence = np.exp(5.0) / (np.exp(5.0) + 2)
    ece = metrics.expected_calibration_error(logits, np.arange(3))
    np.testing.assert_allclose(ece, 1 - confidence, rtol=1e-5)
    assert float(metrics.expected_calibration_error(np.float32([-40.0, 40.0]), np.array([1, 0]))) == 1.0
    # traced probabilities are not checked; the error still stays in [0, 1]
    wild = jnp.array([[5.0, -2.0], [3.0, 0.5]])
    assert 0.0 <= float(jax.jit(lambda p: metrics.expected_calibration_error(p, jnp.array([0, 1]),
                                                                             from_logits=False))(wild)) <= 1.0


def test_binary_accuracy_of_logits_and_probabilities():
    w = _w(WEIGHTS, None, (N,))
    expected = np.sum(w * ((SCORES > 0.5) == (BINARY == 1))) / np.sum(w)
    np.testing.assert_allclose(metrics.accuracy(SCORE_LOGITS, BINARY, weights=WEIGHTS), expected, rtol=1e-6)
    np.testing.assert_allclose(metrics.accuracy(SCORES, BINARY, from_logits=False, weights=WEIGHTS), expected,
                               rtol=1e-6)


@pytest.mark.parametrize("fn,good,targets", [
    (metrics.accuracy, jax.nn.softmax(LOGITS), LABELS),
    (metrics.top_k_accuracy, jax.nn.softmax(LOGITS), LABELS),
    (metrics.binary_precision, SCORES, BINARY),
    (metrics.binary_recall, SCORES, BINARY),
    (metrics.binary_f1, SCORES, BINARY),
    (metrics.expected_calibration_error, jax.nn.softmax(LOGITS), LABELS),
])
def test_probabilities_must_lie_in_the_unit_interval(fn, good, targets):
    bad = np.array(good).copy()
    bad[3] = bad[3] * 4 + 1  # example 3 out of [0, 1]
    with pytest.raises(jloss.LossInputError, match=r"predictions must lie in \[0, 1\].*from_logits=True"):
        fn(bad, targets, from_logits=False)
    with pytest.raises(jloss.LossInputError, match=r"predictions must lie in \[0, 1\]"):
        jloss.checked(fn)(jnp.asarray(bad), jnp.asarray(targets), from_logits=False)  # under jit too
    keep = np.ones(N, bool)
    keep[3] = False
    masked = fn(bad, targets, from_logits=False, where=keep)  # a masked example is not checked
    np.testing.assert_allclose(masked, fn(good, targets, from_logits=False, where=keep), rtol=1e-6)
    fn(bad, targets)  # logits may be anything


def test_threshold_must_be_a_probability():
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\], got 1.5"):
        metrics.binary_f1(SCORE_LOGITS, BINARY, threshold=1.5)
    assert float(metrics.binary_recall(SCORE_LOGITS, BINARY, threshold=0.0)) == 1.0  # every logit > -inf

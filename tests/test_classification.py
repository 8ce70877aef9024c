"""Classification losses: identities, worked examples and edge cases.

Every loss x option x reduction is checked against its float64 NumPy
reference in ``test_convention.py::test_reductions_weights_where``; this
file holds the identities between losses (sparse = dense one-hot, focal
gamma = 0 = cross-entropy, axis = moveaxis, ...) and the worked examples.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import CASES, CLASS_WEIGHTS, log_sigmoid, log_softmax, logsumexp, to_jax

import jloss

rng = np.random.default_rng(0)
N, C = 6, 5
LOGITS = jnp.asarray(rng.normal(scale=2.0, size=(N, C)), jnp.float32)
LABELS = jnp.asarray(rng.integers(0, C, size=N))
ONE_HOT = jax.nn.one_hot(LABELS, C)
BIN_X = jnp.asarray(rng.normal(scale=2.0, size=(4, 3)), jnp.float32)
BIN_Y = jnp.asarray(rng.choice([0.0, 1.0, 0.3], size=(4, 3)), jnp.float32)


def _vg(fn, x, *args, reduction="sum", **kw):
    return jax.value_and_grad(lambda x: fn(x, *args, reduction=reduction, **kw).sum())(x)


def _same(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=False):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


# ----------------------------------------------------------- identities

SPARSE_DENSE = [{}, {"label_smoothing": 0.1}, {"class_weights": CLASS_WEIGHTS},
                {"z_loss": 1e-2},
                {"label_smoothing": 0.3, "class_weights": CLASS_WEIGHTS, "z_loss": 1e-3},
                {"from_logits": False, "label_smoothing": 0.2, "class_weights": CLASS_WEIGHTS}]


@pytest.mark.parametrize("opts", SPARSE_DENSE, ids=lambda o: ",".join(o) or "default")
def test_sparse_equals_dense_one_hot(opts):
    """In value ("none" and "sum") and gradient, with weights and where."""
    x = jax.nn.softmax(LOGITS) if opts.get("from_logits", True) is False else LOGITS
    weights = jnp.asarray(rng.uniform(0.5, 2, size=N), jnp.float32)
    kw = dict(opts, weights=weights, where=jnp.arange(N) != 2)

    @jax.jit
    def both(x):
        return [[_vg(fn, x, t, reduction=r, **kw) for r in ("none", "sum")]
                for fn, t in ((jloss.sparse_categorical_cross_entropy, LABELS),
                              (jloss.categorical_cross_entropy, ONE_HOT))]

    sparse, dense = both(x)
    _same(sparse, dense)


def test_class_weighted_mean_differs_only_by_its_denominator():
    """Sparse "mean" divides by sum w_y (torch), dense "mean" by the example count."""
    kw = {"class_weights": CLASS_WEIGHTS, "label_smoothing": 0.1}
    sparse = jloss.sparse_categorical_cross_entropy(LOGITS, LABELS, **kw)
    dense = jloss.categorical_cross_entropy(LOGITS, ONE_HOT, **kw)
    w_y = np.asarray(CLASS_WEIGHTS)[np.asarray(LABELS)]
    np.testing.assert_allclose(float(sparse) * w_y.sum() / N, float(dense), rtol=1e-6)
    no_weights = (jloss.sparse_categorical_cross_entropy(LOGITS, LABELS),
                  jloss.categorical_cross_entropy(LOGITS, ONE_HOT))
    np.testing.assert_allclose(float(no_weights[0]), float(no_weights[1]), rtol=1e-6)


def test_dense_smoothing_equals_smooth_labels_helper():
    smoothed = jloss.smooth_labels(ONE_HOT, 0.2)
    _same(_vg(jloss.categorical_cross_entropy, LOGITS, ONE_HOT, label_smoothing=0.2),
          _vg(jloss.categorical_cross_entropy, LOGITS, smoothed))


def test_z_loss_adds_z_logsumexp_squared():
    z = 0.05
    diff = (jloss.sparse_categorical_cross_entropy(LOGITS, LABELS, z_loss=z, reduction="none")
            - jloss.sparse_categorical_cross_entropy(LOGITS, LABELS, reduction="none"))
    np.testing.assert_allclose(np.asarray(diff), z * logsumexp(np.asarray(LOGITS)) ** 2,
                               rtol=1e-5)
    assert float(jloss.categorical_cross_entropy(LOGITS, ONE_HOT, z_loss=0.0)) == float(
        jloss.categorical_cross_entropy(LOGITS, ONE_HOT))


@pytest.mark.parametrize("from_logits", [True, False])
def test_binary_focal_with_gamma_zero_and_no_alpha_is_bce(from_logits):
    x = BIN_X if from_logits else jax.nn.sigmoid(BIN_X)
    _same(_vg(jloss.binary_focal_loss, x, BIN_Y, gamma=0.0, alpha=None, from_logits=from_logits,
              reduction="none"),
          _vg(jloss.binary_cross_entropy, x, BIN_Y, from_logits=from_logits, reduction="none"))


def test_binary_focal_alpha_weights_positives_and_negatives():
    y = jnp.round(BIN_Y)
    plain = jloss.binary_focal_loss(BIN_X, y, alpha=None, reduction="none")
    got = jloss.binary_focal_loss(BIN_X, y, alpha=0.3, reduction="none")
    np.testing.assert_allclose(np.asarray(got),
                               np.asarray(plain) * np.where(np.asarray(y) == 1, 0.3, 0.7),
                               rtol=1e-6)


def test_binary_focal_labels_are_constants():
    g = jax.grad(lambda y: jloss.binary_focal_loss(BIN_X, y))(BIN_Y)
    assert np.all(np.asarray(g) == 0.0)


def test_categorical_focal_with_gamma_zero_is_sparse_ce():
    labels = LABELS.at[1].set(-100)
    _same(_vg(jloss.categorical_focal_loss, LOGITS, labels, gamma=0.0, ignore_index=-100,
              reduction="none"),
          _vg(jloss.sparse_categorical_cross_entropy, LOGITS, labels, ignore_index=-100,
              reduction="none"))
    np.testing.assert_allclose(
        float(jloss.categorical_focal_loss(LOGITS, labels, gamma=0.0, ignore_index=-100)),
        float(jloss.sparse_categorical_cross_entropy(LOGITS, labels, ignore_index=-100)),
        rtol=1e-6)


def test_categorical_focal_alpha_scalar_and_per_class():
    ce = np.asarray(jloss.categorical_focal_loss(LOGITS, LABELS, gamma=1.0, reduction="none"))
    scalar = jloss.categorical_focal_loss(LOGITS, LABELS, gamma=1.0, alpha=0.25, reduction="none")
    np.testing.assert_allclose(np.asarray(scalar), 0.25 * ce, rtol=1e-6)
    per_class = jloss.categorical_focal_loss(LOGITS, LABELS, gamma=1.0, alpha=CLASS_WEIGHTS,
                                             reduction="none")
    np.testing.assert_allclose(np.asarray(per_class),
                               np.asarray(CLASS_WEIGHTS)[np.asarray(LABELS)] * ce, rtol=1e-6)
    # alpha is part of the loss: "mean" divides by the number of examples
    mean = jloss.categorical_focal_loss(LOGITS, LABELS, gamma=1.0, alpha=CLASS_WEIGHTS)
    np.testing.assert_allclose(float(mean), np.asarray(per_class).mean(), rtol=1e-6)


CLASS_ROWS = [c for c in CASES if c.class_axis and c.axis_option]


@pytest.mark.parametrize("case", CLASS_ROWS, ids=[c.name for c in CLASS_ROWS])
def test_axis_is_moveaxis(case):
    """A class axis in the middle equals moving it last, in value and gradient."""
    opts = case.options[-1]
    args = to_jax(case, case.make(np.random.default_rng(3), (2, 3), opts))  # (2, 3, C)
    moved = tuple(jnp.moveaxis(a, -1, 1) if a.ndim == args[0].ndim else a
                  for a in args)  # (2, C, 3), labels stay (2, 3)

    def vg(a, axis):
        def f(x):
            return case.fn(x, *a[1:], **opts, axis=axis, reduction="none")
        return f(a[0]), jax.grad(lambda x: f(x).sum())(a[0])

    (v_last, g_last), (v_mid, g_mid) = jax.jit(lambda a, m: (vg(a, -1), vg(m, 1)))(args, moved)
    assert v_mid.shape == v_last.shape == case.loss_shape(args)
    _same((v_mid, jnp.moveaxis(g_mid, 1, -1)), (v_last, g_last))


def test_hinge_reads_label_zero_as_minus_one():
    s = jnp.array([0.3, -2.0, 0.9, 1.5])
    zero = jnp.zeros(4)
    np.testing.assert_allclose(np.asarray(jloss.hinge(s, zero, reduction="none")),
                               np.asarray(jloss.hinge(s, -jnp.ones(4), reduction="none")))
    np.testing.assert_allclose(np.asarray(jloss.hinge(s, zero, reduction="none")),
                               np.maximum(0, 1 + np.asarray(s)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jloss.squared_hinge(s, zero, margin=2.0,
                                                              reduction="none")),
                               np.maximum(0, 2 + np.asarray(s)) ** 2, rtol=1e-6)


def test_multiclass_hinge_torch_example():
    """torch.nn.MultiMarginLoss docs: x = [[0.1, 0.2, 0.4, 0.8]], y = [3] -> 0.3999."""
    x = jnp.array([[0.1, 0.2, 0.4, 0.8]])
    np.testing.assert_allclose(float(jloss.multiclass_hinge(x, jnp.array([3]))),
                               0.25 * ((1 - 0.7) + (1 - 0.6) + (1 - 0.4)), rtol=1e-6)
    np.testing.assert_allclose(float(jloss.multiclass_hinge(x, jnp.array([3]), p=2)),
                               0.25 * (0.3**2 + 0.4**2 + 0.6**2), rtol=1e-6)
    cw = jnp.array([1.0, 1.0, 1.0, 3.0])
    # torch multi_margin_loss with weight: the mean divides by the example count (c = 1)
    two = jnp.concatenate([x, x])
    np.testing.assert_allclose(float(jloss.multiclass_hinge(two, jnp.array([3, 0]),
                                                            class_weights=cw)),
                               (3 * 0.25 * (0.3 + 0.4 + 0.6)
                                + 0.25 * ((1 + 0.1) + (1 + 0.3) + (1 + 0.7))) / 2,
                               rtol=1e-6)


def test_sigmoid_focal_worked_example():
    """torchvision.ops.sigmoid_focal_loss at x = 2, y = 1 and x = 2, y = 0, gamma 2, alpha .25."""
    x = jnp.array([2.0, 2.0])
    y = jnp.array([1.0, 0.0])
    p = 1 / (1 + np.exp(-2.0))
    expected = [0.25 * (1 - p) ** 2 * -np.log(p), 0.75 * p**2 * -np.log(1 - p)]
    np.testing.assert_allclose(np.asarray(jloss.binary_focal_loss(x, y, reduction="none")),
                               expected, rtol=1e-6)


# -------------------------------------------- probabilities (from_logits=False)


def test_probability_inputs_equal_logit_inputs():
    _same(jloss.binary_cross_entropy(jax.nn.sigmoid(BIN_X), BIN_Y, from_logits=False,
                                     reduction="none"),
          jloss.binary_cross_entropy(BIN_X, BIN_Y, reduction="none"))
    probs = jax.nn.softmax(LOGITS)
    for fn, t in ((jloss.sparse_categorical_cross_entropy, LABELS),
                  (jloss.categorical_cross_entropy, ONE_HOT)):
        np.testing.assert_allclose(float(fn(probs, t, from_logits=False)), float(fn(LOGITS, t)),
                                   rtol=1e-5)


def test_log_of_probabilities_is_clamped_at_minus_100():
    """As PyTorch: p = 0 with y = 1 costs 100, with a finite gradient."""
    p = jnp.array([0.0, 1.0, 0.0, 1.0])
    y = jnp.array([1.0, 0.0, 0.0, 1.0])
    value, g = jax.value_and_grad(lambda p: jloss.binary_cross_entropy(
        p, y, from_logits=False, reduction="none").sum())(p)
    np.testing.assert_allclose(np.asarray(jloss.binary_cross_entropy(
        p, y, from_logits=False, reduction="none")), [100.0, 100.0, 0.0, 0.0])
    assert float(value) == 200.0 and np.all(np.isfinite(np.asarray(g)))
    probs = jnp.array([[0.0, 1.0, 0.0]])
    for fn, t in ((jloss.sparse_categorical_cross_entropy, jnp.array([0])),
                  (jloss.categorical_cross_entropy, jnp.array([[1.0, 0.0, 0.0]]))):
        value, g = jax.value_and_grad(lambda x, fn=fn, t=t: fn(x, t, from_logits=False))(probs)
        assert float(value) == 100.0 and np.all(np.isfinite(np.asarray(g)))


# ----------------------------------------------------------- gradients


def test_bce_gradient_is_sigmoid_minus_label():
    pw, s = 3.0, 0.1
    g = jax.grad(lambda x: jloss.binary_cross_entropy(x, BIN_Y, pos_weight=pw,
                                                      label_smoothing=s, reduction="sum"))(BIN_X)
    x, y = np.asarray(BIN_X, np.float64), np.asarray(BIN_Y, np.float64) * (1 - s) + s / 2
    sig = np.exp(log_sigmoid(x))
    np.testing.assert_allclose(np.asarray(g), (1 - y) * sig - pw * y * (1 - sig), rtol=1e-5,
                               atol=1e-7)


def test_pos_weight_gradient_is_summed_to_its_shape():
    pw = jnp.array([0.5, 1.0, 2.0])
    g = jax.grad(lambda w: jloss.binary_cross_entropy(BIN_X, BIN_Y, pos_weight=w,
                                                      reduction="sum"))(pw)
    y = np.asarray(BIN_Y, np.float64)
    expected = (y * -log_sigmoid(np.asarray(BIN_X, np.float64))).sum(0)
    assert g.shape == (3,)
    np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-5)


HYPER = [
    ("sparse smoothing", lambda v, fl: jloss.sparse_categorical_cross_entropy(
        _p(fl), LABELS, label_smoothing=v, from_logits=fl), 0.1),
    ("sparse z_loss", lambda v, fl: jloss.sparse_categorical_cross_entropy(
        LOGITS, LABELS, z_loss=v), 0.1),
    ("sparse class_weights", lambda v, fl: jloss.sparse_categorical_cross_entropy(
        _p(fl), LABELS, class_weights=v, from_logits=fl, label_smoothing=0.1), CLASS_WEIGHTS),
    ("dense smoothing", lambda v, fl: jloss.categorical_cross_entropy(
        _p(fl), ONE_HOT, label_smoothing=v, from_logits=fl), 0.1),
    ("dense z_loss", lambda v, fl: jloss.categorical_cross_entropy(LOGITS, ONE_HOT, z_loss=v), 0.1),
    ("dense class_weights", lambda v, fl: jloss.categorical_cross_entropy(
        _p(fl), ONE_HOT, class_weights=v, from_logits=fl), CLASS_WEIGHTS),
    ("categorical focal gamma", lambda v, fl: jloss.categorical_focal_loss(
        LOGITS, LABELS, gamma=v), 2.0),
    ("categorical focal alpha", lambda v, fl: jloss.categorical_focal_loss(
        LOGITS, LABELS, alpha=v), CLASS_WEIGHTS),
    ("binary focal gamma", lambda v, fl: jloss.binary_focal_loss(
        _b(fl), BIN_Y, gamma=v, from_logits=fl), 2.0),
    ("binary focal alpha", lambda v, fl: jloss.binary_focal_loss(
        _b(fl), BIN_Y, alpha=v, from_logits=fl), 0.25),
    ("bce smoothing", lambda v, fl: jloss.binary_cross_entropy(
        _b(fl), BIN_Y, label_smoothing=v, from_logits=fl), 0.1),
]


def _p(from_logits):
    return LOGITS if from_logits else jax.nn.softmax(LOGITS)


def _b(from_logits):
    return BIN_X if from_logits else jax.nn.sigmoid(BIN_X)


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("name,fn,value", HYPER, ids=[h[0] for h in HYPER])
def test_hyperparameters_get_zero_cotangents(name, fn, value, from_logits):
    """Smoothing, z-loss, class weights, gamma and alpha are not learned: their
    cotangent is exactly zero on every path (the mean's denominator included)."""
    g = jax.grad(lambda v: fn(v, from_logits))(jnp.asarray(value, jnp.float32))
    assert np.all(np.asarray(g) == 0.0), g


def test_dense_targets_gradient_is_minus_weighted_log_probabilities():
    t = jax.nn.softmax(jnp.asarray(rng.normal(size=(N, C)), jnp.float32))
    s = 0.2
    g = jax.grad(lambda t: jloss.categorical_cross_entropy(
        LOGITS, t, label_smoothing=s, class_weights=CLASS_WEIGHTS, reduction="sum"))(t)
    expected = -(1 - s) * np.asarray(CLASS_WEIGHTS) * log_softmax(np.asarray(LOGITS))
    np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-5)


# ----------------------------------------------------------- helpers


def test_one_hot_and_smooth_labels():
    labels = jnp.array([0, 2, 4, 5, -1])
    oh = jloss.one_hot(labels, 5)
    expected = np.zeros((5, 5))
    expected[[0, 1, 2], [0, 2, 4]] = 1  # out-of-range labels give an all-zero row
    np.testing.assert_array_equal(np.asarray(oh), expected)
    assert oh.dtype == jnp.float32 and jloss.one_hot(labels, 5, dtype=jnp.bfloat16).dtype == (
        jnp.bfloat16)
    sm = jloss.smooth_labels(jnp.asarray(expected[:3], jnp.float32), 0.1)
    np.testing.assert_allclose(np.asarray(sm), expected[:3] * 0.9 + 0.02, rtol=1e-6)
    sm_axis = jloss.smooth_labels(jnp.asarray(expected[:3].T, jnp.float32), 0.1, axis=0)
    np.testing.assert_allclose(np.asarray(sm_axis), np.asarray(sm).T, rtol=1e-6)
    with pytest.raises(TypeError, match="labels"):
        jloss.one_hot(jnp.array([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match="num_classes"):
        jloss.one_hot(labels, 0)
    with pytest.raises(ValueError, match="num_classes"):
        jloss.one_hot(labels, True)
    # a NumPy integer (say, from an array's shape or max) is an int too, as for jax.nn.one_hot
    np.testing.assert_array_equal(np.asarray(jloss.one_hot(labels, np.int64(5))), expected)
    with pytest.raises(ValueError, match="alpha"):
        jloss.smooth_labels(oh, 1.5)

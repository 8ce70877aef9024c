"""The convention layer's checks: values that used to slip through, error messages that
point at the bad entry, static options given as NumPy numbers, soft targets, the
probabilities-as-logits warning, and ``jloss.checked`` under every transformation."""

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import CASES, to_jax
from jax.test_util import check_grads

import jloss

X = jnp.array([[1.0, 2.0, 0.5], [0.1, 0.2, 3.0], [-1.0, 0.0, 1.0]])  # (3, C=3) logits
Y = jnp.array([0, 2, 1])
P = jnp.array([1.0, 2.0, 3.0, 4.0])  # regression predictions
T = jnp.zeros(4)
SPARSE = jloss.sparse_categorical_cross_entropy


# ------------------------------------------------ weights and per-class factors

BAD_FACTORS = [
    (jloss.mse, (P, T), "weights", {"weights": jnp.array([1.0, -1.0, 1.0, 1.0])}),
    (jloss.mse, (P, T), "weights", {"weights": jnp.array([1.0, 1.0, np.nan, 1.0])}),
    (jloss.huber, (P, T), "weights", {"weights": jnp.array([1.0, 1.0, 1.0, np.inf])}),
    (SPARSE, (X, Y), "weights", {"weights": jnp.array([1.0, -2.0, 1.0])}),
    (SPARSE, (X, Y), "class_weights", {"class_weights": jnp.array([1.0, -1.0, 1.0])}),
    (SPARSE, (X, Y), "class_weights", {"class_weights": jnp.array([1.0, np.inf, 1.0])}),
    (jloss.categorical_cross_entropy, (X, jax.nn.one_hot(Y, 3)), "class_weights",
     {"class_weights": jnp.array([np.nan, 1.0, 1.0])}),
    (jloss.multiclass_hinge, (X, Y), "class_weights", {"class_weights": jnp.array([1.0, -1.0, 1.0])}),
    (jloss.categorical_focal_loss, (X, Y), "alpha", {"alpha": jnp.array([0.5, -0.5, 0.5])}),
    (jloss.categorical_focal_loss, (X, Y), "alpha", {"alpha": np.inf}),
    (jloss.binary_cross_entropy, (X, (X > 0.5).astype(jnp.float32)), "pos_weight",
     {"pos_weight": jnp.array([1.0, -1.0, 1.0])}),
    (jloss.binary_cross_entropy, (X, (X > 0.5).astype(jnp.float32)), "pos_weight",
     {"pos_weight": np.float32(np.nan)}),
]


@pytest.mark.parametrize("fn,args,name,opts", BAD_FACTORS,
                         ids=[f"{f.__name__}-{n}-{i}" for i, (f, _, n, _) in enumerate(BAD_FACTORS)])
def test_negative_or_non_finite_weights_and_factors_raise(fn, args, name, opts):
    with pytest.raises(jloss.LossInputError, match=f"{name} must be non-negative and finite"):
        fn(*args, **opts)
    with pytest.raises(jloss.LossInputError, match=name):
        jloss.checked(fn)(*args, **opts)


def test_mse_with_a_negative_weight_no_longer_returns_a_number():
    """The reported case: mean 0.0 with sum -3.0."""
    with pytest.raises(jloss.LossInputError, match=r"weights .*the first -1.0 at position \(1,\)"):
        jloss.mse(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0]), weights=jnp.array([1.0, -1.0]))


def test_masked_weights_are_not_checked():
    w = jnp.array([1.0, -1.0, np.nan, 2.0])
    where = jnp.array([True, False, False, True])
    expected = (1.0 * 1.0 + 2.0 * 16.0) / 3.0
    assert float(jloss.mse(P, T, weights=w, where=where)) == pytest.approx(expected, rel=1e-6)
    assert float(jloss.checked(jloss.mse)(P, T, weights=w, where=where)) == pytest.approx(
        expected, rel=1e-6)


# --------------------------------------------- hyperparameters as NumPy numbers


@pytest.mark.parametrize("delta", [np.float32(-1), np.array(-1.0), np.float64(0.0)],
                         ids=["np.float32", "0-d array", "np.float64-zero"])
def test_numpy_hyperparameters_are_validated_eagerly_and_under_checked(delta):
    with pytest.raises(ValueError, match="delta must be > 0"):
        jloss.huber(P, T, delta=delta)
    with pytest.raises(ValueError, match="delta must be > 0"):
        jloss.checked(jloss.huber)(P, T, delta=delta)


def test_traced_hyperparameters_are_checked_inside_checked_only():
    bad = jnp.float32(-1.0)
    with pytest.raises(jloss.LossInputError, match="delta must be > 0"):
        jloss.checked(jloss.huber)(P, T, delta=bad)
    assert jax.jit(lambda d: jloss.huber(P, T, delta=d))(bad).shape == ()  # a schedule may trace it
    good = jloss.checked(jloss.huber)(P, T, delta=np.float32(1.5))
    assert float(good) == pytest.approx(float(jloss.huber(P, T, delta=1.5)), rel=1e-6)


@pytest.mark.parametrize("fn,args,opts,name", [
    (jloss.huber, (P, T), {"delta": jnp.ones(3)}, "delta"),
    (jloss.pinball, (P, T), {"quantile": jnp.full((2,), 0.5)}, "quantile"),
    (SPARSE, (X, Y), {"class_weights": jnp.ones(4)}, "class_weights"),
    (SPARSE, (X, Y), {"label_smoothing": jnp.full((3,), 0.1)}, "label_smoothing"),
    (jloss.binary_focal_loss, (X, (X > 0).astype(jnp.float32)), {"gamma": jnp.ones(2)}, "gamma"),
], ids=["huber-delta", "pinball-quantile", "sparse-class_weights", "sparse-label_smoothing",
        "binary_focal-gamma"])
def test_hyperparameter_arrays_of_the_wrong_shape_name_the_argument(fn, args, opts, name):
    with pytest.raises(ValueError, match=name):
        fn(*args, **opts)
    with pytest.raises(ValueError, match=name):
        jax.jit(lambda *a: fn(*a, **opts))(*args)


def test_hyperparameter_arrays_that_broadcast_are_accepted():
    delta = jnp.array([0.5, 1.0, 1.5, 2.0])
    e = np.abs(np.asarray(P - T, np.float64))
    d = np.asarray(delta, np.float64)
    expected = np.where(e <= d, 0.5 * e**2, d * (e - 0.5 * d)).mean()
    assert float(jloss.huber(P, T, delta=delta)) == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------- complex inputs

COMPLEX = [
    (jloss.mse, (jnp.array([1.0]), jnp.array([1 + 5j])), "targets"),
    (jloss.mse, (jnp.array([1 + 5j]), jnp.array([1.0])), "predictions"),
    (jloss.pinball, (jnp.array([1.0]), jnp.array([1 + 5j])), "targets"),
    (jloss.gaussian_nll, (jnp.array([1.0]), jnp.array([1j]), jnp.array([1.0])), "targets"),
    (jloss.gaussian_nll, (jnp.array([1.0]), jnp.array([1.0]), jnp.array([1j])), "variance"),
    (jloss.poisson_nll, (jnp.array([1.0]), jnp.array([2j])), "targets"),
    (jloss.binary_cross_entropy, (jnp.array([1.0]), jnp.array([1j])), "labels"),
    (jloss.hinge, (jnp.array([1.0]), jnp.array([1j])), "labels"),
    (jloss.categorical_cross_entropy, (X, jax.nn.one_hot(Y, 3) * (1 + 0j)), "targets"),
    (jloss.kl_divergence, (X, jax.nn.one_hot(Y, 3) * (1 + 0j)), "targets"),
    (SPARSE, (X * (1 + 0j), Y), "logits"),
]


@pytest.mark.parametrize("fn,args,name", COMPLEX,
                         ids=[f"{f.__name__}-{n}" for f, _, n in COMPLEX])
def test_complex_inputs_raise_type_error_naming_the_argument(fn, args, name):
    with pytest.raises(TypeError, match=name):
        fn(*args)


def test_complex_weights_raise():
    with pytest.raises(TypeError, match="weights"):
        jloss.mse(P, T, weights=jnp.ones(4) * (1 + 1j))


# ------------------------------------------------------------ lists and tuples


def test_lists_and_tuples_are_array_likes():
    assert float(jloss.mse([1.0, 2.0], [1.0, 3.0])) == pytest.approx(0.5)
    assert float(jloss.mae((1.0, 2.0), (1.0, 4.0), weights=[1, 3])) == pytest.approx(1.5)
    logits = [[1.0, 2.0, 0.5], [0.1, 0.2, 3.0]]
    assert float(SPARSE(logits, [0, 2])) == pytest.approx(float(SPARSE(X[:2], Y[:2])), rel=1e-6)
    assert float(SPARSE(logits, [0, 2], class_weights=[1.0, 2.0, 1.0])) == pytest.approx(
        float(SPARSE(X[:2], Y[:2], class_weights=jnp.array([1.0, 2.0, 1.0]))), rel=1e-6)
    assert np.isfinite(float(jloss.binary_cross_entropy([0.3, -1.0], (1.0, 0.0), pos_weight=[2.0, 1.0])))
    assert np.isfinite(float(jloss.hinge([0.3, -1.0], [1, -1], where=[True, False])))
    assert np.isfinite(float(jloss.kl_divergence(logits, [[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])))
    np.testing.assert_array_equal(np.asarray(jloss.one_hot([0, 2], 3)), np.eye(3)[[0, 2]])
    assert float(jloss.mse(1.0, 3.0)) == 4.0  # Python numbers too
    # array hyperparameters as lists: per element delta 0.5 and 1.0 on errors 1 and 2
    assert float(jloss.huber([1.0, 2.0], [0.0, 0.0], delta=[0.5, 1.0])) == pytest.approx(0.9375)
    assert float(jloss.hinge([0.5, -2.0], [1, -1], margin=(1.0, 3.0))) == pytest.approx(0.75)


# -------------------------------------------------------------- label messages


def test_label_errors_name_the_value_position_and_count():
    labels = jnp.array([[0, 1, 7], [9, 1, 2]])
    logits = jnp.zeros((2, 3, 4))
    with pytest.raises(jloss.LossInputError,
                       match=r"labels must be in \[0, 4\).*found 2 bad entries, the first 7 at "
                             r"position \(0, 2\)"):
        SPARSE(logits, labels)
    with pytest.raises(jloss.LossInputError, match=r"found 2 bad entries, the first 7 at position"):
        jloss.checked(SPARSE)(logits, labels)


def test_one_based_labels_get_a_hint():
    with pytest.raises(jloss.LossInputError, match="labels look 1-based"):
        SPARSE(X, jnp.array([1, 3, 2]))
    with pytest.raises(jloss.LossInputError) as info:
        SPARSE(X, jnp.array([0, 3, 2]))  # 0 present: not 1-based
    assert "1-based" not in str(info.value)


@pytest.mark.parametrize("fn", [SPARSE, jloss.categorical_focal_loss, jloss.multiclass_hinge])
def test_one_hot_labels_given_to_a_sparse_loss_get_a_hint(fn):
    with pytest.raises(ValueError, match="use categorical_cross_entropy or argmax"):
        fn(X, jax.nn.one_hot(Y, 3, dtype=jnp.int32))
    with pytest.raises(TypeError, match="categorical_cross_entropy"):
        fn(X, jax.nn.one_hot(Y, 3))


def test_binary_and_hinge_label_errors_point_at_the_entry():
    with pytest.raises(jloss.LossInputError, match=r"the first 1.5 at position \(1,\)"):
        jloss.binary_cross_entropy(jnp.zeros(3), jnp.array([0.0, 1.5, 2.0]))
    with pytest.raises(jloss.LossInputError, match=r"found 1 bad entry, the first 2.0 at position"):
        jloss.hinge(jnp.zeros(3), jnp.array([1.0, -1.0, 2.0]))


# ------------------------------------------------ probabilities passed as logits

PROBS = jax.nn.softmax(X)


@pytest.mark.parametrize("fn,args", [
    (jloss.categorical_cross_entropy, (PROBS, jax.nn.one_hot(Y, 3))),
    (SPARSE, (PROBS, Y)),
    (jloss.categorical_focal_loss, (PROBS, Y)),
    (jloss.kl_divergence, (PROBS, PROBS)),
], ids=["categorical", "sparse", "categorical_focal", "kl"])
def test_probabilities_given_as_logits_warn_in_eager_calls_only(fn, args):
    assert issubclass(jloss.InputWarning, UserWarning)
    with pytest.warns(jloss.InputWarning, match="these look like probabilities; pass logits, or "
                                               "from_logits=False") as record:
        value = fn(*args)
    assert record[0].filename == __file__  # the warning points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(float(jax.jit(fn)(*args)), float(value), rtol=1e-6)
        fn(X, args[1])  # real logits do not warn
        fn(PROBS[:, :1] * 0 + 1, args[1][:, :1] if args[1].ndim == 2 else jnp.zeros(3, int))  # C = 1


# --------------------------------------------------------- static int options


@pytest.mark.parametrize("ignore", [np.int64(2), np.array(2), jnp.array(2)],
                         ids=["np.int64", "0-d np", "0-d jnp"])
def test_numpy_ignore_index_works_as_the_int(ignore):
    expected = float(SPARSE(X, Y, ignore_index=2))
    assert float(SPARSE(X, Y, ignore_index=ignore)) == pytest.approx(expected, rel=1e-6)
    assert float(jax.jit(lambda x, y: SPARSE(x, y, ignore_index=ignore))(X, Y)) == pytest.approx(
        expected, rel=1e-6)
    if isinstance(ignore, jax.Array):  # checked() traces JAX arrays: it says what to pass
        with pytest.raises(ValueError, match="ignore_index must be a static int"):
            jloss.checked(SPARSE)(X, Y, ignore_index=ignore)
    else:
        assert float(jloss.checked(SPARSE)(X, Y, ignore_index=ignore)) == pytest.approx(
            expected, rel=1e-6)
    assert float(jloss.categorical_focal_loss(X, Y, ignore_index=ignore)) == pytest.approx(
        float(jloss.categorical_focal_loss(X, Y, ignore_index=2)), rel=1e-6)


def test_numpy_static_options_work_as_the_int():
    expected = float(SPARSE(X.T, Y, axis=0))
    for axis in (np.int64(0), np.array(0)):
        assert float(jax.jit(lambda x, y, a=axis: SPARSE(x, y, axis=a))(X.T, Y)) == pytest.approx(
            expected, rel=1e-6)
        assert float(jloss.checked(SPARSE)(X.T, Y, axis=axis)) == pytest.approx(expected, rel=1e-6)
    hinge2 = float(jloss.multiclass_hinge(X, Y, p=2))
    assert float(jloss.checked(jloss.multiclass_hinge)(X, Y, p=np.int64(2))) == pytest.approx(hinge2)
    assert float(jax.jit(lambda x, y: jloss.multiclass_hinge(x, y, p=np.array(2)))(X, Y)) == \
        pytest.approx(hinge2)
    w = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)
    ref = float(jloss.linear_cross_entropy(X, w, Y, block_size=2))
    assert float(jloss.checked(jloss.linear_cross_entropy)(X, w, Y, block_size=np.array(2))) == \
        pytest.approx(ref, rel=1e-6)
    np.testing.assert_array_equal(np.asarray(jloss.one_hot(Y, np.int64(3))), np.eye(3)[[0, 2, 1]])


@pytest.mark.parametrize("opts,match", [
    ({"ignore_index": 1.5}, "ignore_index must be an int"),
    ({"ignore_index": np.array([1, 2])}, "ignore_index must be an int"),
    ({"axis": 0.0}, "axis must be an int"),
    ({"axis": True}, "axis must be an int"),
])
def test_bad_static_options_get_a_clear_error(opts, match):
    with pytest.raises(ValueError, match=match):
        SPARSE(X, Y, **opts)


def test_a_traced_static_option_says_what_to_do():
    with pytest.raises(ValueError, match=r"ignore_index must be a static int.*static_argnames"):
        jax.jit(lambda i: SPARSE(X, Y, ignore_index=i))(2)


# ------------------------------------------------------------- empty axes


def test_empty_class_axis_and_empty_feature_axis_raise():
    with pytest.raises(ValueError, match="class axis 1 is empty"):
        SPARSE(jnp.zeros((0, 0)), jnp.zeros((0,), jnp.int32))
    with pytest.raises(ValueError, match="class axis 1 is empty"):
        jloss.categorical_cross_entropy(jnp.zeros((2, 0)), jnp.zeros((2, 0)))
    with pytest.raises(ValueError, match="feature axis D is empty"):
        jloss.linear_cross_entropy(jnp.zeros((2, 0)), jnp.zeros((0, 4)), jnp.array([0, 1]))
    assert float(SPARSE(jnp.zeros((0, 3)), jnp.zeros((0,), jnp.int32))) == 0.0  # an empty batch


# ------------------------------------------------------------- soft targets


def test_soft_targets_need_not_sum_to_one():
    t = jnp.array([[0.2, 0.3, 0.9], [0.0, 0.0, 0.0], [2.0, 0.0, 1.0]])
    logp = jax.nn.log_softmax(np.asarray(X, np.float64))
    t64 = np.asarray(t, np.float64)
    expected = -(t64 * logp).sum(-1).mean()
    assert float(jloss.categorical_cross_entropy(X, t)) == pytest.approx(expected, rel=1e-5)
    terms = np.where(t64 > 0, t64 * (np.log(np.where(t64 > 0, t64, 1)) - logp), 0)
    assert float(jloss.kl_divergence(X, t)) == pytest.approx(terms.sum(-1).mean(), rel=1e-5)
    # the closed-form backward handles any target mass: (sum t) softmax - t
    grad = jax.grad(jloss.categorical_cross_entropy)(X, t)
    p = np.exp(logp)
    np.testing.assert_allclose(np.asarray(grad), (t64.sum(-1, keepdims=True) * p - t64) / 3,
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("fn", [jloss.categorical_cross_entropy, jloss.kl_divergence])
def test_check_grads_perturbing_the_targets(fn):
    t = jnp.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.25, 0.25, 0.5]], jnp.float32)
    with jax.enable_x64():
        x64, t64 = jnp.asarray(X, jnp.float64), jnp.asarray(t, jnp.float64)
        check_grads(lambda t: fn(x64, t), (t64,), order=1, modes=("rev",), eps=1e-4)
        check_grads(lambda x, t: fn(x, t), (x64, t64), order=1, modes=("rev",), eps=1e-4)


def test_from_logits_false_predictions_must_still_sum_to_one():
    with pytest.raises(jloss.LossInputError, match=r"summing to 1.*found 1 bad row"):
        jloss.categorical_cross_entropy(jnp.array([[0.5, 0.2, 0.2], [0.2, 0.3, 0.5]]),
                                        jnp.eye(3)[:2], from_logits=False)


# --------------------------------------------------- checked under transforms

BAD = jnp.array([0, 3, 1])


def test_checked_works_under_every_transformation():
    ref, ref_grad = float(SPARSE(X, Y)), jax.grad(SPARSE)(X, Y)
    assert float(jloss.checked(SPARSE)(X, Y)) == pytest.approx(ref, rel=1e-6)
    assert float(jax.jit(jloss.checked(SPARSE))(X, Y)) == pytest.approx(ref, rel=1e-6)
    assert float(jloss.checked(jax.jit(SPARSE))(X, Y)) == pytest.approx(ref, rel=1e-6)
    for grad in (jax.grad(jloss.checked(SPARSE)), jloss.checked(jax.grad(SPARSE)),
                 jax.jit(jax.grad(jloss.checked(SPARSE)))):
        np.testing.assert_allclose(np.asarray(grad(X, Y)), np.asarray(ref_grad), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.vmap(jloss.checked(SPARSE))(X[None], Y[None])),
                               [ref], rtol=1e-6)


def test_checked_raises_under_every_transformation():
    match = r"labels must be in \[0, 3\).*the first 3 at position"
    for fn in (jloss.checked(SPARSE), jloss.checked(jax.jit(SPARSE)), jax.grad(jloss.checked(SPARSE)),
               jloss.checked(jax.grad(SPARSE)),
               jloss.checked(lambda x, y: jax.jit(jloss.checked(SPARSE))(x, y))):
        with pytest.raises(jloss.LossInputError, match=match):
            fn(X, BAD)
    with pytest.raises(jloss.LossInputError, match=match):
        jax.vmap(jloss.checked(SPARSE))(X[None], BAD[None])
    # inside a jit the check raises when the computation runs, holding the LossInputError
    for fn in (jax.jit(jloss.checked(SPARSE)), jax.jit(jax.grad(jloss.checked(SPARSE)))):
        with pytest.raises(jax.errors.JaxRuntimeError, match="LossInputError: " + match):
            jax.block_until_ready(fn(X, BAD))


@pytest.mark.parametrize("parallel", [None, "mesh"])
def test_checked_wraps_a_train_step_and_leaves_the_plain_step_alone(parallel):
    """checked(step) raises on a bad label; the plain step, called after it, still compiles
    without checks (a jitted function traced inside checked() is cached apart)."""
    x = jnp.linspace(-1.0, 1.0, 32).reshape(8, 4)
    labels = jnp.array([0, 1, 2, 0, 1, 2, 0, 1])

    def loss_fn(params, batch):
        return SPARSE(batch[0] @ params, batch[1])

    state = jloss.TrainState.create(params=jnp.zeros((4, 3)), tx=jloss.optimizer("sgd", 0.1))
    step = jloss.make_train_step(loss_fn, parallel=parallel)
    safe_state, _ = jax.block_until_ready(jloss.checked(step)(state, (x, labels)))
    with pytest.raises(jloss.LossInputError, match=r"labels must be in \[0, 3\).*the first 7"):
        jax.block_until_ready(jloss.checked(step)(state, (x, labels.at[3].set(7))))
    plain_state, _ = jax.block_until_ready(step(state, (x, labels)))
    chex.assert_trees_all_close(safe_state.params, plain_state.params, rtol=1e-6)
    _, metrics = jax.block_until_ready(step(state, (x, labels.at[3].set(7))))
    assert np.isnan(float(metrics["loss"]))  # the plain step cannot raise: NaN


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_loss_takes_nested_lists(case):
    """Every loss of the registry takes its inputs as nested Python lists, as it takes arrays."""
    args = to_jax(case, case.make(np.random.default_rng(0), (3,), {}))
    expected = float(case.fn(*args))
    assert float(case.fn(*(np.asarray(a).tolist() for a in args))) == pytest.approx(expected, rel=1e-6)

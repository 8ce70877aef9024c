"""Every bad input raises an error a user can act on (docs/conventions.md).

Static problems (shapes, dtypes, options) raise ValueError / TypeError naming
the argument, eagerly and under ``jax.jit``. Value problems raise
``jloss.LossInputError`` eagerly, give NaN for the example under a plain
``jax.jit`` (never a wrapped class), and raise under ``jloss.checked``.
Masked and ignored positions are never value-checked.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import CASES, C, to_jax

import jloss

IDS = [c.name for c in CASES]
SPARSE = [c for c in CASES if c.class_axis and c.float_args == (0,) and not c.dense_labels]
# predictions and targets share a shape
MATCHING = [c for c in CASES if c not in SPARSE and c.event_dims(0) == c.event_dims(1)]
rng = np.random.default_rng(0)


def _all_of(*parts):
    """A regex that requires every part (escaped), in any order."""
    return "".join(f"(?=.*{re.escape(p)})" for p in parts)


def _args(case, batch=(4,), opts=None):
    return to_jax(case, case.make(np.random.default_rng(1), batch, opts or {}))


# ------------------------------------------------------------------ shapes


@pytest.mark.parametrize("case", MATCHING, ids=[c.name for c in MATCHING])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_mismatched_shapes_name_both_arguments(case, jit):
    args = list(_args(case))
    good = args[0].shape
    bad = (*good[:-1], good[-1] + 1)
    args[1] = jnp.zeros(bad, args[1].dtype)
    first, second = case.arg_names[:2]
    fn = jax.jit(case.fn) if jit else case.fn
    with pytest.raises(ValueError, match=_all_of(first, second, str(good), str(bad))):
        fn(*args)


@pytest.mark.parametrize("case", SPARSE, ids=[c.name for c in SPARSE])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_sparse_label_shape_is_checked(case, jit):
    logits, _ = _args(case)
    labels = jnp.zeros((5,), jnp.int32)
    fn = jax.jit(case.fn) if jit else case.fn
    with pytest.raises(ValueError, match=_all_of("labels", "(5,)", "(4,)", case.arg_names[0],
                                                 str(logits.shape))):
        fn(logits, labels)


def test_gaussian_variance_shape_is_checked():
    mean = jnp.zeros((4, 3))
    with pytest.raises(ValueError, match=_all_of("variance", "(4, 2)", "(4, 3)")):
        jloss.gaussian_nll(mean, mean, jnp.ones((4, 2)))
    for ok in [(4, 3), (4, 1), (4,)]:  # the documented variance shapes are accepted
        assert np.isfinite(float(jloss.gaussian_nll(mean, mean, jnp.ones(ok))))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_weights_and_where_must_broadcast_without_changing_the_shape(case):
    args = _args(case)
    shape = case.loss_shape(args)
    with pytest.raises(ValueError, match=_all_of("weights", "(7,)", str(shape))):
        case.fn(*args, weights=jnp.ones((7,)))
    with pytest.raises(ValueError, match=_all_of("where", str((2, *shape)))):
        case.fn(*args, where=jnp.ones((2, *shape), bool))
    with pytest.raises(TypeError, match="where must be a boolean"):
        case.fn(*args, where=jnp.ones(shape))


# ------------------------------------------------------------------ dtypes


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_integer_predictions_raise_type_error(case, jit):
    args = list(_args(case))
    args[0] = args[0].astype(jnp.int32)
    fn = jax.jit(case.fn) if jit else case.fn
    with pytest.raises(TypeError, match=_all_of(case.arg_names[0], "floating-point", "int32")):
        fn(*args)


@pytest.mark.parametrize("case", SPARSE, ids=[c.name for c in SPARSE])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_float_sparse_labels_raise_type_error(case, jit):
    logits, labels = _args(case)
    fn = jax.jit(case.fn) if jit else case.fn
    with pytest.raises(TypeError, match=_all_of("labels", "integer", "float32")):
        fn(logits, labels.astype(jnp.float32))


# --------------------------------------------------------- hyperparameters

BAD_OPTIONS = [
    ("huber", {"delta": 0.0}, "delta"),
    ("huber", {"delta": -1.0}, "delta"),
    ("huber", {"delta": float("nan")}, "delta"),
    ("smooth_l1", {"beta": -0.5}, "beta"),
    ("binary_focal_loss", {"gamma": -1.0}, "gamma"),
    ("categorical_focal_loss", {"gamma": -0.1}, "gamma"),
    ("binary_cross_entropy", {"label_smoothing": -0.1}, "label_smoothing"),
    ("binary_cross_entropy", {"label_smoothing": 1.5}, "label_smoothing"),
    ("categorical_cross_entropy", {"label_smoothing": 1.01}, "label_smoothing"),
    ("sparse_categorical_cross_entropy", {"label_smoothing": -1e-3}, "label_smoothing"),
    ("pinball", {"quantile": 0.0}, "quantile"),
    ("pinball", {"quantile": 1.0}, "quantile"),
    ("pinball", {"quantile": -0.2}, "quantile"),
    ("pinball", {"quantile": 1.2}, "quantile"),
    ("categorical_cross_entropy", {"z_loss": -1.0}, "z_loss"),
    ("sparse_categorical_cross_entropy", {"class_weights": jnp.ones(C + 1)}, "class_weights"),
    ("sparse_categorical_cross_entropy", {"class_weights": -jnp.ones(C)}, "class_weights"),
    ("categorical_focal_loss", {"alpha": jnp.ones(C - 1)}, "alpha"),
    ("multiclass_hinge", {"p": 3}, "p must be 1 or 2"),
    ("sparse_categorical_cross_entropy", {"axis": 2}, "axis"),
    ("sparse_categorical_cross_entropy", {"from_logits": False, "z_loss": 0.1}, "z_loss"),
    ("gaussian_nll", {"eps": 0.0}, "eps"),
    ("binary_cross_entropy", {"pos_weight": -1.0}, "pos_weight"),
    ("binary_focal_loss", {"alpha": 1.5}, "alpha"),
    ("hinge", {"margin": float("nan")}, "margin"),
]


@pytest.mark.parametrize("name,opts,match", BAD_OPTIONS,
                         ids=[f"{n}-{next(iter(o.items()))}" for n, o, _ in BAD_OPTIONS])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_bad_hyperparameters_raise_value_error(name, opts, match, jit):
    case = next(c for c in CASES if c.name == name)
    args = _args(case)
    fn = jax.jit(lambda *a: case.fn(*a, **opts)) if jit else (lambda *a: case.fn(*a, **opts))
    with pytest.raises(ValueError, match=match):
        fn(*args)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_unknown_reduction_raises_value_error(case):
    args = _args(case)
    for bad in ("avg", "batchmean", None):
        with pytest.raises(ValueError, match=_all_of("reduction", "mean", "sum", "none")):
            case.fn(*args, reduction=bad)
    with pytest.raises(ValueError, match="reduction"):
        jax.jit(lambda *a: case.fn(*a, reduction="Mean"))(*args)


TRACED = [
    ("huber", "delta", 0.7),
    ("smooth_l1", "beta", 0.7),
    ("pinball", "quantile", 0.3),
    ("binary_cross_entropy", "label_smoothing", 0.1),
    ("binary_focal_loss", "gamma", 1.5),
    ("binary_focal_loss", "alpha", 0.4),
    ("categorical_cross_entropy", "label_smoothing", 0.1),
    ("categorical_cross_entropy", "z_loss", 1e-2),
    ("sparse_categorical_cross_entropy", "label_smoothing", 0.1),
    ("sparse_categorical_cross_entropy", "z_loss", 1e-2),
    ("categorical_focal_loss", "gamma", 1.5),
    ("hinge", "margin", 0.5),
]


@pytest.mark.parametrize("name,option,value", TRACED, ids=[f"{n}-{o}" for n, o, _ in TRACED])
def test_traced_hyperparameters_are_accepted_under_jit(name, option, value):
    """A schedule may feed a hyperparameter into a jitted step."""
    case = next(c for c in CASES if c.name == name)
    args = _args(case)
    eager = case.fn(*args, **{option: value})
    traced = jax.jit(lambda v, *a: case.fn(*a, **{option: v}))(jnp.float32(value), *args)
    np.testing.assert_allclose(float(traced), float(eager), rtol=1e-6)
    # a traced value cannot be validated: even an out-of-range one is accepted
    out = jax.jit(lambda v, *a: case.fn(*a, **{option: v}))(jnp.float32(-0.5), *args)
    assert out.shape == ()


# ----------------------------------------------------------- value checks

VALUE_ERRORS = [
    # name, args builder (numpy), options, message regex
    ("sparse_categorical_cross_entropy", lambda: (rng.normal(size=(3, C)), np.array([0, C, 1])),
     {}, r"labels must be in \[0, 5\)"),
    ("sparse_categorical_cross_entropy", lambda: (rng.normal(size=(3, C)), np.array([0, -1, 1])),
     {}, r"labels must be in \[0, 5\)"),
    ("sparse_categorical_cross_entropy", lambda: (rng.normal(size=(3, C)),
                                                  np.array([0, -100, 1])),
     {"ignore_index": -1}, r"labels must be in \[0, 5\)"),
    ("categorical_focal_loss", lambda: (rng.normal(size=(3, C)), np.array([0, 7, 1])),
     {}, r"labels must be in \[0, 5\)"),
    ("multiclass_hinge", lambda: (rng.normal(size=(3, C)), np.array([0, 1, -2])),
     {}, r"labels must be in \[0, 5\)"),
    ("binary_cross_entropy", lambda: (rng.normal(size=(2, 3)), np.array([[0, 1, 1.5], [0] * 3])),
     {}, r"labels must lie in \[0, 1\]"),
    ("binary_cross_entropy", lambda: (rng.normal(size=(2, 3)), np.array([[0, 1, -0.2], [0] * 3])),
     {}, r"labels must lie in \[0, 1\]"),
    ("binary_focal_loss", lambda: (rng.normal(size=(2, 3)), np.array([[0, 1, 2.0], [0] * 3])),
     {}, r"labels must lie in \[0, 1\]"),
    ("binary_cross_entropy", lambda: (np.array([[0.2, 1.2, 0.5]]), np.array([[0, 1, 1.0]])),
     {"from_logits": False}, "did you pass logits"),
    ("binary_focal_loss", lambda: (np.array([[0.2, -3.0, 0.5]]), np.array([[0, 1, 1.0]])),
     {"from_logits": False}, "did you pass logits"),
    ("categorical_cross_entropy", lambda: (rng.normal(size=(2, C)),
                                           np.array([[0.3, np.nan, 0, 0, 0]] * 2)),
     {}, "targets must be non-negative and finite"),
    ("categorical_cross_entropy", lambda: (rng.normal(size=(2, C)),
                                           np.array([[1.5, -0.5, 0, 0, 0]] * 2)),
     {}, "targets must be non-negative and finite"),
    ("categorical_cross_entropy", lambda: (rng.normal(size=(2, C)), np.eye(C)[:2]),
     {"from_logits": False}, "did you pass logits"),
    ("sparse_categorical_cross_entropy", lambda: (rng.normal(size=(2, C)), np.array([0, 1])),
     {"from_logits": False}, "did you pass logits"),
    ("kl_divergence", lambda: (rng.normal(size=(2, C)), np.array([[0.5, np.inf, 0, 0, 0]] * 2)),
     {}, "targets must be non-negative and finite"),
    ("kl_divergence", lambda: (rng.normal(size=(2, C)), np.full((2, C), 0.2)),
     {"from_logits": False}, "pass probabilities"),
    ("hinge", lambda: (rng.normal(size=(2, 3)), np.array([[1, -1, 2.0], [0, 1, 1]])),
     {}, "hinge labels must be -1 or"),
    ("squared_hinge", lambda: (rng.normal(size=(2, 3)), np.array([[1, -1, 0.5], [0, 1, 1]])),
     {}, "hinge labels must be -1 or"),
]


def _value_case(name, make, opts):
    case = next(c for c in CASES if c.name == name)
    return case, to_jax(case, make())


@pytest.mark.parametrize("name,make,opts,match", VALUE_ERRORS,
                         ids=[f"{v[0]}-{i}" for i, v in enumerate(VALUE_ERRORS)])
def test_bad_values_raise_eagerly_and_under_checked(name, make, opts, match):
    case, args = _value_case(name, make, opts)
    assert issubclass(jloss.LossInputError, ValueError)
    with pytest.raises(jloss.LossInputError, match=match):
        case.fn(*args, **opts)
    with pytest.raises(jloss.LossInputError, match=match):
        jloss.checked(case.fn)(*args, **opts)


def test_checked_unwraps_a_jitted_function():
    """checked(jax.jit(f)) traces f with the checks on, even after f ran without them."""
    logits = jnp.asarray(rng.normal(size=(3, C)), jnp.float32)
    labels = jnp.array([0, C, 1])
    fn = jax.jit(lambda x, y: jloss.sparse_categorical_cross_entropy(x, y, label_smoothing=0.1))
    assert np.isnan(float(fn(logits, labels)))
    with pytest.raises(jloss.LossInputError, match=r"labels must be in \[0, 5\)"):
        jloss.checked(fn)(logits, labels)


def test_gaussian_negative_variance_raises():
    mean = jnp.zeros((2, 3))
    var = jnp.array([[1.0, -0.1, 1.0], [1.0, 1.0, 1.0]])
    with pytest.raises(jloss.LossInputError, match="variance has a negative entry"):
        jloss.gaussian_nll(mean, mean, var)
    with pytest.raises(jloss.LossInputError, match="variance"):
        jloss.checked(jloss.gaussian_nll)(mean, mean, var)
    where = jnp.array([[True, False, True], [True, True, True]])
    assert np.isfinite(float(jloss.gaussian_nll(mean, mean, var, where=where)))


SPARSE_NAMES = ["sparse_categorical_cross_entropy", "categorical_focal_loss", "multiclass_hinge"]


@pytest.mark.parametrize("name", SPARSE_NAMES)
@pytest.mark.parametrize("bad", [C, -1])
def test_out_of_range_label_is_nan_under_jit_never_a_wrapped_class(name, bad):
    case = next(c for c in CASES if c.name == name)
    logits = jnp.asarray(rng.normal(size=(3, C)), jnp.float32)
    labels = jnp.array([0, bad, 2])
    none = jax.jit(lambda x, y: case.fn(x, y, reduction="none"))(logits, labels)
    none = np.asarray(none)
    assert np.isnan(none[1]) and np.all(np.isfinite(none[[0, 2]]))
    assert np.isnan(float(jax.jit(case.fn)(logits, labels)))
    with pytest.raises(jloss.LossInputError, match=r"labels must be in \[0, 5\)"):
        jloss.checked(case.fn)(logits, labels)


def test_checked_wraps_a_train_step_and_returns_the_same_values():
    logits = jnp.asarray(rng.normal(size=(3, C)), jnp.float32)

    def step(w, labels):
        loss, grad = jax.value_and_grad(
            lambda w: jloss.sparse_categorical_cross_entropy(logits * w, labels))(w)
        return loss, w - 0.1 * grad

    safe = jloss.checked(step)
    good = jnp.array([0, 4, 2])
    loss, w = safe(jnp.float32(1.0), good)
    ref_loss, ref_w = jax.jit(step)(jnp.float32(1.0), good)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-6)
    np.testing.assert_allclose(float(w), float(ref_w), rtol=1e-6)
    with pytest.raises(jloss.LossInputError, match="labels must be in"):
        safe(jnp.float32(1.0), jnp.array([0, 5, 2]))
    # a plain jit of the same step cannot raise: it returns NaN
    assert np.isnan(float(jax.jit(step)(jnp.float32(1.0), jnp.array([0, 5, 2]))[0]))


# ------------------------------------------- masked values are never checked

MASKED = [
    # name, args with garbage at the masked slot, where mask, options
    ("sparse_categorical_cross_entropy", lambda: (rng.normal(size=(3, C)), np.array([0, 99, 1])),
     np.array([True, False, True]), {}),
    ("categorical_focal_loss", lambda: (rng.normal(size=(3, C)), np.array([0, -5, 1])),
     np.array([True, False, True]), {}),
    ("multiclass_hinge", lambda: (rng.normal(size=(3, C)), np.array([0, 99, 1])),
     np.array([True, False, True]), {}),
    ("sparse_categorical_cross_entropy", lambda: (np.array([[0.5, 0.5, 0, 0, 0], [3.0] * C]),
                                                  np.array([0, 99])),
     np.array([True, False]), {"from_logits": False}),
    ("binary_cross_entropy", lambda: (rng.normal(size=(2, 3)), np.array([[0, 1, 7.0], [0] * 3])),
     np.array([[True, True, False], [True] * 3]), {}),
    ("binary_cross_entropy", lambda: (np.array([[0.5, 9.0, 0.5]]), np.array([[0, 1, 1.0]])),
     np.array([[True, False, True]]), {"from_logits": False}),
    ("binary_focal_loss", lambda: (rng.normal(size=(2, 3)), np.array([[0, 1, -3.0], [0] * 3])),
     np.array([[True, True, False], [True] * 3]), {}),
    ("categorical_cross_entropy", lambda: (rng.normal(size=(2, C)),
                                           np.array([[1.0, 0, 0, 0, 0], [5.0] * C])),
     np.array([True, False]), {}),
    ("kl_divergence", lambda: (rng.normal(size=(2, C)), np.array([[1.0, 0, 0, 0, 0], [-1.0] * C])),
     np.array([True, False]), {}),
    ("hinge", lambda: (rng.normal(size=(2, 3)), np.array([[1, -1, 7.0], [0, 1, 1]])),
     np.array([[True, True, False], [True] * 3]), {}),
]


@pytest.mark.parametrize("name,make,where,opts", MASKED,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(MASKED)])
def test_masked_positions_are_never_value_checked(name, make, where, opts):
    case, args = _value_case(name, make, opts)
    eager = case.fn(*args, **opts, where=where)
    checked = jloss.checked(case.fn)(*args, **opts, where=where)
    assert np.isfinite(float(eager))
    np.testing.assert_allclose(float(checked), float(eager), rtol=1e-6)


@pytest.mark.parametrize("name", ["sparse_categorical_cross_entropy", "categorical_focal_loss"])
def test_ignored_labels_are_never_value_checked(name):
    case = next(c for c in CASES if c.name == name)
    logits = jnp.asarray(rng.normal(size=(3, C)), jnp.float32)
    labels = jnp.array([0, -100, 3])
    eager = case.fn(logits, labels, ignore_index=-100)
    checked = jloss.checked(case.fn)(logits, labels, ignore_index=-100)
    np.testing.assert_allclose(float(checked), float(eager), rtol=1e-6)
    expected = case.fn(logits[jnp.array([0, 2])], labels[jnp.array([0, 2])])
    np.testing.assert_allclose(float(eager), float(expected), rtol=1e-6)
    # an ignore_index that is a valid class (ignore_index=3) masks that class's examples
    np.testing.assert_allclose(float(case.fn(logits, jnp.array([0, 3, 3]), ignore_index=3)),
                               float(case.fn(logits[:1], labels[:1])), rtol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_valid_inputs_pass_checked(case):
    """checked(fn) accepts the registry samples and returns fn's value."""
    opts = case.options[-1]
    args = _args(case, opts=opts)
    np.testing.assert_allclose(float(jloss.checked(case.fn)(*args, **opts)),
                               float(case.fn(*args, **opts)), rtol=1e-6)

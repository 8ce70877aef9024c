"""Section-7 losses: errors naming the argument, traced hyperparameters, value checks, and
the identities and edge cases of each family (the convention itself is covered for every
row by the generic registry tests)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import BY_NAME, C, log_softmax, to_jax

import jloss

rng = np.random.default_rng(3)


def _args(name, batch=(4,), opts=None):
    case = BY_NAME[name]
    return to_jax(case, case.make(np.random.default_rng(1), batch, opts or {}))


def _all_of(*parts):
    return "".join(f"(?=.*{re.escape(p)})" for p in parts)


# --------------------------------------------------------- hyperparameters

BAD_OPTIONS = [
    ("mean_absolute_percentage_error", {"eps": 0.0}, "eps"),
    ("mean_squared_logarithmic_error", {"eps": -1.0}, "eps"),
    ("cosine_distance", {"eps": 0.0}, "eps"),
    ("cosine_embedding", {"margin": 1.5}, "margin"),
    ("triplet_margin", {"p": 0.0}, "p must be"),
    ("triplet_margin", {"eps": -1e-3}, "eps"),
    ("margin_ranking", {"margin": float("nan")}, "margin"),
    ("ntxent", {"temperature": 0.0}, "temperature"),
    ("crammer_singer_hinge", {"margin": float("nan")}, "margin"),
    ("multilabel_soft_margin", {"class_weights": -np.ones(C)}, "class_weights"),
    ("multilabel_soft_margin", {"class_weights": np.ones(C + 1)}, "class_weights"),
    ("poly_cross_entropy", {"epsilon": -2.0}, "epsilon"),
    ("poly_cross_entropy", {"label_smoothing": 1.5}, "label_smoothing"),
    ("generalized_cross_entropy", {"q": 0.0}, "q must be"),
    ("generalized_cross_entropy", {"q": 1.5}, "q must be"),
    ("dice", {"activation": "relu"}, "activation"),
    ("dice", {"smooth": -1.0}, "smooth"),
    ("dice", {"beta": -0.1}, "beta"),
    ("dice", {"class_weights": np.ones(C + 1)}, "class_weights"),
    ("dice", {"axis": 0}, "batch axis"),
    ("generalized_dice", {"smooth": -0.5}, "smooth"),
]


@pytest.mark.parametrize("name,opts,match", BAD_OPTIONS,
                         ids=[f"{n}-{next(iter(o))}" for n, o, _ in BAD_OPTIONS])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_bad_hyperparameters_raise_value_error(name, opts, match, jit):
    case, args = BY_NAME[name], _args(name)
    fn = jax.jit(lambda *a: case.fn(*a, **opts)) if jit else (lambda *a: case.fn(*a, **opts))
    with pytest.raises(ValueError, match=match):
        fn(*args)


TRACED = [
    ("mean_absolute_percentage_error", "eps", 1e-3),
    ("cosine_embedding", "margin", 0.2),
    ("triplet_margin", "margin", 0.5),
    ("margin_ranking", "margin", 0.3),
    ("hinge_embedding", "margin", 0.5),
    ("ntxent", "temperature", 0.3),
    ("crammer_singer_hinge", "margin", 0.5),
    ("poly_cross_entropy", "epsilon", 1.0),
    ("generalized_cross_entropy", "q", 0.7),
    ("dice", "alpha", 0.3),
    ("generalized_dice", "smooth", 0.5),
]


@pytest.mark.parametrize("name,option,value", TRACED, ids=[f"{n}-{o}" for n, o, _ in TRACED])
def test_traced_hyperparameters_are_accepted_under_jit(name, option, value):
    case, args = BY_NAME[name], _args(name)
    eager = case.fn(*args, **{option: value})
    traced = jax.jit(lambda v, *a: case.fn(*a, **{option: v}))(jnp.float32(value), *args)
    np.testing.assert_allclose(float(traced), float(eager), rtol=1e-6)


# ------------------------------------------------------------ value checks

VALUE_ERRORS = [
    ("cosine_embedding", lambda: (*_args("cosine_embedding")[:2], jnp.array([1, 0, -1, 1])),
     {}, "labels must be -1 or"),
    ("margin_ranking", lambda: (*_args("margin_ranking")[:2], jnp.full((4, 3), 2)),
     {}, "labels must be -1 or"),
    ("hinge_embedding", lambda: (_args("hinge_embedding")[0], jnp.zeros((4, 3), jnp.int32)),
     {}, "labels must be -1 or"),
    ("soft_margin", lambda: (_args("soft_margin")[0], jnp.zeros((4, 3))), {}, "-1 or"),
    ("perceptron", lambda: (_args("perceptron")[0], jnp.full((4, 3), 0.5)), {}, "-1 or"),
    ("binary_sparsemax_loss", lambda: (_args("binary_sparsemax_loss")[0], jnp.full((4, 3), -1.0)),
     {}, "labels must be 0 or 1"),
    ("multilabel_margin", lambda: (_args("multilabel_margin")[0],
                                   jnp.array([[0, 5, -1, 0, 0]] + [[-1] * 5] * 3)),
     {}, r"class indices in \[0, 5\) padded with -1"),
    ("multilabel_soft_margin", lambda: (_args("multilabel_soft_margin")[0],
                                        jnp.full((4, 5), 1.5)), {}, r"labels must lie in \[0, 1\]"),
    ("poly_cross_entropy", lambda: (_args("poly_cross_entropy")[0], -jnp.ones((4, 5))), {},
     "targets must be non-negative and finite"),
    ("generalized_kl_divergence", lambda: (_args("generalized_kl_divergence")[0],
                                           jnp.full((4, 5), jnp.inf)), {},
     "targets must be non-negative and finite"),
    ("dice", lambda: (_args("dice")[0], -_args("dice")[1]), {},
     "targets must be non-negative and finite"),
    ("dice", lambda: (jnp.full((4, 3, 5), 0.5), _args("dice")[1]), {"from_logits": False},
     "pass probabilities"),
    ("dice", lambda: (jnp.full((4, 3, 5), 1.5), _args("dice")[1]),
     {"from_logits": False, "activation": "sigmoid"}, "pass probabilities"),
    ("ranking_softmax", lambda: (_args("ranking_softmax")[0], -jnp.ones((4, 5))), {},
     "relevance must be non-negative and finite"),
    ("sparsemax_loss", lambda: (_args("sparsemax_loss")[0], jnp.array([0, 5, 1, 1])), {},
     r"labels must be in \[0, 5\)"),
    ("crammer_singer_hinge", lambda: (_args("crammer_singer_hinge")[0], jnp.array([0, -1, 1, 1])),
     {}, r"labels must be in \[0, 5\)"),
    ("generalized_cross_entropy", lambda: (_args("generalized_cross_entropy")[0],
                                           jnp.array([0, 9, 1, 1])), {}, r"labels must be in"),
]


@pytest.mark.parametrize("name,make,opts,match", VALUE_ERRORS,
                         ids=[f"{v[0]}-{i}" for i, v in enumerate(VALUE_ERRORS)])
def test_bad_values_raise_eagerly(name, make, opts, match):
    fn, args = BY_NAME[name].fn, make()
    with pytest.raises(jloss.LossInputError, match=match):
        fn(*args, **opts)


CHECKED = [0, 6, 10, 13, 14]  # one per kind of check: sign labels, index lists, targets, sparse labels


@pytest.mark.parametrize("index", CHECKED, ids=[VALUE_ERRORS[i][0] for i in CHECKED])
def test_bad_values_raise_under_checked(index):
    name, make, opts, match = VALUE_ERRORS[index]
    with pytest.raises(jloss.LossInputError, match=match):
        jloss.checked(BY_NAME[name].fn)(*make(), **opts)


def test_masked_positions_are_never_value_checked():
    """Garbage labels / targets at masked positions: no error, eager or checked."""
    x, y = _args("multilabel_margin")
    y = y.at[1, 0].set(77)
    where = jnp.array([True, False, True, True])
    x1, x2, _ = _args("cosine_embedding")
    s, r = _args("ranking_softmax")
    r = r.at[0, 2].set(-5.0)  # an invalid (padding) item: never checked either
    valid = jnp.array([True, True, False, True, True])
    calls = [(jloss.multilabel_margin, (x, y), {"where": where}),
             (jloss.cosine_embedding, (x1, x2, jnp.array([1, 7, -1, 1])), {"where": where}),
             (jloss.ranking_softmax, (s, r), {"valid": valid})]
    for fn, args, kw in calls:
        eager = fn(*args, **kw)
        assert np.isfinite(float(eager))
        np.testing.assert_allclose(float(jloss.checked(fn)(*args, **kw)), float(eager), rtol=1e-6)


@pytest.mark.parametrize("name", ["crammer_singer_hinge", "multiclass_perceptron",
                                  "sparsemax_loss", "generalized_cross_entropy"])
def test_out_of_range_label_is_nan_under_jit(name):
    fn = BY_NAME[name].fn
    logits = jnp.asarray(rng.normal(size=(3, C)), jnp.float32)
    none = np.asarray(jax.jit(lambda x, y: fn(x, y, reduction="none"))(logits, jnp.array([0, C, 2])))
    assert np.isnan(none[1]) and np.all(np.isfinite(none[[0, 2]]))


def test_multilabel_margin_labels():
    scores = jnp.asarray(rng.normal(size=(2, 4)), jnp.float32)
    labels = jnp.array([[3, 0, -1, 1], [2, -1, 0, 0]])
    tail = jnp.array([[3, 0, -1, 2], [2, -1, 3, 1]])  # after the first -1 nothing counts
    np.testing.assert_allclose(np.asarray(jloss.multilabel_margin(scores, labels, reduction="none")),
                               np.asarray(jloss.multilabel_margin(scores, tail, reduction="none")))
    none = jnp.full((2, 4), -1)
    assert float(jloss.multilabel_margin(scores, none)) == 0.0  # no targets: nothing to rank
    s = jnp.array([[0.1, 0.2, 0.4, 0.8]])  # a class listed twice counts twice, as in torch (1.1)
    np.testing.assert_allclose(float(jloss.multilabel_margin(s, jnp.array([[3, 3, 0, -1]]))), 1.1,
                               rtol=1e-6)
    np.testing.assert_allclose(float(jloss.multilabel_margin(s, jnp.array([[3, 0, -1, 1]]))), 0.85,
                               rtol=1e-6)
    with pytest.raises(TypeError, match=_all_of("labels", "integer", "float32")):
        jloss.multilabel_margin(scores, labels.astype(jnp.float32))
    with pytest.raises(ValueError, match=_all_of("scores", "labels", "(2, 4)", "(2,)")):
        jloss.multilabel_margin(scores, labels[:, 0])
    assert np.isnan(float(jax.jit(jloss.multilabel_margin)(scores, labels.at[0, 1].set(4))))


def test_multilabel_margin_counts_match_every_pair_far_from_zero():
    # the loop over listed targets: equal to the pairwise sum (float64) and its gradient (the
    # violation counts), also at scores near 1e3, where a sum of counts times scores would cancel
    scores = (np.random.default_rng(7).normal(scale=1.5, size=(3, 7)) + 1000.0).astype(np.float32)
    scores = scores.astype(np.float64)  # the float32 inputs, exactly
    labels = np.array([[2, 5, -1, 0, 0, 0, 0], [0, 1, 2, 3, 4, 5, 6], [6, 0, 3, -1, 1, 1, 1]])
    targets = [{2, 5}, set(range(7)), {6, 0, 3}]

    def pairwise(s):
        return [sum(max(0.0, 1 - (row[j] - row[i])) for j in y for i in range(7) if i not in y) / 7
                for row, y in zip(s, targets, strict=True)]

    value, grad = jax.value_and_grad(lambda s: jloss.multilabel_margin(s, labels, reduction="sum"))(
        jnp.asarray(scores, jnp.float32))
    np.testing.assert_allclose(float(value), sum(pairwise(scores)), rtol=1e-6)
    step = np.zeros_like(scores)
    step[0, 1] = 1e-4  # a non-target of row 0: its gradient counts the targets it violates
    expected = (sum(pairwise(scores + step)) - sum(pairwise(scores - step))) / 2e-4
    np.testing.assert_allclose(float(grad[0, 1]), expected, rtol=1e-6)
    assert float(grad[1].sum()) == 0.0  # every class a target: nothing to rank


# -------------------------------------------------------------- regression


def test_mape_floor_and_msle_clamp(x64):
    p, t = jnp.array([1.0, 2.0]), jnp.array([0.0, 4.0])
    np.testing.assert_allclose(np.asarray(jloss.mape(p, t, reduction="none")), [1e9, 50.0],
                               rtol=1e-12)
    assert jloss.mape is jloss.mean_absolute_percentage_error
    assert jloss.msle is jloss.mean_squared_logarithmic_error
    p, t = jnp.array([-3.0, 0.0, 2.0]), jnp.array([1.0, 1.0, 1.0])
    value, grad = jax.value_and_grad(lambda p: jloss.msle(p, t, reduction="sum"))(p)
    expected = np.sum((np.log1p(np.maximum([-3.0, 0.0, 2.0], 1e-7)) - np.log(2.0)) ** 2)
    np.testing.assert_allclose(float(value), expected, rtol=1e-12)
    assert float(grad[0]) == 0.0 and float(grad[1]) == 0.0  # clamped: no gradient below eps


# -------------------------------------------------------------- embedding


def test_cosine_distance_of_a_zero_vector_is_one_with_a_finite_gradient():
    p, t = jnp.zeros((1, 3)), jnp.ones((1, 3))
    value, grad = jax.value_and_grad(lambda p: jloss.cosine_distance(p, t))(p)
    assert float(value) == 1.0 and np.all(np.isfinite(np.asarray(grad)))


def test_triplet_with_identical_vectors_has_a_finite_gradient():
    a = jnp.ones((2, 3))
    grads = jax.grad(lambda a, p, n: jloss.triplet_margin(a, p, n, eps=0.0), argnums=(0, 1, 2))(
        a, a, a + 1.0)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)


@pytest.mark.parametrize("p", [1.0, 2.0, 1.5])
def test_triplet_norm_degree_concrete_or_traced(p, x64):
    """A concrete p of 1 or 2 compiles to |d| / d * d (no exp and log per element); values and
    gradients equal those of the same p traced."""
    a, pos, neg = (jnp.asarray(rng.normal(size=(4, 5))) for _ in range(3))
    grad = jax.value_and_grad(lambda a, p: jloss.triplet_margin(a, pos, neg, p=p, swap=True))
    for concrete, traced in zip(grad(a, p), jax.jit(grad)(a, jnp.asarray(p)), strict=True):
        np.testing.assert_allclose(concrete, traced, rtol=1e-12)
    program = str(jax.make_jaxpr(lambda a: grad(a, p))(a))
    assert (re.search(r"\[4,5\] = (pow|exp|log) ", program) is not None) == (p == 1.5)


def test_ntxent_anchors_without_positives_count_zero(x64):
    """A singleton group adds no term and counts no pair (it is still every other anchor's
    negative); leading axes are one batch."""
    e = jnp.asarray(rng.normal(size=(5, 3)))
    labels = jnp.array([0, 0, 1, 1, 2])
    per_anchor = jloss.ntxent(e, labels, reduction="none")
    assert float(per_anchor[4]) == 0.0
    np.testing.assert_allclose(float(jloss.ntxent(e, labels)),
                               float(jnp.sum(per_anchor)) / 4, rtol=1e-12)  # 4 positive pairs
    grid = jnp.concatenate([e, e[:1]]).reshape(2, 3, 3)
    flat_labels = jnp.array([0, 0, 1, 1, 2, 3])
    np.testing.assert_allclose(float(jloss.ntxent(grid, flat_labels.reshape(2, 3))),
                               float(jloss.ntxent(grid.reshape(6, 3), flat_labels)), rtol=1e-12)
    assert float(jloss.ntxent(e, jnp.arange(5))) == 0.0  # no positive pair anywhere
    with pytest.raises(ValueError, match=_all_of("labels", "(4,)", "embeddings", "(5, 3)")):
        jloss.ntxent(e, labels[:4])


def test_pair_losses_against_their_binary_counterparts():
    s = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    y = jnp.asarray(rng.choice([-1.0, 1.0], size=(4, 3)), jnp.float32)
    np.testing.assert_allclose(float(jloss.soft_margin(s, y)),
                               float(jloss.binary_cross_entropy(s, (y + 1) / 2)), rtol=1e-6)
    np.testing.assert_allclose(float(jloss.perceptron(s, y)), float(jloss.hinge(s, y, margin=0.0)),
                               rtol=1e-6)
    labels = jnp.asarray(rng.integers(0, 3, size=4))
    onehot = jax.nn.one_hot(labels, 3)
    # Keras categorical_hinge: max(0, max((1 - y) s) - sum(y s) + 1); its max over
    # (1 - y) s sees a 0 at the label, so it matches for non-negative scores
    x_pos = s + 5.0
    keras = np.maximum(0.0, np.max((1 - onehot) * x_pos, -1) - np.sum(onehot * x_pos, -1) + 1)
    np.testing.assert_allclose(np.asarray(jloss.crammer_singer_hinge(x_pos, labels,
                                                                     reduction="none")),
                               keras, rtol=1e-6)


def test_best_other_class_losses_keep_only_the_maxima():
    """Crammer-Singer and the multi-class perceptron: a tie shares the gradient (as optax), other
    classes at -inf or a single class give 0, and value-and-grad writes no (N, C) buffer
    (optax's writes two / one)."""
    tie = jnp.array([[1.0, 1.5, 1.5]])
    for fn in (jloss.crammer_singer_hinge, jloss.multiclass_perceptron):
        np.testing.assert_array_equal(np.asarray(jax.grad(fn)(tie, jnp.array([0]))),
                                      [[-1.0, 0.5, 0.5]])
    inf = -jnp.inf
    np.testing.assert_array_equal(np.asarray(jloss.crammer_singer_hinge(
        jnp.array([[2.0, inf], [inf, 2.0], [3.0, 0.0]]), jnp.array([0, 1, 0]), reduction="none")),
        [0.0, 0.0, 0.0])
    assert float(jloss.crammer_singer_hinge(jnp.array([[2.0]]), jnp.array([0]))) == 0.0
    x, y = jnp.zeros((256, 512)), jnp.zeros((256,), jnp.int32)
    for fn in (jloss.crammer_singer_hinge, jloss.multiclass_perceptron):
        scratch = jax.jit(jax.value_and_grad(fn)).lower(x, y).compile().memory_analysis()
        assert scratch.temp_size_in_bytes < x.nbytes / 4, (fn.__name__, scratch)


# ----------------------------------------------------------- classification


def test_sparsemax_activation():
    x = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
    p = jloss.sparsemax(x)
    np.testing.assert_allclose(np.asarray(p.sum(-1)), 1.0, rtol=1e-6)
    assert np.all(np.asarray(p) >= 0) and np.any(np.asarray(p) == 0.0)
    np.testing.assert_allclose(np.asarray(jloss.sparsemax(x.T, axis=0)), np.asarray(p).T,
                               rtol=1e-6)
    jac = jax.jacrev(lambda v: jloss.sparsemax(v))(x[0])
    np.testing.assert_allclose(np.asarray(jac), np.asarray(jac).T, atol=1e-6)
    assert jloss.sparsemax(x.astype(jnp.bfloat16)).dtype == jnp.float32
    with pytest.raises(TypeError, match="x must be a floating-point"):
        jloss.sparsemax(jnp.arange(3))
    # the loss is 0 once the label leads by 1 (all mass on it), and its gradient p - onehot
    x = jnp.array([[3.0, 1.9, 0.0]])
    assert float(jloss.sparsemax_loss(x, jnp.array([0]))) == 0.0
    g = jax.grad(lambda v: jloss.sparsemax_loss(v, jnp.array([1])))(jnp.array([[1.0, 0.5, -1.0]]))
    np.testing.assert_allclose(np.asarray(g), [[0.75, -0.75, 0.0]], rtol=1e-6)


def test_binary_sparsemax_is_exactly_zero_beyond_one():
    x = jnp.array([1.5, -1.5, 0.0])
    y = jnp.array([1, 0, 1])
    value, grad = jax.value_and_grad(lambda x: jloss.binary_sparsemax_loss(x, y, reduction="sum"))(x)
    np.testing.assert_allclose(float(value), 0.25, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad), [0.0, 0.0, -0.5], rtol=1e-6)


def test_cross_entropy_variants_reduce_to_cross_entropy(x64):
    x = jnp.asarray(rng.normal(size=(4, C)))
    labels = jnp.asarray(rng.integers(0, C, size=4))
    t = jax.nn.one_hot(labels, C, dtype=jnp.float64)
    ce = jloss.categorical_cross_entropy(x, t, label_smoothing=0.1, reduction="none")
    np.testing.assert_allclose(np.asarray(jloss.poly_cross_entropy(
        x, t, epsilon=0.0, label_smoothing=0.1, reduction="none")), np.asarray(ce), rtol=1e-12)
    p_y = np.exp(np.take_along_axis(log_softmax(np.asarray(x)), np.asarray(labels)[:, None], -1))
    np.testing.assert_allclose(np.asarray(jloss.generalized_cross_entropy(
        x, labels, q=1.0, reduction="none")), 1 - p_y[:, 0], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(jloss.generalized_cross_entropy(
        x, labels, q=1e-6, reduction="none")),
        np.asarray(jloss.sparse_categorical_cross_entropy(x, labels, reduction="none")), rtol=1e-5)


def test_generalized_kl_is_kl_for_distributions_and_finite_at_zero_targets(x64):
    x = jnp.asarray(rng.normal(size=(4, C)))
    t = jax.nn.softmax(jnp.asarray(rng.normal(size=(4, C))))
    np.testing.assert_allclose(float(jloss.generalized_kl_divergence(jax.nn.log_softmax(x), t)),
                               float(jloss.kl_divergence(x, t)), rtol=1e-10)
    log_q = jnp.array([[-jnp.inf, 0.0]])
    t = jnp.array([[0.0, 1.0]])
    value, grad = jax.value_and_grad(lambda v: jloss.generalized_kl_divergence(v, t))(log_q)
    assert float(value) == 0.0 and np.all(np.isfinite(np.asarray(grad)))


# ----------------------------------------------------- segmentation, ranking


def test_dice_shapes_and_perfect_prediction():
    with pytest.raises(ValueError, match="batch axis and a class axis"):
        jloss.dice(jnp.zeros(5), jnp.zeros(5))
    masks = jax.nn.one_hot(jnp.array([[0, 1, 2, 2]]), 3)
    assert abs(float(jloss.dice(masks, masks, from_logits=False))) < 1e-7
    logits = 50.0 * (2 * masks - 1)
    assert abs(float(jloss.dice(logits, masks, activation="sigmoid"))) < 1e-6


def test_generalized_dice_is_dice_with_inverse_frequency_weights(x64):
    x, t = (jnp.asarray(a) for a in BY_NAME["generalized_dice"].make(rng, (3,), {}))
    f = np.asarray(t).reshape(-1, C).sum(0)
    w = 1 / (f**2 + 1e-7)
    w = w / w.sum() * C
    np.testing.assert_allclose(np.asarray(jloss.generalized_dice(x, t, reduction="none")),
                               np.asarray(jloss.dice(x, t, class_weights=w, reduction="none")),
                               rtol=1e-12)


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_dice_overlap_sums_blocked_over_positions(monkeypatch, activation):
    # blocks of 2 positions over 5 (a loop and a remainder) give the one-block sums and gradients
    from jloss.kernels import overlap

    gen = np.random.default_rng(5)
    x = jnp.asarray(gen.normal(size=(2, 5, 3)), jnp.float32)
    t = jnp.asarray(gen.uniform(size=(2, 5, 3)), jnp.float32)

    def run():  # a new function: traced again with the block size of the moment
        def f(x, t):
            sums = overlap.overlap_sums(activation, x, t)
            return sum(jnp.sum(v * w) for v, w in zip(sums, (1.0, 2.0, -1.0), strict=True)), sums
        return jax.jit(jax.grad(f, argnums=(0, 1), has_aux=True))(x, t)

    whole = jax.tree_util.tree_leaves(run())
    monkeypatch.setattr(overlap, "BLOCK_ELEMENTS", 12)
    for a, b in zip(jax.tree_util.tree_leaves(run()), whole, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


def test_ranking_padding_may_hold_nan():
    s = jnp.array([[2.0, jnp.nan, 0.5], [1.0, -jnp.inf, 0.0]])
    r = jnp.array([[1.0, 0.0, 0.0], [0.0, 3.0, 1.0]])
    valid = jnp.array([True, False, True])
    value, grad = jax.value_and_grad(lambda s: jloss.ranking_softmax(s, r, valid=valid))(s)
    expected = jloss.ranking_softmax(s[:, ::2], r[:, ::2])
    np.testing.assert_allclose(float(value), float(expected), rtol=1e-6)
    assert np.all(np.asarray(grad)[:, 1] == 0.0) and np.all(np.isfinite(np.asarray(grad)))
    with pytest.raises(TypeError, match="valid must be a boolean"):
        jloss.ranking_softmax(s, r, valid=jnp.ones(3))
    with pytest.raises(ValueError, match=_all_of("valid", "(4,)")):
        jloss.ranking_softmax(s, r, valid=jnp.ones(4, bool))

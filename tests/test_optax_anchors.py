"""The section-7 losses anchored on optax: value and gradient equal optax's (float64, rtol 1e-6).

Each case builds float64 inputs, calls the jloss loss and the optax function
reduced the way the jloss docstring says they agree, and compares values and
the gradient with respect to the first argument (the scores / logits /
embeddings). Edge cases the optax functions document are included (masked
lists, background class, groups of different sizes).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jloss

RTOL = 1e-6
rng = np.random.default_rng(7)


def _x(*shape, scale=1.0):
    return jnp.asarray(rng.normal(scale=scale, size=shape), jnp.float64)


def _labels(n, c):
    return jnp.asarray(rng.integers(0, c, size=n))


def _sparsemax_logits():
    return _x(6, 5)


def _cases():
    x, labels = _x(6, 5, scale=2.0), _labels(6, 5)
    pm1 = jnp.asarray(rng.choice([-1.0, 1.0], size=(6, 3)))
    scores = _x(6, 3)
    probs = jax.nn.softmax(_x(6, 5), axis=-1)
    log_q, measures = _x(6, 5, scale=0.7), jnp.asarray(rng.uniform(0.0, 2.0, size=(6, 5)))
    measures = measures.at[0, 0].set(0.0)  # a zero target: t log t = 0
    seg = _x(3, 4, 4, 5)
    masks = jax.nn.one_hot(rng.integers(0, 5, size=(3, 4, 4)), 5, dtype=jnp.float64)
    soft_masks = jax.nn.softmax(_x(3, 4, 4, 5), axis=-1)
    relevance = jnp.asarray(rng.choice([0.0, 1.0, 2.0], size=(6, 7)))
    valid = jnp.asarray(rng.uniform(size=(6, 7)) > 0.3).at[2].set(False)  # list 2: no item
    emb = _x(8, 4)
    groups = jnp.array([0, 0, 1, 1, 1, 2, 3, 3])  # group 2 has a single member
    cw = jnp.array([0.5, 1.0, 2.0, 0.0, 1.5])
    return [
        ("perceptron", lambda s: jloss.perceptron(s, pm1, reduction="none"),
         lambda s: optax.losses.perceptron_loss(s, pm1), scores),
        ("multiclass_perceptron", lambda s: jloss.multiclass_perceptron(s, labels, reduction="none"),
         lambda s: optax.losses.multiclass_perceptron_loss(s, labels), x),
        ("crammer_singer_hinge", lambda s: jloss.crammer_singer_hinge(s, labels, reduction="none"),
         lambda s: optax.losses.multiclass_hinge_loss(s, labels), x),
        ("sparsemax_loss", lambda s: jloss.sparsemax_loss(s, labels, reduction="none"),
         lambda s: optax.losses.multiclass_sparsemax_loss(s, labels), _sparsemax_logits()),
        ("binary_sparsemax_loss",
         lambda s: jloss.binary_sparsemax_loss(s, (pm1 > 0).astype(jnp.int32), reduction="none"),
         lambda s: optax.losses.sparsemax_loss(s, (pm1 > 0).astype(jnp.int32)), 1.5 * scores),
        ("sparsemax", lambda s: jloss.sparsemax(s),
         jax.vmap(optax.projections.projection_simplex), _sparsemax_logits()),
        ("poly_cross_entropy", lambda s: jloss.poly_cross_entropy(s, probs, reduction="none"),
         lambda s: optax.losses.poly_loss_cross_entropy(s, probs), x),
        ("generalized_kl_divergence",
         lambda s: jloss.generalized_kl_divergence(s, measures, reduction="none"),
         lambda s: optax.losses.generalized_kl_divergence(s, measures), log_q),
        ("dice", lambda s: jloss.dice(s, masks, reduction="none"),
         lambda s: optax.losses.dice_loss(s, masks), seg),
        ("dice_tversky_weights_background",
         lambda s: jloss.dice(s, soft_masks, alpha=0.3, beta=0.7, smooth=0.5, class_weights=cw,
                              ignore_background=True, reduction="none"),
         lambda s: optax.losses.dice_loss(s, soft_masks, alpha=0.3, beta=0.7, smooth=0.5,
                                          class_weights=cw, ignore_background=True), seg),
        ("generalized_dice", lambda s: jloss.generalized_dice(s, masks),
         lambda s: optax.losses.multiclass_generalized_dice_loss(s, masks), seg),
        ("generalized_dice_background",
         lambda s: jloss.generalized_dice(s, soft_masks, smooth=0.3, ignore_background=True),
         lambda s: optax.losses.multiclass_generalized_dice_loss(s, soft_masks, smooth=0.3,
                                                                 ignore_background=True), seg),
        ("ranking_softmax", lambda s: jloss.ranking_softmax(s, relevance),
         lambda s: optax.losses.ranking_softmax_loss(s, relevance), _x(6, 7)),
        ("ranking_softmax_valid", lambda s: jloss.ranking_softmax(s, relevance, valid=valid),
         lambda s: optax.losses.ranking_softmax_loss(s, relevance, where=valid), _x(6, 7)),
        ("ntxent", lambda e: jloss.ntxent(e, groups),
         lambda e: optax.losses.ntxent(e, groups), emb),
    ]


with jax.enable_x64(True):  # float64 inputs, built once
    CASES = _cases()


def _value_and_grad(fn):
    return jax.jit(lambda x: (fn(x), jax.grad(lambda v: jnp.sum(fn(v)))(x)))


@pytest.mark.parametrize("name,ours,theirs,x", CASES, ids=[c[0] for c in CASES])
def test_value_and_gradient_equal_optax(name, ours, theirs, x, x64):
    v_ours, g_ours = _value_and_grad(ours)(x)
    v_theirs, g_theirs = _value_and_grad(theirs)(x)
    assert v_ours.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(v_ours), np.asarray(v_theirs), rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(np.asarray(g_ours), np.asarray(g_theirs), rtol=RTOL, atol=1e-12)


def test_ranking_softmax_all_padding_list_is_not_counted(x64):
    """optax leaves lists without a valid item out of the mean; so does jloss, with a zero gradient."""
    s, r = _x(3, 4), jnp.ones((3, 4))
    valid = jnp.array([[True] * 4, [False] * 4, [True, False, True, False]])
    value, grad, theirs, subset = jax.jit(lambda s: (
        *jax.value_and_grad(lambda s: jloss.ranking_softmax(s, r, valid=valid))(s),
        optax.losses.ranking_softmax_loss(s, r, where=valid),
        jloss.ranking_softmax(s[::2], r[::2], valid=valid[::2])))(s)
    np.testing.assert_allclose(float(value), float(theirs), rtol=RTOL)
    assert np.all(np.asarray(grad)[1] == 0.0)
    np.testing.assert_allclose(float(value), float(subset), rtol=RTOL)

"""Finite answers where the limit is finite: huge and infinite logits, clamped probabilities.

Each case was NaN (or a gradient of the wrong sign) before the kernels handled it;
the expected numbers are the mathematical limits.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jloss
from jloss.kernels.softmax import sparse_ce_from_stats, sparse_ce_grad


def _value_and_grad(f, x):
    value, g = jax.value_and_grad(f)(x)
    return float(value), np.asarray(g, np.float64)


# ------------------------------------------------------------------- z-loss


@pytest.mark.parametrize("name", ["sparse", "dense"])
def test_zero_z_loss_is_no_term_beyond_the_square_root_of_float32_max(name):
    """lse = 2e19: lse^2 overflows float32, so 0 * lse^2 was NaN; without z-loss the loss is 0."""
    x = jnp.array([[2e19, 1.0, 2.0]], jnp.float32)
    if name == "sparse":
        f = lambda x: jloss.sparse_categorical_cross_entropy(x, jnp.array([0]), z_loss=0.0)  # noqa: E731
    else:
        f = lambda x: jloss.categorical_cross_entropy(x, jnp.array([[1.0, 0.0, 0.0]]))  # noqa: E731
    value, g = _value_and_grad(f, x)
    assert value == 0.0 and np.all(g == 0.0), (value, g)


@pytest.mark.parametrize("name", ["sparse", "dense"])
def test_z_loss_is_finite_wherever_its_product_is(name):
    """z = 1e-4, lse = 2e19: z lse^2 = 4e34 and its gradient 2 z lse = 4e15 are float32 numbers."""
    x = jnp.array([[2e19, 1.0, 2.0]], jnp.float32)
    if name == "sparse":
        f = lambda x: jloss.sparse_categorical_cross_entropy(x, jnp.array([0]), z_loss=1e-4)  # noqa: E731
    else:
        f = lambda x: jloss.categorical_cross_entropy(x, jnp.array([[1.0, 0.0, 0.0]]), z_loss=1e-4)  # noqa: E731
    value, g = _value_and_grad(f, x)
    np.testing.assert_allclose(value, 1e-4 * 2e19**2, rtol=1e-6)
    np.testing.assert_allclose(g, [[2 * 1e-4 * 2e19, 0.0, 0.0]], rtol=1e-6)


def test_shared_statistics_helpers_take_none_for_no_z_loss():
    """The fused head's helpers: z_loss=None adds no term, even where lse^2 overflows."""
    lse = jnp.array([3e38, 1.0], jnp.float32)
    lse_rel, picked_rel = jnp.array([0.0, 0.5]), jnp.array([0.0, -0.25])
    loss = sparse_ce_from_stats(lse_rel, picked_rel, lse, 1.0, None, None, 0.0, None, 4)
    np.testing.assert_allclose(np.asarray(loss), [0.0, 0.75])
    p = jnp.array([[1.0, 0.0], [0.25, 0.75]])
    is_label = jnp.array([[True, False], [False, True]])
    g = sparse_ce_grad(p, None, is_label, jnp.ones(2), 1.0, 1.0, lse, None, 0.0, None, 2)
    np.testing.assert_allclose(np.asarray(g), [[0.0, 0.0], [0.25, -0.25]])
    g_z = sparse_ce_grad(p, None, is_label, jnp.ones(2), 1.0, 1.0, jnp.array([2.0, 1.0]), None,
                         0.0, 0.5, 2)
    np.testing.assert_allclose(np.asarray(g_z), [[2.0, 0.0], [0.5, 0.5]])


# ------------------------------------------------------------- focal losses


def test_binary_focal_gradient_at_float32_extremes():
    """gamma * ce overflowed at |x| = 3e38 (NaN); the limits: alpha_t * (1 - 2 y) where p_t = 0, else 0."""
    x = jnp.array([3e38, -3e38, 3e38, -3e38], jnp.float32)
    y = jnp.array([0.0, 1.0, 1.0, 0.0])
    value, g = _value_and_grad(lambda x: jloss.binary_focal_loss(x, y, reduction="sum"), x)
    np.testing.assert_allclose(value, 0.75 * 3e38 + 0.25 * 3e38, rtol=1e-6)
    np.testing.assert_allclose(g, [0.75, -0.25, 0.0, 0.0], atol=1e-30)


def test_categorical_focal_gradient_at_float32_extremes():
    x = jnp.array([[3e38, 0.0, 1.0], [0.0, 3e38, -3e38]], jnp.float32)
    value, g = _value_and_grad(
        lambda x: jloss.categorical_focal_loss(x, jnp.array([1, 1]), reduction="sum"), x)
    np.testing.assert_allclose(value, 3e38, rtol=1e-6)
    np.testing.assert_allclose(g, [[1.0, -1.0, 0.0], [0.0, 0.0, 0.0]], atol=1e-30)


# ----------------------------------------------------------- infinite logits


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_binary_losses_at_infinite_logits_with_a_zero_limit(dtype):
    """BCE(+inf, 1) = BCE(-inf, 0) = 0 with gradient 0 (0 * inf was NaN)."""
    x = jnp.array([jnp.inf, -jnp.inf], dtype)
    y = jnp.array([1.0, 0.0], dtype)
    for f in (jloss.binary_cross_entropy, jloss.binary_focal_loss):
        value, g = _value_and_grad(lambda x, f=f: f(x, y, reduction="sum"), x)
        assert value == 0.0 and np.all(g == 0.0), (f.__name__, value, g)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_softmax_losses_with_an_infinite_label_logit(dtype):
    """The label's logit +inf, the others finite: p_y = 1, loss 0, gradient 0 (inf - inf was NaN)."""
    x = jnp.array([[jnp.inf, 1.0, 2.0], [-1.0, jnp.inf, 3.0]], dtype)
    labels = jnp.array([0, 1])
    losses = {
        "sparse": lambda x: jloss.sparse_categorical_cross_entropy(x, labels, reduction="sum"),
        "dense": lambda x: jloss.categorical_cross_entropy(x, jax.nn.one_hot(labels, 3),
                                                           reduction="sum"),
        "focal": lambda x: jloss.categorical_focal_loss(x, labels, reduction="sum"),
    }
    for name, f in losses.items():
        value, g = _value_and_grad(f, x)
        assert value == 0.0 and np.all(g == 0.0), (name, value, g)
    # two +inf logits share the mass: -log(1/2), gradient p - onehot = (1/2, -1/2, 0)
    two = jnp.array([[jnp.inf, jnp.inf, 0.0]], dtype)
    value, g = _value_and_grad(
        lambda x: jloss.sparse_categorical_cross_entropy(x, jnp.array([1]), reduction="sum"), two)
    np.testing.assert_allclose(value, np.log(2), rtol=1e-6)
    np.testing.assert_allclose(g, [[0.5, -0.5, 0.0]])


@pytest.mark.parametrize("p", [1, 2])
def test_multiclass_hinge_gradient_at_an_infinite_label_score(p):
    """The label column's margin is inf - inf; dropped before the power it leaks no NaN."""
    s = jnp.array([[jnp.inf, 1.0, 2.0], [0.0, 0.5, 3.0]], jnp.float32)
    value, g = _value_and_grad(
        lambda s: jloss.multiclass_hinge(s, jnp.array([0, 2]), p=p, reduction="sum"), s)
    assert value == 0.0 and np.all(g == 0.0), (value, g)


# -------------------------------------------------- clamped probabilities


def test_bce_on_probabilities_has_torchs_gradient_at_the_clamp():
    """torch: the log clamped at -100 in the forward, (p - y) / max(p (1 - p), 1e-12) in the backward.

    The clamp's own derivative (0) gave +0.7 at p = 0, y = 0.3 (the wrong sign) and 0 at
    p = 1, y = 0.
    """
    p = jnp.array([0.0, 1.0, 0.0, 1.0, 0.25], jnp.float32)
    y = jnp.array([0.3, 0.0, 1.0, 0.5, 0.75], jnp.float32)
    g = jax.grad(lambda p: jloss.binary_cross_entropy(p, y, from_logits=False,
                                                      reduction="sum"))(p)
    p64, y64 = np.asarray(p, np.float64), np.asarray(y, np.float64)
    torch_grad = (p64 - y64) / np.maximum(p64 * (1 - p64), 1e-12)
    np.testing.assert_allclose(np.asarray(g, np.float64), torch_grad, rtol=1e-6)
    assert np.all(np.sign(np.asarray(g)) == np.sign(torch_grad))

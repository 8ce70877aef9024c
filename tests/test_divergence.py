"""KL divergence: identities and zero-probability edges.

Every option x reduction is checked against the float64 NumPy reference in
``test_convention.py::test_reductions_weights_where``.
"""

import jax
import jax.numpy as jnp
import numpy as np
from _registry import log_softmax

import jloss

rng = np.random.default_rng(0)
N, C = 4, 5
LOGITS = jnp.asarray(rng.normal(scale=2.0, size=(N, C)), jnp.float32)
T = np.array([[0.5, 0.5, 0.0, 0.0, 0.0],
              [0.1, 0.2, 0.3, 0.4, 0.0],
              [1.0, 0.0, 0.0, 0.0, 0.0],
              [0.2, 0.2, 0.2, 0.2, 0.2]])
TARGETS = jnp.asarray(T, jnp.float32)


def _entropy(t):
    return -np.sum(np.where(t > 0, t * np.log(np.where(t > 0, t, 1)), 0), axis=-1)


def test_kl_is_cross_entropy_minus_entropy():
    kl = jloss.kl_divergence(LOGITS, TARGETS, reduction="none")
    ce = jloss.categorical_cross_entropy(LOGITS, TARGETS, reduction="none")
    np.testing.assert_allclose(np.asarray(kl), np.asarray(ce) - _entropy(T), rtol=1e-5,
                               atol=1e-6)


def test_kl_of_a_distribution_with_itself_is_zero():
    t = jax.nn.softmax(LOGITS)
    value, (g_x, g_t) = jax.value_and_grad(
        lambda x, t: jloss.kl_divergence(x, t, reduction="sum"), argnums=(0, 1))(
            jnp.log(t), t)
    assert abs(float(value)) < 1e-6
    np.testing.assert_allclose(np.asarray(g_x), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(g_t), 1.0, rtol=1e-5)  # d/dt t log(t/q) = 1 at t = q


def test_zero_targets_contribute_zero_with_finite_gradients():
    value, (g_x, g_t) = jax.value_and_grad(
        lambda x, t: jloss.kl_divergence(x, t, reduction="sum"), argnums=(0, 1))(
            LOGITS, TARGETS)
    log_q = log_softmax(np.asarray(LOGITS, np.float64))
    expected = np.sum(np.where(T > 0, T * (np.log(np.where(T > 0, T, 1)) - log_q), 0))
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(g_x), np.exp(log_q) - T, rtol=1e-5, atol=1e-6)
    g_t = np.asarray(g_t)
    assert np.all(np.isfinite(g_t))
    positive = T > 0
    np.testing.assert_allclose(g_t[positive], np.log(T[positive]) + 1 - log_q[positive],
                               rtol=1e-5)


def test_log_targets_equal_probability_targets():
    with np.errstate(divide="ignore"):
        log_t = jnp.asarray(np.log(T), jnp.float32)  # -inf where t = 0
    value, g = jax.value_and_grad(lambda x: jloss.kl_divergence(
        x, log_t, log_targets=True, reduction="none").sum())(LOGITS)
    plain, g_plain = jax.value_and_grad(lambda x: jloss.kl_divergence(
        x, TARGETS, reduction="none").sum())(LOGITS)
    np.testing.assert_allclose(float(value), float(plain), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_plain), rtol=1e-6, atol=1e-7)
    g_t = jax.grad(lambda t: jloss.kl_divergence(LOGITS, t, log_targets=True,
                                                 reduction="sum"))(log_t)
    assert np.all(np.isfinite(np.asarray(g_t)))


def test_probability_inputs_with_zeros():
    """from_logits=False: q = 0 where t = 0 contributes 0; where t > 0, log q is
    clamped at -100 (as PyTorch)."""
    q = jnp.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    t = jnp.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    g = jax.grad(lambda q: jloss.kl_divergence(q, t, from_logits=False, reduction="sum"))(q)
    none = jloss.kl_divergence(q, t, from_logits=False, reduction="none")
    np.testing.assert_allclose(np.asarray(none),
                               [0.0, 0.5 * (np.log(0.5) + 100) + 0.5 * np.log(0.5)], rtol=1e-6,
                               atol=1e-7)
    assert np.all(np.isfinite(np.asarray(g)))


def test_mean_is_batchmean():
    """reduction="mean" averages the per-example sums (PyTorch's "batchmean")."""
    x = jnp.asarray(rng.normal(size=(2, 3, C)), jnp.float32)
    t = jax.nn.softmax(jnp.asarray(rng.normal(size=(2, 3, C)), jnp.float32))
    total = jloss.kl_divergence(x, t, reduction="sum")
    np.testing.assert_allclose(float(jloss.kl_divergence(x, t)), float(total) / 6, rtol=1e-6)


def test_kl_is_non_negative():
    x = jnp.asarray(rng.normal(scale=5.0, size=(64, C)), jnp.float32)
    t = jax.nn.softmax(jnp.asarray(rng.normal(scale=3.0, size=(64, C)), jnp.float32))
    assert np.all(np.asarray(jloss.kl_divergence(x, t, reduction="none")) >= -1e-6)

"""Regression losses: identities and edge cases.

Every loss x option x reduction is checked against its float64 NumPy
reference in ``test_convention.py::test_reductions_weights_where``; this
file holds what the generic table cannot express.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jloss

rng = np.random.default_rng(0)
P = jnp.asarray(rng.normal(scale=2.0, size=(5, 4)), jnp.float32)
T = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)


def _value_and_grad(fn, p=P, t=T, **kw):
    return jax.value_and_grad(lambda p: fn(p, t, reduction="sum", **kw))(p)


def _same(a, b, rtol=1e-6, atol=1e-7):
    for x, y in zip(a, b, strict=False):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_smooth_l1_with_beta_zero_is_l1():
    _same(_value_and_grad(jloss.smooth_l1, beta=0.0), _value_and_grad(jloss.mae))
    e0 = jnp.zeros(3)  # subgradient 0 at e = 0 for both
    _same(_value_and_grad(jloss.smooth_l1, e0, e0, beta=0.0), (0.0, np.zeros(3)))


@pytest.mark.parametrize("beta", [0.3, 1.0, 2.5])
def test_smooth_l1_is_huber_over_beta(beta):
    v_s, g_s = _value_and_grad(jloss.smooth_l1, beta=beta)
    v_h, g_h = _value_and_grad(jloss.huber, delta=beta)
    _same((v_s, g_s), (v_h / beta, g_h / beta), rtol=1e-5)


def test_pinball_at_the_median_is_half_the_mae():
    v_p, g_p = _value_and_grad(jloss.pinball, quantile=0.5)
    v_a, g_a = _value_and_grad(jloss.mae)
    _same((v_p, g_p), (v_a / 2, g_a / 2))


def test_pinball_is_minimised_by_the_quantile():
    targets = jnp.asarray(rng.normal(size=1001), jnp.float32)
    for q in (0.1, 0.5, 0.9):
        grid = np.linspace(-3, 3, 601)
        losses = [float(jloss.pinball(jnp.full_like(targets, c), targets, quantile=q))
                  for c in grid[::10]]
        best = grid[::10][int(np.argmin(losses))]
        assert abs(best - np.quantile(np.asarray(targets), q)) < 0.11


def test_huber_at_the_boundary_and_beyond():
    delta = 1.5
    e = jnp.array([-delta, delta, 0.0, 10.0, -1e4])
    got = jloss.huber(e, jnp.zeros(5), delta=delta, reduction="none")
    a = np.abs(np.asarray(e, np.float64))
    expected = np.where(a <= delta, 0.5 * a**2, delta * (a - 0.5 * delta))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-7)
    g = jax.grad(lambda p: jloss.huber(p, jnp.zeros(5), delta=delta, reduction="sum"))(e)
    np.testing.assert_allclose(np.asarray(g), np.clip(np.asarray(e), -delta, delta))


def test_subgradients_at_zero_error():
    zero = jnp.zeros(4)
    for fn in (jloss.mae, jloss.mse, jloss.huber, jloss.smooth_l1, jloss.log_cosh,
               jloss.pinball):
        g = jax.grad(lambda p, fn=fn: fn(p, zero))(zero)
        assert np.all(np.asarray(g) == 0.0), fn.__name__


LOG_COSH_E = np.array([0.0, 1e-4, -1e-3, 1e-2, 0.3, -1.0, 3.0, 30.0, -1e4, 3e38])


def test_log_cosh_is_accurate_for_every_error():
    """float32 log cosh to 1e-6 relative, from 1e-4 (about e^2/2) to 3e38 (|e| - log 2)."""
    e = jnp.asarray(LOG_COSH_E, jnp.float32)
    g = jax.grad(lambda p: jloss.log_cosh(p, jnp.zeros_like(p), reduction="sum"))(e)
    x = np.abs(np.asarray(e, np.float64))
    with np.errstate(over="ignore"):
        small = np.log1p(2 * np.sinh(x / 2) ** 2)
    expected = np.where(x < 1, small, x + np.log1p(np.exp(-2 * x)) - math.log(2))
    none = jloss.log_cosh(e, jnp.zeros_like(e), reduction="none")
    np.testing.assert_allclose(np.asarray(none), expected, rtol=1e-6, atol=0)
    np.testing.assert_allclose(np.asarray(g), np.tanh(np.asarray(e, np.float64)), rtol=1e-6)


def test_log_cosh_curvature_at_zero_is_one():
    def f(p):
        return jloss.log_cosh(p, jnp.zeros(3), reduction="sum")
    np.testing.assert_allclose(np.asarray(jax.hessian(f)(jnp.zeros(3))), np.eye(3), atol=1e-6)


def test_gaussian_nll_variance_shapes_agree():
    var = jnp.asarray(rng.uniform(0.5, 2.0, size=(5,)), jnp.float32)
    full = jloss.gaussian_nll(P, T, jnp.broadcast_to(var[:, None], P.shape), reduction="none")
    for v in (var, var[:, None]):
        np.testing.assert_allclose(np.asarray(jloss.gaussian_nll(P, T, v, reduction="none")),
                                   np.asarray(full), rtol=1e-6)
    g_full = jax.grad(lambda v: jloss.gaussian_nll(P, T, jnp.broadcast_to(
        v[:, None], P.shape)))(var)
    g_col = jax.grad(lambda v: jloss.gaussian_nll(P, T, v))(var)
    np.testing.assert_allclose(np.asarray(g_col), np.asarray(g_full), rtol=1e-5)


def test_gaussian_nll_clamps_variance_with_a_straight_through_gradient():
    """torch clamps var at eps under no_grad: the value uses eps, the gradient is
    the derivative at the clamped value, passed to the raw variance."""
    eps = 0.5
    mean, targets = jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0])
    var = jnp.array([0.1, 2.0])
    value, g = jax.value_and_grad(lambda v: jloss.gaussian_nll(
        mean, targets, v, eps=eps, reduction="none").sum())(var)
    v = np.array([eps, 2.0])
    e2 = np.array([1.0, 4.0])
    np.testing.assert_allclose(float(value), np.sum(0.5 * (np.log(v) + e2 / v)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g), 0.5 * (1 / v - e2 / v**2), rtol=1e-6)
    full = jloss.gaussian_nll(mean, targets, var, eps=eps, full=True)
    np.testing.assert_allclose(float(full) - float(value) / 2, 0.5 * math.log(2 * math.pi),
                               rtol=1e-6)


def test_poisson_nll_edges():
    # log_input=False at a zero rate: eps keeps log finite (torch: log(x + eps))
    got = jloss.poisson_nll(jnp.array([0.0, 2.0]), jnp.array([3.0, 1.0]), log_input=False,
                            eps=1e-8, reduction="none")
    np.testing.assert_allclose(np.asarray(got), [-3 * np.log(1e-8), 2 - np.log(2 + 1e-8)],
                               rtol=1e-6)
    # the Stirling term applies to targets > 1 only
    y = jnp.array([0.0, 1.0, 1.5, 4.0])
    x = jnp.zeros(4)
    diff = np.asarray(jloss.poisson_nll(x, y, full=True, reduction="none")
                      - jloss.poisson_nll(x, y, reduction="none"))
    yy = np.asarray(y, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        stirling = np.where(yy > 1, yy * np.log(yy) - yy + 0.5 * np.log(2 * np.pi * yy), 0)
    np.testing.assert_allclose(diff, stirling, rtol=1e-5, atol=1e-6)

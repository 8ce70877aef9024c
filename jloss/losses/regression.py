"""Regression losses, elementwise over ``e = predictions - targets``.

Task guide: Gaussian noise -> ``mean_squared_error``; noisy targets or a
median fit -> ``mean_absolute_error``; outliers -> ``huber`` / ``smooth_l1`` /
``log_cosh``; quantiles -> ``pinball``; predicted uncertainty ->
``gaussian_nll``; counts -> ``poisson_nll``.

``predictions.shape == targets.shape`` is required (never silently
broadcast); every loss takes ``weights``, ``where`` and ``reduction`` as
described in :mod:`jloss._core.reduce`. Half-precision inputs are computed in
float32.
"""

import functools
import math

import jax
import jax.numpy as jnp

from jloss._core import checks
from jloss._core.dtypes import compute_dtype
from jloss._core.reduce import fill_masked, loss_mask, reduce_loss


def _check(predictions, targets, weights, where, reduction, name="predictions"):
    checks.check_float(**{name: predictions})
    checks.check_same_shape(**{name: predictions, "targets": targets})
    checks.check_convention(reduction, weights, where, jnp.shape(predictions))


@functools.partial(jax.jit, static_argnames=("pointwise", "reduction"))
def _elementwise(pointwise, predictions, targets, params, weights, where, reduction):
    """Apply ``pointwise(e, *params)`` to the masked-safe error and reduce."""
    mask = loss_mask(where, predictions.shape)
    dtype = compute_dtype(predictions, targets)
    p = fill_masked(predictions, mask, 0).astype(dtype)
    t = fill_masked(jnp.asarray(targets), mask, 0).astype(dtype)
    return reduce_loss(pointwise(p - t, *params), mask, weights, reduction)


def _squared(e):
    return e * e


def _absolute(e):
    return e * jnp.sign(e)  # subgradient 0 at e = 0


def _huber(e, delta):
    a = jnp.abs(e)
    return jnp.where(a <= delta, 0.5 * e * e, delta * (a - 0.5 * delta))


def _smooth_l1(e, beta):
    a = _absolute(e)
    safe_beta = jnp.where(beta > 0, beta, 1)
    return jnp.where(a < beta, 0.5 * e * e / safe_beta, a - 0.5 * beta)


def _log_cosh(e):
    # |e| < 1: log1p(2 sinh(e/2)^2), exact near 0 (about e^2 / 2) and smooth in e
    # (curvature 1 at 0); else |e| + softplus(-2|e|) - log 2, finite for any e.
    small = jnp.abs(e) < 1
    s = jnp.sinh(jnp.where(small, e, 0) / 2)
    a = _absolute(jnp.where(small, 1, e))
    return jnp.where(small, jnp.log1p(2 * s * s), a + jax.nn.softplus(-2 * a) - math.log(2.0))


def _pinball(e, quantile):
    r = -e  # targets - predictions
    return jnp.maximum(quantile * r, (quantile - 1) * r)


def mean_squared_error(predictions, targets, *, weights=None, where=None, reduction="mean"):
    """Mean squared error ``e^2`` (regression with Gaussian noise). Alias ``mse``.

    Args: predictions, targets of the same shape. Returns float32.
    Reference: Gauss (1809), least squares.
    """
    _check(predictions, targets, weights, where, reduction)
    return _elementwise(_squared, predictions, targets, (), weights, where, reduction)


def mean_absolute_error(predictions, targets, *, weights=None, where=None, reduction="mean"):
    """Mean absolute error ``|e|`` (noisy targets, median regression). Alias ``mae``.

    The subgradient at ``e = 0`` is 0. Reference: Laplace (1774), least absolute deviations.
    """
    _check(predictions, targets, weights, where, reduction)
    return _elementwise(_absolute, predictions, targets, (), weights, where, reduction)


def huber(predictions, targets, *, delta=1.0, weights=None, where=None, reduction="mean"):
    """Huber loss: ``e^2 / 2`` for ``|e| <= delta``, else ``delta (|e| - delta / 2)``.

    Quadratic near zero, linear for outliers (robust regression); as
    ``torch.nn.functional.huber_loss``. ``delta > 0``. Reference: Huber (1964).
    """
    _check(predictions, targets, weights, where, reduction)
    checks.check_range("delta", delta, low=0, low_open=True)
    return _elementwise(_huber, predictions, targets, (delta,), weights, where, reduction)


def smooth_l1(predictions, targets, *, beta=1.0, weights=None, where=None, reduction="mean"):
    """Smooth L1: ``e^2 / (2 beta)`` for ``|e| < beta``, else ``|e| - beta / 2``.

    ``huber / beta`` for ``beta > 0``; ``beta = 0`` is L1. As torch
    ``smooth_l1_loss``. Reference: Girshick, "Fast R-CNN" (2015).
    """
    _check(predictions, targets, weights, where, reduction)
    checks.check_range("beta", beta, low=0)
    return _elementwise(_smooth_l1, predictions, targets, (beta,), weights, where, reduction)


def log_cosh(predictions, targets, *, weights=None, where=None, reduction="mean"):
    """``log(cosh(e))``: about ``e^2 / 2`` near 0 and ``|e| - log 2`` far out.

    Computed as ``log1p(2 sinh(e/2)^2)`` for ``|e| < 1`` (accurate down to
    ``e^2 / 2``) and ``|e| + softplus(-2|e|) - log 2`` beyond, finite for any ``e``.
    Reference: ``keras.losses.log_cosh``.
    """
    _check(predictions, targets, weights, where, reduction)
    return _elementwise(_log_cosh, predictions, targets, (), weights, where, reduction)


def pinball(predictions, targets, *, quantile=0.5, weights=None, where=None, reduction="mean"):
    """Pinball (quantile) loss ``max(q (y - yhat), (q - 1)(y - yhat))``.

    Minimised by the ``q``-quantile of the targets (quantile regression);
    ``q = 0.5`` is half the MAE. ``quantile`` in (0, 1).
    Reference: Koenker & Bassett (1978).
    """
    _check(predictions, targets, weights, where, reduction)
    checks.check_range("quantile", quantile, low=0, high=1, low_open=True, high_open=True)
    return _elementwise(_pinball, predictions, targets, (quantile,), weights, where, reduction)


def gaussian_nll(mean, targets, variance, *, eps=1e-6, full=False, weights=None, where=None,
                 reduction="mean"):
    """Gaussian negative log-likelihood (regression that predicts its own variance).

    ``0.5 (log(max(var, eps)) + (mean - y)^2 / max(var, eps))`` plus
    ``0.5 log(2 pi)`` when ``full``. The clamp passes gradients straight
    through (as torch ``gaussian_nll_loss``). ``variance`` has the shape of
    ``mean``, or that shape with the last axis 1 or dropped (one variance
    per example); negative variances raise LossInputError.
    Reference: Nix & Weigend (1994).
    """
    _check(mean, targets, weights, where, reduction, name="mean")
    checks.check_float(variance=variance)
    variance = _variance_like(variance, jnp.shape(mean))
    checks.check_range("eps", eps, low=0, low_open=True)
    mask = loss_mask(where, jnp.shape(mean))
    checks.check_values(
        lambda v, mask=None: (v < 0) if mask is None else (v < 0) & mask,
        "variance has a negative entry", **({"v": jnp.broadcast_to(variance, jnp.shape(mean))}
                                           | ({} if mask is None else {"mask": mask})))
    return _gaussian_nll(mean, targets, variance, eps, weights, where, full=full,
                         reduction=reduction)


def _variance_like(variance, shape):
    vshape = jnp.shape(variance)
    if vshape == shape or (len(shape) and vshape == (*shape[:-1], 1)):
        return variance
    if len(shape) and vshape == shape[:-1]:
        return jnp.expand_dims(variance, -1)
    raise ValueError(f"variance has shape {vshape} but mean {shape} needs variance of shape "
                     f"{shape}, {(*shape[:-1], 1)} or {shape[:-1]}")


@functools.partial(jax.jit, static_argnames=("full", "reduction"))
def _gaussian_nll(mean, targets, variance, eps, weights, where, *, full, reduction):
    mask = loss_mask(where, mean.shape)
    dtype = compute_dtype(mean, variance)
    m = fill_masked(mean, mask, 0).astype(dtype)
    t = fill_masked(targets, mask, 0).astype(dtype)
    v = fill_masked(jnp.broadcast_to(variance, mean.shape), mask, 1).astype(dtype)
    v = v + jax.lax.stop_gradient(jnp.maximum(v, eps) - v)
    loss = 0.5 * (jnp.log(v) + (m - t) ** 2 / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return reduce_loss(loss, mask, weights, reduction)


def poisson_nll(predictions, targets, *, log_input=True, full=False, eps=1e-8, weights=None,
                where=None, reduction="mean"):
    """Poisson negative log-likelihood (count regression), as torch ``poisson_nll_loss``.

    ``exp(x) - y x`` when ``log_input`` (predictions are log-rates), else
    ``x - y log(x + eps)``; ``full`` adds the Stirling term
    ``y log y - y + 0.5 log(2 pi y)`` for ``y > 1``.
    """
    _check(predictions, targets, weights, where, reduction)
    checks.check_range("eps", eps, low=0, low_open=True)
    return _poisson_nll(predictions, targets, eps, weights, where, log_input=log_input,
                        full=full, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("log_input", "full", "reduction"))
def _poisson_nll(predictions, targets, eps, weights, where, *, log_input, full, reduction):
    mask = loss_mask(where, predictions.shape)
    dtype = compute_dtype(predictions, targets)
    x = fill_masked(predictions, mask, 0 if log_input else 1).astype(dtype)
    y = fill_masked(jnp.asarray(targets), mask, 0).astype(dtype)
    loss = jnp.exp(x) - y * x if log_input else x - y * jnp.log(x + eps)
    if full:
        safe_y = jnp.where(y > 1, y, 2)
        stirling = safe_y * jnp.log(safe_y) - safe_y + 0.5 * jnp.log(2 * math.pi * safe_y)
        loss = loss + jnp.where(y > 1, stirling, 0)
    return reduce_loss(loss, mask, weights, reduction)


mse = mean_squared_error
mae = mean_absolute_error


# ------------------------------------------- relative and logarithmic errors


@functools.partial(jax.jit, static_argnames=("pointwise", "target_fill", "reduction"))
def _of_both(pointwise, predictions, targets, params, weights, where, *, target_fill, reduction):
    """Apply ``pointwise(p, t, *params)`` (a loss that needs the targets themselves) and reduce."""
    mask = loss_mask(where, predictions.shape)
    dtype = compute_dtype(predictions, targets)
    p = fill_masked(predictions, mask, target_fill).astype(dtype)
    t = fill_masked(jnp.asarray(targets), mask, target_fill).astype(dtype)
    return reduce_loss(pointwise(p, t, *params), mask, weights, reduction)


def _percentage(p, t, eps):
    return 100 * _absolute(p - t) / jnp.maximum(_absolute(t), eps)


def _squared_log(p, t, eps):
    return (jnp.log1p(jnp.maximum(p, eps)) - jnp.log1p(jnp.maximum(t, eps))) ** 2


def mean_absolute_percentage_error(predictions, targets, *, eps=1e-7, weights=None, where=None,
                                   reduction="mean"):
    r"""Mean absolute percentage error, the error relative to the target, in percent.

    .. math:: \ell = 100 \, \frac{|\hat y - y|}{\max(|y|, \epsilon)}

    Regression judged in relative terms (forecasting, prices): an error of 1 on
    a target of 10 costs as much as an error of 10 on a target of 100. Targets
    near 0 blow it up (the ``eps`` floor only keeps it finite). Elementwise, as
    Keras ``mean_absolute_percentage_error`` (which then averages the last axis;
    here ``reduction`` does). Alias ``mape``.

    Args:
      predictions: ``(...)`` float array.
      targets: same shape as ``predictions``.
      eps: ``> 0``, the floor of ``|y|`` in the denominator (Keras' epsilon, 1e-7).
      weights, where, reduction: see the conventions page.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-element loss (``"none"``).

    Raises:
      ValueError: shapes differ, ``eps <= 0`` or an unknown ``reduction``.
      TypeError: integer ``predictions``.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> round(float(jloss.mape(jnp.array([11.0, 90.0]), jnp.array([10.0, 100.0]))), 4)
      10.0

    References:
      Keras ``keras.losses.mean_absolute_percentage_error``.
    """
    _check(predictions, targets, weights, where, reduction)
    checks.check_range("eps", eps, low=0, low_open=True)
    return _of_both(_percentage, predictions, targets, (eps,), weights, where, target_fill=1,
                    reduction=reduction)


def mean_squared_logarithmic_error(predictions, targets, *, eps=1e-7, weights=None, where=None,
                                   reduction="mean"):
    r"""Mean squared logarithmic error: the squared error of ``log(1 + x)``.

    .. math:: \ell = \big(\log(1 + \max(\hat y, \epsilon)) - \log(1 + \max(y, \epsilon))\big)^2

    Regression of non-negative quantities spanning orders of magnitude (counts,
    prices): penalises ratios rather than differences, and under-prediction
    more than over-prediction. Values below ``eps`` are clamped to it, with a
    zero gradient there. Elementwise, as Keras
    ``mean_squared_logarithmic_error`` (which then averages the last axis; here
    ``reduction`` does). Alias ``msle``.

    Args:
      predictions: ``(...)`` float array.
      targets: same shape as ``predictions``.
      eps: ``> 0``, the floor of both arguments (Keras' epsilon, 1e-7).
      weights, where, reduction: see the conventions page.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-element loss (``"none"``).

    Raises:
      ValueError: shapes differ, ``eps <= 0`` or an unknown ``reduction``.
      TypeError: integer ``predictions``.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> round(float(jloss.msle(jnp.array([2.0 * 2.718281828 - 1]), jnp.array([1.0]))), 4)
      1.0

    References:
      Keras ``keras.losses.mean_squared_logarithmic_error``.
    """
    _check(predictions, targets, weights, where, reduction)
    checks.check_range("eps", eps, low=0, low_open=True)
    return _of_both(_squared_log, predictions, targets, (eps,), weights, where, target_fill=0,
                    reduction=reduction)


mape = mean_absolute_percentage_error
msle = mean_squared_logarithmic_error

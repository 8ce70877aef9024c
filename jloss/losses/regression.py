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
from jloss.kernels.common import keep_inputs


def _check(predictions, targets, weights, where, reduction, name="predictions"):
    checks.check_float(**{name: predictions})
    checks.check_same_shape(**{name: predictions, "targets": targets})
    checks.check_convention(reduction, weights, where, jnp.shape(predictions))


@functools.partial(jax.jit, static_argnames=("pointwise", "reduction"))
def _elementwise(pointwise, predictions, targets, params, weights, where, reduction):
    """Apply ``pointwise(e, *params)`` to the masked-safe error and reduce."""
    mask = loss_mask(where, predictions.shape)
    dtype = compute_dtype(predictions, targets)

    def loss(p, t):
        return pointwise(p.astype(dtype) - t.astype(dtype), *params)

    p = fill_masked(predictions, mask, 0)
    t = fill_masked(jnp.asarray(targets), mask, 0)
    return reduce_loss(keep_inputs(loss, p, t), mask, weights, reduction)


def _squared(e):
    return e * e


def _pointwise(derivative):
    """A pointwise loss ``f(e)`` whose derivative is ``derivative(e, f(e))`` (a custom JVP).

    The value ``f(e)`` is written out anyway (XLA:CPU reduces a materialised
    array), so a derivative read from it costs no saved intermediate: the
    backward fuses into one pass over the value and the inputs, and the
    compiled value-and-grad needs no scratch beyond the peer's.
    """
    def wrap(f):
        f = jax.custom_jvp(f)

        @f.defjvp
        def jvp(primals, tangents):
            (e,), (de,) = primals, tangents
            value = f(e)
            return value, derivative(e, value) * de

        return f

    return wrap


@_pointwise(lambda e, value: jnp.sign(e))
def _absolute(e):
    return jnp.abs(e)  # subgradient 0 at e = 0


def _huber(e, delta):
    a = jnp.abs(e)
    return jnp.where(a <= delta, 0.5 * e * e, delta * (a - 0.5 * delta))


def _smooth_l1(e, beta):
    a = _absolute(e)
    safe_beta = jnp.where(beta > 0, beta, 1)
    return jnp.where(a < beta, 0.5 * e * e / safe_beta, a - 0.5 * beta)


def _tanh(e, value):
    """``d log cosh(e) / de = tanh(e)``, selected on the value (always >= 0).

    The select makes the backward read the value, which XLA writes anyway for
    the reduction, and write the gradient into its buffer: no scratch.
    """
    return jnp.where(value < 0, 0, jnp.tanh(e))


@_pointwise(_tanh)
def _log_cosh(e):
    # |e| < 1: -log(1 - tanh^2) / 2, exact near 0 (about e^2 / 2); beyond, |e| - log 2 +
    # log1p(exp(-2|e|)), finite for any e. One log1p on the selected argument.
    a = jnp.abs(e)
    small = a < 1
    t = jnp.tanh(a)
    r = jnp.log1p(jnp.where(small, -t * t, jnp.exp(-2 * a)))
    return jnp.where(small, -0.5 * r, a - math.log(2.0) + r)


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

    Computed as ``-log1p(-tanh(e)^2) / 2`` for ``|e| < 1`` (accurate down to
    ``e^2 / 2``) and ``|e| + softplus(-2|e|) - log 2`` beyond, finite for any
    ``e``; the gradient is ``tanh(e)``.
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

    def loss(m, t, v):
        m, t, v = m.astype(dtype), t.astype(dtype), v.astype(dtype)
        v = v + jax.lax.stop_gradient(jnp.maximum(v, eps) - v)
        out = 0.5 * (jnp.log(v) + (m - t) ** 2 / v)
        return out + 0.5 * math.log(2 * math.pi) if full else out

    m = fill_masked(mean, mask, 0)
    t = fill_masked(targets, mask, 0)
    v = fill_masked(jnp.broadcast_to(variance, mean.shape), mask, 1)
    return reduce_loss(keep_inputs(loss, m, t, v), mask, weights, reduction)


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

    def loss(x, y):
        x, y = x.astype(dtype), y.astype(dtype)
        out = jnp.exp(x) - y * x if log_input else x - y * jnp.log(x + eps)
        if full:
            safe_y = jnp.where(y > 1, y, 2)
            stirling = safe_y * jnp.log(safe_y) - safe_y + 0.5 * jnp.log(2 * math.pi * safe_y)
            out = out + jnp.where(y > 1, stirling, 0)
        return out

    x = fill_masked(predictions, mask, 0 if log_input else 1)
    y = fill_masked(jnp.asarray(targets), mask, 0)
    return reduce_loss(keep_inputs(loss, x, y), mask, weights, reduction)


mse = mean_squared_error
mae = mean_absolute_error

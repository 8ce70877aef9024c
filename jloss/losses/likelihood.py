"""Negative log-likelihoods of predicted distributions: the model predicts a
Gaussian (mean and variance) or a Poisson rate, and the loss is the negative
log-likelihood of the targets under it.

Task guide: a regression that predicts its own uncertainty -> ``gaussian_nll``;
counts -> ``poisson_nll``. Same conventions as :mod:`jloss.losses.regression`.
"""

import functools
import math

import jax
import jax.numpy as jnp

from jloss._core import checks
from jloss._core.dtypes import compute_dtype
from jloss._core.reduce import fill_masked, loss_mask, reduce_loss
from jloss.kernels.common import keep_inputs
from jloss.losses.regression import elementwise_loss


def gaussian_nll(mean, targets, variance, *, eps=1e-6, full=False, weights=None, where=None,
                 reduction="mean"):
    r"""Gaussian negative log-likelihood, for a model that predicts its own variance.

    .. math::
       \ell = \tfrac12 \Big(\log \max(\sigma^2, \epsilon)
       + \frac{(\mu - y)^2}{\max(\sigma^2, \epsilon)}\Big)
       \;\big[+ \tfrac12 \log 2\pi \text{ if full}\big]

    Heteroscedastic regression: the model outputs a mean and a variance per
    target. The clamp at ``eps`` passes gradients straight through. As torch
    ``gaussian_nll_loss``.

    Args:
      mean: ``(...)`` float array, the predicted mean.
      targets: ``(...)`` array of the shape of ``mean``.
      variance: the predicted variance, non-negative: the shape of ``mean``, or
        that shape with the last axis 1 or dropped (one variance per example).
      eps: ``> 0``; the variance is clamped to at least ``eps``.
      full: add the constant ``0.5 log(2 pi)``.
      weights: non-negative weights broadcastable to the unreduced loss, or None.
      where: boolean mask broadcastable to the unreduced loss, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; for ``"none"`` the elementwise
      loss of shape ``mean.shape`` (float64 for float64 inputs).

    Raises:
      ValueError: bad shapes (``variance`` included), ``eps <= 0``, or bad
        ``weights``, ``where`` or ``reduction``.
      TypeError: integer ``mean`` or ``variance``.
      LossInputError: a negative variance (eager calls).

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> jloss.gaussian_nll(jnp.array([0.0, 1.0]), jnp.array([1.0, 1.0]), jnp.array([1.0, 1.0]),
      ...                    reduction="none").tolist()
      [0.5, 0.0]

    References:
      Nix, D. A. and Weigend, A. S. (1994). Estimating the mean and variance of
      the target probability distribution. ICNN.
    """
    mean, targets, weights, where = checks.regression_inputs(
        mean, targets, weights, where, reduction, name="mean")
    variance = checks.array_likes(variance)
    checks.check_float(variance=variance)
    variance = _variance_like(variance, jnp.shape(mean))
    eps = checks.check_range("eps", eps, low=0, low_open=True, shape=jnp.shape(mean))
    checks.check_values(jnp.broadcast_to(variance, jnp.shape(mean)), lambda v, xp: ~(v >= 0),
                        "variance has a negative entry (or NaN)", loss_mask(where, jnp.shape(mean)))
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
    r"""Poisson negative log-likelihood, for count regression.

    .. math::
       \ell = \begin{cases} e^{x} - y\,x & \text{log\_input} \\
       x - y \log(x + \epsilon) & \text{otherwise} \end{cases}
       \;\big[+\, y \log y - y + \tfrac12 \log(2\pi y) \text{ if full and } y > 1\big]

    Counts (events, clicks, photons) with a predicted rate: ``predictions`` are
    log-rates with ``log_input=True`` (the stable choice) or rates. ``full`` adds
    Stirling's approximation of ``log y!``. As torch ``poisson_nll_loss``.

    Args:
      predictions: ``(...)`` float array: log-rates, or rates with ``log_input=False``.
      targets: ``(...)`` non-negative counts, the shape of ``predictions``.
      log_input: whether ``predictions`` are log-rates.
      full: add the Stirling term.
      eps: ``> 0``; keeps ``log(x + eps)`` finite at rate 0.
      weights: non-negative weights broadcastable to the unreduced loss, or None.
      where: boolean mask broadcastable to the unreduced loss, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; for ``"none"`` the elementwise
      loss of shape ``predictions.shape`` (float64 for float64 inputs).

    Raises:
      ValueError: ``predictions`` and ``targets`` differ in shape, or ``weights``,
        ``where`` or ``reduction`` are bad, or ``eps <= 0``.
      TypeError: integer ``predictions``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> [round(v, 4) for v in jloss.poisson_nll(jnp.array([0.0, 1.0]), jnp.array([1.0, 2.0]),
      ...                                         reduction="none").tolist()]
      [1.0, 0.7183]

    References:
      PyTorch ``torch.nn.functional.poisson_nll_loss``; McCullagh, P. and Nelder,
      J. A. (1989). *Generalized Linear Models*.
    """
    predictions, targets, weights, where = checks.regression_inputs(
        predictions, targets, weights, where, reduction)
    eps = checks.check_range("eps", eps, low=0, low_open=True, shape=jnp.shape(predictions))
    return elementwise_loss(_POISSON[bool(log_input), bool(full)], predictions, targets, (eps,),
                            weights, where, reduction, of_error=False, fill=0 if log_input else 1)


def _poisson(x, y, eps, *, log_input, full):
    out = jnp.exp(x) - y * x if log_input else x - y * jnp.log(x + eps)
    if full:
        safe_y = jnp.where(y > 1, y, 2)
        stirling = safe_y * jnp.log(safe_y) - safe_y + 0.5 * jnp.log(2 * math.pi * safe_y)
        out = out + jnp.where(y > 1, stirling, 0)
    return out


#: One pointwise function per option pair (a static argument: the same object every call).
_POISSON = {(log_input, full): functools.partial(_poisson, log_input=log_input, full=full)
            for log_input in (True, False) for full in (True, False)}

"""Regression losses, elementwise over ``e = predictions - targets``.

Task guide: Gaussian noise -> ``mean_squared_error``; noisy targets or a
median fit -> ``mean_absolute_error``; outliers -> ``huber`` / ``smooth_l1`` /
``log_cosh``; quantiles -> ``pinball``; relative errors -> ``mape``; values
spanning orders of magnitude -> ``msle``. Predicted uncertainty and counts:
:mod:`jloss.losses.likelihood`.

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
from jloss._core.reduce import constant, fill_masked, loss_mask, reduce_loss
from jloss.kernels.common import keep_inputs


@functools.partial(jax.jit, static_argnames=("pointwise", "reduction", "of_error", "fill"))
def elementwise_loss(pointwise, predictions, targets, params, weights, where, reduction, *,
                 of_error=True, fill=0):
    """Apply ``pointwise(e, *params)`` to the error ``e = p - t`` (``of_error``), or
    ``pointwise(p, t, *params)`` to both, with masked slots set to ``fill``, and reduce.

    The one body of every elementwise ``(predictions, targets)`` loss (here and in
    :mod:`jloss.losses.likelihood`); ``pointwise`` is static, a module-level function.
    """
    mask = loss_mask(where, predictions.shape)
    dtype = compute_dtype(predictions, targets)

    def loss(p, t):
        p, t = p.astype(dtype), t.astype(dtype)
        return pointwise(p - t, *params) if of_error else pointwise(p, t, *params)

    p = fill_masked(predictions, mask, fill)
    t = fill_masked(jnp.asarray(targets), mask, fill)
    return reduce_loss(keep_inputs(loss, p, t), mask, weights, reduction)


def _squared(e):
    return e * e


def _pointwise(derivative):
    """A pointwise loss ``f(e, *params)`` whose derivative in ``e`` is
    ``derivative(e, f(e, *params), *params)`` (a custom JVP).

    The value ``f(e)`` is written out anyway (XLA:CPU reduces a materialised
    array), so a derivative read from it costs no saved intermediate: the
    backward fuses into one pass over the value and the inputs, and the
    compiled value-and-grad needs no scratch beyond the peer's. ``params``
    are hyperparameters, constants (:func:`jloss._core.reduce.constant`).
    """
    def wrap(f):
        f = jax.custom_jvp(f)

        @f.defjvp
        def jvp(primals, tangents):
            (e, *params), de = primals, tangents[0]
            value = f(e, *params)
            return value, derivative(e, value, *params) * de

        return f

    return wrap


@_pointwise(lambda e, value: jnp.sign(e))
def _absolute(e):
    return jnp.abs(e)  # subgradient 0 at e = 0


def _huber_slope(e, value, delta):
    """``e`` in the quadratic part, ``delta sign(e)`` beyond; selected on the value (>= 0)."""
    return jnp.where(value < 0, 0, jnp.where(jnp.abs(e) <= delta, e, delta * jnp.sign(e)))


@_pointwise(_huber_slope)
def _huber(e, delta):
    a = jnp.abs(e)
    return jnp.where(a <= delta, 0.5 * e * e, delta * (a - 0.5 * delta))


def _smooth_l1_slope(e, value, beta):
    """``e / beta`` in the quadratic part, ``sign(e)`` beyond; selected on the value
    (always >= 0), so that the backward writes the gradient into the value's buffer."""
    slope = jnp.where(jnp.abs(e) < beta, e / jnp.where(beta > 0, beta, 1), jnp.sign(e))
    return jnp.where(value < 0, 0, slope)


@_pointwise(_smooth_l1_slope)
def _smooth_l1(e, beta):
    a = jnp.abs(e)
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
    r"""Mean squared error: the squared difference, for regression with Gaussian noise.

    .. math:: \ell = e^2, \qquad e = \text{predictions} - \text{targets}

    The maximum-likelihood loss for targets with Gaussian noise; minimised by the
    conditional mean, and sensitive to outliers. As torch ``mse_loss``, Keras
    ``MeanSquaredError`` and optax ``squared_error`` (which does not average).
    ``jloss.mse`` is the same function.

    Args:
      predictions: ``(...)`` float array.
      targets: ``(...)`` array of the shape of ``predictions``.
      weights: non-negative weights broadcastable to the unreduced loss, or None.
      where: boolean mask broadcastable to the unreduced loss, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; for ``"none"`` the elementwise
      loss of shape ``predictions.shape`` (float64 for float64 inputs).

    Raises:
      ValueError: ``predictions`` and ``targets`` differ in shape, or ``weights``,
        ``where`` or ``reduction`` are bad.
      TypeError: integer ``predictions``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> float(jloss.mean_squared_error(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0])))
      2.5

    References:
      Gauss, C. F. (1809). *Theoria motus corporum coelestium* (least squares).
    """
    predictions, targets, weights, where = checks.regression_inputs(
        predictions, targets, weights, where, reduction)
    return elementwise_loss(_squared, predictions, targets, (), weights, where, reduction)


def mean_absolute_error(predictions, targets, *, weights=None, where=None, reduction="mean"):
    r"""Mean absolute error: the absolute difference, for noisy targets or a median fit.

    .. math:: \ell = |e|, \qquad e = \text{predictions} - \text{targets}

    Minimised by the conditional median, so large errors weigh no more than
    their size: robust to heavy-tailed noise. The subgradient at ``e = 0`` is 0.
    As torch ``l1_loss`` and Keras ``MeanAbsoluteError``. ``jloss.mae`` is the
    same function.

    Args:
      predictions: ``(...)`` float array.
      targets: ``(...)`` array of the shape of ``predictions``.
      weights: non-negative weights broadcastable to the unreduced loss, or None.
      where: boolean mask broadcastable to the unreduced loss, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; for ``"none"`` the elementwise
      loss of shape ``predictions.shape`` (float64 for float64 inputs).

    Raises:
      ValueError: ``predictions`` and ``targets`` differ in shape, or ``weights``,
        ``where`` or ``reduction`` are bad.
      TypeError: integer ``predictions``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> float(jloss.mean_absolute_error(jnp.array([1.0, -3.0]), jnp.array([0.0, 0.0])))
      2.0

    References:
      Laplace, P.-S. (1774); least absolute deviations.
    """
    predictions, targets, weights, where = checks.regression_inputs(
        predictions, targets, weights, where, reduction)
    return elementwise_loss(_absolute, predictions, targets, (), weights, where, reduction)


def huber(predictions, targets, *, delta=1.0, weights=None, where=None, reduction="mean"):
    r"""Huber loss: quadratic within ``delta`` of the target, linear beyond.

    .. math::
       \ell = \begin{cases} \tfrac12 e^2 & |e| \le \delta \\
       \delta \, (|e| - \tfrac12 \delta) & \text{otherwise} \end{cases}

    Regression with outliers: as accurate as MSE for small errors, while an
    outlier's gradient is capped at ``delta``. As torch ``huber_loss``; optax
    ``huber_loss`` and Keras ``Huber`` are the same formula.

    Args:
      predictions: ``(...)`` float array.
      targets: ``(...)`` array of the shape of ``predictions``.
      delta: ``> 0``; where the loss turns from quadratic to linear.
      weights: non-negative weights broadcastable to the unreduced loss, or None.
      where: boolean mask broadcastable to the unreduced loss, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; for ``"none"`` the elementwise
      loss of shape ``predictions.shape`` (float64 for float64 inputs).

    Raises:
      ValueError: ``predictions`` and ``targets`` differ in shape, or ``weights``,
        ``where`` or ``reduction`` are bad, or ``delta <= 0``.
      TypeError: integer ``predictions``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> float(jloss.huber(jnp.array([0.0, 3.0]), jnp.zeros(2)))
      1.25
      >>> jloss.huber(jnp.array([0.5, 3.0]), jnp.zeros(2), reduction="none").tolist()
      [0.125, 2.5]

    References:
      Huber, P. J. (1964). Robust Estimation of a Location Parameter.
      *Annals of Mathematical Statistics* 35(1).
    """
    predictions, targets, weights, where = checks.regression_inputs(
        predictions, targets, weights, where, reduction)
    delta = checks.check_range("delta", delta, low=0, low_open=True, shape=jnp.shape(predictions))
    return elementwise_loss(_huber, predictions, targets, (constant(delta),), weights, where,
                        reduction)


def smooth_l1(predictions, targets, *, beta=1.0, weights=None, where=None, reduction="mean"):
    r"""Smooth L1 loss: Huber divided by ``beta``, with L1 at ``beta = 0``.

    .. math::
       \ell = \begin{cases} e^2 / (2\beta) & |e| < \beta \\
       |e| - \tfrac12 \beta & \text{otherwise} \end{cases}

    Box regression in object detection: the slope of the linear part is 1
    whatever ``beta``. Equal to ``huber(delta=beta) / beta`` for ``beta > 0``. As
    torch ``smooth_l1_loss``.

    Args:
      predictions: ``(...)`` float array.
      targets: ``(...)`` array of the shape of ``predictions``.
      beta: ``>= 0``; the width of the quadratic part.
      weights: non-negative weights broadcastable to the unreduced loss, or None.
      where: boolean mask broadcastable to the unreduced loss, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; for ``"none"`` the elementwise
      loss of shape ``predictions.shape`` (float64 for float64 inputs).

    Raises:
      ValueError: ``predictions`` and ``targets`` differ in shape, or ``weights``,
        ``where`` or ``reduction`` are bad, or ``beta < 0``.
      TypeError: integer ``predictions``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> jloss.smooth_l1(jnp.array([0.5, 3.0]), jnp.zeros(2), beta=1.0, reduction="none").tolist()
      [0.125, 2.5]

    References:
      Girshick, R. (2015). Fast R-CNN. ICCV.
    """
    predictions, targets, weights, where = checks.regression_inputs(
        predictions, targets, weights, where, reduction)
    beta = checks.check_range("beta", beta, low=0, shape=jnp.shape(predictions))
    return elementwise_loss(_smooth_l1, predictions, targets, (constant(beta),), weights, where,
                        reduction)


def log_cosh(predictions, targets, *, weights=None, where=None, reduction="mean"):
    r"""Log-cosh loss: about ``e^2 / 2`` near zero and ``|e| - log 2`` far out.

    .. math:: \ell = \log \cosh e

    A smooth robust regression loss (twice differentiable, unlike Huber).
    Computed as ``-log1p(-tanh(e)^2) / 2`` for ``|e| < 1`` (accurate down to
    ``e^2 / 2``) and ``|e| + softplus(-2|e|) - log 2`` beyond, finite for any
    ``e``; the gradient is ``tanh(e)``, read next to the value (one pass). As
    Keras ``LogCosh`` and optax ``log_cosh``.

    Args:
      predictions: ``(...)`` float array.
      targets: ``(...)`` array of the shape of ``predictions``.
      weights: non-negative weights broadcastable to the unreduced loss, or None.
      where: boolean mask broadcastable to the unreduced loss, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; for ``"none"`` the elementwise
      loss of shape ``predictions.shape`` (float64 for float64 inputs).

    Raises:
      ValueError: ``predictions`` and ``targets`` differ in shape, or ``weights``,
        ``where`` or ``reduction`` are bad.
      TypeError: integer ``predictions``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> [round(v, 4) for v in jloss.log_cosh(jnp.array([0.0, 2.0, 100.0]), jnp.zeros(3),
      ...                                      reduction="none").tolist()]
      [0.0, 1.325, 99.3069]

    References:
      Keras ``keras.losses.log_cosh``; Chen, P. et al. (2019). Log Hyperbolic
      Cosine Loss Improves Variational Auto-Encoder.
    """
    predictions, targets, weights, where = checks.regression_inputs(
        predictions, targets, weights, where, reduction)
    return elementwise_loss(_log_cosh, predictions, targets, (), weights, where, reduction)


def pinball(predictions, targets, *, quantile=0.5, weights=None, where=None, reduction="mean"):
    r"""Pinball (quantile) loss: asymmetric absolute error, for quantile regression.

    .. math:: \ell = \max\big(q\,(y - \hat y),\; (q - 1)(y - \hat y)\big)

    Minimised by the ``q``-quantile of the targets: under-prediction costs ``q``
    per unit, over-prediction ``1 - q``. ``q = 0.5`` is half the absolute error.
    As TensorFlow Addons ``PinballLoss``.

    Args:
      predictions: ``(...)`` float array, the predicted quantile.
      targets: ``(...)`` array of the shape of ``predictions``.
      quantile: ``q`` in (0, 1).
      weights: non-negative weights broadcastable to the unreduced loss, or None.
      where: boolean mask broadcastable to the unreduced loss, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; for ``"none"`` the elementwise
      loss of shape ``predictions.shape`` (float64 for float64 inputs).

    Raises:
      ValueError: ``predictions`` and ``targets`` differ in shape, or ``weights``,
        ``where`` or ``reduction`` are bad, or ``quantile`` is not in (0, 1).
      TypeError: integer ``predictions``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> [round(v, 4) for v in jloss.pinball(jnp.array([1.0, 1.0]), jnp.array([0.0, 3.0]),
      ...                                     quantile=0.9, reduction="none").tolist()]
      [0.1, 1.8]

    References:
      Koenker, R. and Bassett, G. (1978). Regression Quantiles. *Econometrica* 46(1).
    """
    predictions, targets, weights, where = checks.regression_inputs(
        predictions, targets, weights, where, reduction)
    quantile = checks.check_range("quantile", quantile, low=0, high=1, low_open=True,
                                  high_open=True, shape=jnp.shape(predictions))
    return elementwise_loss(_pinball, predictions, targets, (quantile,), weights, where, reduction)


mse = mean_squared_error
mae = mean_absolute_error


# ------------------------------------------- relative and logarithmic errors


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
    predictions, targets, weights, where = checks.regression_inputs(
        predictions, targets, weights, where, reduction)
    checks.check_range("eps", eps, low=0, low_open=True)
    return elementwise_loss(_percentage, predictions, targets, (eps,), weights, where, reduction,
                        of_error=False, fill=1)


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
    predictions, targets, weights, where = checks.regression_inputs(
        predictions, targets, weights, where, reduction)
    checks.check_range("eps", eps, low=0, low_open=True)
    return elementwise_loss(_squared_log, predictions, targets, (eps,), weights, where, reduction,
                        of_error=False)


mape = mean_absolute_percentage_error
msle = mean_squared_logarithmic_error

"""Segmentation losses: Dice / Tversky overlap and the generalized Dice.

Overlap losses score each class by how well the predicted region overlaps
the target region, so a small object counts as much as the background
(cross-entropy averages pixels and lets the background dominate). Inputs
are ``(B, ..., C)``: a batch axis first, any spatial axes, a class axis
(``axis``, default last). Per example, for each class ``c``, over the
spatial positions::

    I = sum p t,   FP = sum p (1 - t) = sum p - I,   FN = sum (1 - p) t = sum t - I

and the loss is the mean over classes of ``1 - (I + smooth) / (I + alpha FP + beta FN + smooth)``.
"""

import functools
import math

import jax
import jax.numpy as jnp

from jloss._core import checks
from jloss._core.dtypes import compute_dtype
from jloss._core.layout import check_class_vector
from jloss._core.reduce import fill_masked, loss_mask, reduce_loss
from jloss.kernels.overlap import overlap_sums

ACTIVATIONS = ("softmax", "sigmoid")
_FREQUENCY_EPS = 1e-7  # generalized Dice: weights 1 / (frequency^2 + eps), as optax


def _segmentation_checks(logits, targets, axis, weights, where, reduction):
    """Static checks; returns (axis, loss_shape) with ``loss_shape == (B,)``."""
    checks.check_float(logits=logits)
    checks.check_same_shape(logits=logits, targets=targets)
    checks.check_float(targets=targets)
    ndim = jnp.ndim(logits)
    if ndim < 2:
        raise ValueError(f"logits must have a batch axis and a class axis, got shape "
                         f"{jnp.shape(logits)}")
    axis = checks.check_axis(axis, ndim)
    if axis == 0:
        raise ValueError("axis=0 is the batch axis; the class axis must be another one")
    loss_shape = jnp.shape(logits)[:1]
    checks.check_convention(reduction, weights, where, loss_shape)
    return axis, loss_shape


def _as_rows(x, axis):
    """``(B, ..., C, ...) -> (B, S, C)``: class axis last, spatial axes flattened."""
    x = jnp.moveaxis(x, axis, -1)
    return x.reshape(x.shape[0], math.prod(x.shape[1:-1]), x.shape[-1])


def _check_targets(targets, axis, mask):
    checks.check_nonnegative("targets", _as_rows(jnp.asarray(targets), axis), mask)


def dice(logits, targets, *, from_logits=True, activation="softmax", smooth=1.0, alpha=0.5,
         beta=0.5, class_weights=None, ignore_background=False, axis=-1, weights=None, where=None,
         reduction="mean"):
    r"""Dice loss (Tversky loss for ``alpha != beta``): one minus the soft overlap per class.

    .. math:: \ell = \frac{1}{C} \sum_c w_c \Big(1 - \frac{I_c + s}{I_c + \alpha FP_c + \beta FN_c + s}\Big)

    Segmentation, especially with small foreground objects or class
    imbalance: every class counts equally, whatever its area. ``alpha = beta =
    0.5`` is the Dice loss (``1 - 2I / (sum p + sum t)`` up to ``smooth``);
    ``beta > alpha`` penalises missed foreground more (Tversky). Probabilities
    are the softmax over classes, or one sigmoid per class
    (``activation="sigmoid"``, multi-label masks), or the input itself with
    ``from_logits=False``. ``I, FP, FN`` sum over every axis but the batch
    (first) and class axes. ``ignore_background`` drops class 0 before the
    mean. ``reduction="none"`` is optax ``dice_loss`` with its
    ``reduction="mean"`` (the mean over classes, per example).

    Args:
      logits: ``(B, ..., C, ...)`` float array; ``axis`` is the class axis (not 0).
      targets: same shape, finite and non-negative (one-hot masks or soft masks).
      from_logits: False if ``logits`` already holds probabilities.
      activation: ``"softmax"`` or ``"sigmoid"``.
      smooth: ``>= 0``; keeps a class absent from both prediction and target at loss 0.
      alpha, beta: ``>= 0``, the weights of false positives and false negatives.
      class_weights: ``(C,)`` non-negative ``w_c``, or None for 1.
      ignore_background: drop class 0 (when C > 1).
      weights, where, reduction: see the conventions page; per example ``(B,)``.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-example loss ``(B,)`` (``"none"``).

    Raises:
      ValueError: shapes differ, fewer than 2 axes, ``axis`` 0 or out of range, unknown
        ``activation`` or ``reduction``, negative ``smooth`` / ``alpha`` / ``beta`` /
        ``class_weights``.
      TypeError: integer ``logits`` or ``targets``.
      LossInputError: negative or non-finite counted targets, or ``from_logits=False``
        probabilities outside [0, 1] (softmax: not summing to 1 over classes).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> probs = jnp.array([[[0.8, 0.2], [0.4, 0.6]]])       # (B=1, pixels=2, C=2)
      >>> masks = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])
      >>> round(float(jloss.dice(probs, masks, from_logits=False, smooth=0.0)), 4)
      0.303

    References:
      Milletari, Navab & Ahmadi (2016), V-Net, 3DV; Salehi, Erdogmus & Gholipour
      (2017), Tversky loss function for image segmentation, MLMI; optax ``dice_loss``.
    """
    logits, targets, class_weights, weights, where = checks.array_likes(
        logits, targets, class_weights, weights, where)
    axis, loss_shape = _segmentation_checks(logits, targets, axis, weights, where, reduction)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    for name, value in (("smooth", smooth), ("alpha", alpha), ("beta", beta)):
        checks.check_range(name, value, low=0)
    num_classes = jnp.shape(logits)[axis]
    check_class_vector("class_weights", class_weights, num_classes)
    checks.check_range("class_weights", class_weights, low=0)
    mask = loss_mask(where, loss_shape)
    _check_targets(targets, axis, mask)
    if not from_logits:
        probs = _as_rows(jnp.asarray(logits), axis)
        hint = "; with from_logits=False pass probabilities"
        if activation == "softmax":
            checks.check_distribution("logits", probs, -1, None if mask is None else mask[:, None],
                                      hint)
        else:
            checks.check_unit_interval("logits", probs, mask, hint)
    return _dice(logits, targets, smooth, alpha, beta, class_weights, weights, where, axis=axis,
                 from_logits=from_logits, activation=activation,
                 ignore_background=bool(ignore_background), generalized=False,
                 reduction=reduction)


def generalized_dice(logits, targets, *, smooth=1.0, ignore_background=False, axis=-1,
                     weights=None, where=None, reduction="mean"):
    r"""Generalized Dice loss: Dice with class weights from the inverse squared class frequency.

    .. math:: w_c \propto \frac{1}{f_c^2 + 10^{-7}}, \quad f_c = \sum_{b, \text{positions}} t_{b,c},
       \quad \sum_c w_c = C

    Segmentation with strongly imbalanced classes: rare classes weigh more.
    The frequencies are summed over the counted examples of the batch (so the
    loss of one example depends on the others; ``where`` removes an example
    from them too), then each example gets :func:`dice` with these weights
    (softmax over classes; one class: sigmoid). ``"mean"`` equals optax
    ``multiclass_generalized_dice_loss``. The weights are differentiable in
    ``targets``, as in optax.

    Args:
      logits: ``(B, ..., C, ...)`` float array; ``axis`` is the class axis (not 0).
      targets: same shape, finite and non-negative.
      smooth: ``>= 0``.
      ignore_background: drop class 0 (when C > 1) after weighting.
      weights, where, reduction: see the conventions page; per example ``(B,)``.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-example loss ``(B,)`` (``"none"``).

    Raises:
      ValueError: shapes differ, fewer than 2 axes, ``axis`` 0 or out of range, ``smooth < 0``,
        unknown ``reduction``.
      TypeError: integer ``logits`` or ``targets``.
      LossInputError: negative or non-finite counted targets.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> logits = jnp.array([[[2.0, -2.0], [2.0, -2.0], [-2.0, 2.0]]])
      >>> masks = jnp.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
      >>> round(float(jloss.generalized_dice(logits, masks)), 4)
      0.0125

    References:
      Sudre et al. (2017), Generalised Dice overlap as a deep learning loss function
      for highly unbalanced segmentations, DLMIA; optax ``multiclass_generalized_dice_loss``.
    """
    logits, targets, weights, where = checks.array_likes(logits, targets, weights, where)
    axis, loss_shape = _segmentation_checks(logits, targets, axis, weights, where, reduction)
    checks.check_range("smooth", smooth, low=0)
    _check_targets(targets, axis, loss_mask(where, loss_shape))
    activation = "sigmoid" if jnp.shape(logits)[axis] == 1 else "softmax"
    return _dice(logits, targets, smooth, 0.5, 0.5, None, weights, where, axis=axis,
                 from_logits=True, activation=activation,
                 ignore_background=bool(ignore_background), generalized=True, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("axis", "from_logits", "activation",
                                             "ignore_background", "generalized", "reduction"))
def _dice(logits, targets, smooth, alpha, beta, class_weights, weights, where, *, axis,
          from_logits, activation, ignore_background, generalized, reduction):
    mask = loss_mask(where, logits.shape[:1])
    dtype = compute_dtype(logits, targets)
    num_classes = logits.shape[axis]
    fill = 0 if from_logits else 1 / num_classes if activation == "softmax" else 0.5
    x = fill_masked(_as_rows(logits, axis), mask, fill)
    # masked examples: targets 1, so their overlap is positive and nothing divides by 0
    t = fill_masked(_as_rows(targets, axis), mask, 1)
    overlap, predicted, target = overlap_sums(activation if from_logits else None, x, t)
    score = (overlap + smooth) / (overlap + alpha * (predicted - overlap)
                                  + beta * (target - overlap) + smooth)
    per_class = 1 - score  # (B, C)
    if generalized:
        frequency = jnp.sum(target if mask is None else jnp.where(mask[:, None], target, 0), axis=0)
        inverse = 1 / (frequency**2 + _FREQUENCY_EPS)
        per_class = per_class * (inverse / jnp.sum(inverse) * num_classes)
    elif class_weights is not None:
        per_class = per_class * jax.lax.stop_gradient(class_weights).astype(dtype)
    if ignore_background and num_classes > 1:
        per_class = per_class[:, 1:]
    return reduce_loss(jnp.mean(per_class, axis=-1), mask, weights, reduction)

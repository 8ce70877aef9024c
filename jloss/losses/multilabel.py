"""Multi-label margin losses: several target classes per example.

``multilabel_margin`` (each listed target's score must beat every other
class's by 1, as torch ``multilabel_margin_loss``) and
``multilabel_soft_margin`` (the mean over classes of a binary
cross-entropy, as torch ``multilabel_soft_margin_loss``).
"""

import functools

import jax
import jax.numpy as jnp

from jloss._core import checks
from jloss._core.dtypes import compute_dtype
from jloss._core.layout import check_class_vector, class_axis, row_masks, to_rows
from jloss._core.reduce import fill_masked, loss_mask, reduce_loss
from jloss.kernels.multilabel_hinge import multilabel_hinge
from jloss.kernels.sigmoid import sigmoid_bce


def multilabel_margin(scores, labels, *, axis=-1, weights=None, where=None, reduction="mean"):
    r"""Multi-label hinge: every target class must beat every other class by 1.

    .. math:: \ell = \frac{1}{C} \sum_{j} \sum_{i \notin Y} \max(0, 1 - (s_{y_j} - s_i))

    Multi-label classification with a ranking margin: the set ``Y`` of target
    classes of an example is read from ``labels``, class indices ``y_j`` padded
    with -1 (the indices up to the first -1 count, the rest is ignored). As torch
    ``multilabel_margin_loss``, whose sum runs over the listed indices: a
    class listed twice counts twice. Computed as torch does, one pass over the
    classes per listed target (O(C x targets) per example, as many passes as
    the longest list in the batch), not by comparing every pair.

    Args:
      scores: ``(..., C, ...)`` float array; ``axis`` is the class axis.
      labels: integer array of the shape of ``scores``: class indices in
        ``[0, C)`` along ``axis``, then -1 padding.
      weights, where, reduction: see the conventions page.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-example loss (``"none"``).

    Raises:
      ValueError: shapes differ, bad ``axis`` or ``reduction``.
      TypeError: integer ``scores`` or float ``labels``.
      LossInputError: a counted index before the first -1 outside ``[0, C)`` (eager, or
        under ``jloss.checked``; under a plain ``jax.jit`` that example's loss is NaN).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> s = jnp.array([[0.1, 0.2, 0.4, 0.8]])
      >>> round(float(jloss.multilabel_margin(s, jnp.array([[3, 0, -1, 1]]))), 4)
      0.85

    References:
      PyTorch ``torch.nn.functional.multilabel_margin_loss``.
    """
    scores, labels, weights, where = checks.array_likes(scores, labels, weights, where)
    axis, loss_shape, num_classes = class_axis(scores, axis, reduction, weights, where, "scores")
    checks.check_same_shape(scores=scores, labels=labels)
    checks.check_integer(labels=labels)
    mask = loss_mask(where, loss_shape)

    def bad(labels, xp):  # per example
        return ~_listed_targets(xp.moveaxis(labels, axis, -1), xp)[1]

    checks.check_values(labels, bad, f"labels must be class indices in [0, {num_classes}) padded with -1",
                        mask)
    return _multilabel_margin(scores, labels, weights, where, axis=axis, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("axis", "reduction"))
def _multilabel_margin(scores, labels, weights, where, *, axis, reduction):
    loss_shape, mask, row_mask = row_masks(scores.shape, axis, where)
    x = fill_masked(to_rows(scores, axis), row_mask, 0)
    y = fill_masked(to_rows(labels, axis), row_mask, -1)
    num_classes = x.shape[-1]
    count, valid = _listed_targets(y, jnp)
    loss = multilabel_hinge(x.astype(compute_dtype(x)), y, jnp.where(valid, count, 0)) / num_classes
    loss = jnp.where(valid, loss, jnp.nan).reshape(loss_shape)
    return reduce_loss(loss, mask, weights, reduction)


def _listed_targets(rows, xp):
    """Per row of labels (classes last): how many entries come before the first -1, and
    whether all of them are class indices (``xp``: NumPy for the eager check, or jnp)."""
    num_classes = rows.shape[-1]
    padded = xp.concatenate([rows, xp.full((*rows.shape[:-1], 1), -1, rows.dtype)], axis=-1)
    count = xp.argmax(padded == -1, axis=-1)  # an argmax, not a cumulative product: 3x faster
    listed = xp.arange(num_classes) < count[..., None]
    return count, ~xp.any(listed & ((rows < 0) | (rows >= num_classes)), axis=-1)


def multilabel_soft_margin(logits, labels, *, class_weights=None, axis=-1, weights=None,
                           where=None, reduction="mean"):
    r"""Multi-label soft margin: per example, the mean over classes of the binary cross-entropy.

    .. math:: \ell = -\frac{1}{C} \sum_c w_c \big(y_c \log \sigma(x_c) + (1 - y_c) \log \sigma(-x_c)\big)

    Multi-label classification (one sigmoid per class) with one loss per
    example rather than per class: ``binary_cross_entropy`` averaged over the
    class axis, with optional class weights. As torch
    ``multilabel_soft_margin_loss``. Built on the custom-VJP sigmoid kernel: no
    forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``) applied directly.

    Args:
      logits: ``(..., C, ...)`` float array; ``axis`` is the class axis.
      labels: same shape, in ``[0, 1]`` (0/1 or soft).
      class_weights: ``(C,)`` non-negative, or None for 1.
      weights, where, reduction: see the conventions page.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-example loss (``"none"``).

    Raises:
      ValueError: shapes differ, bad ``class_weights`` shape or values, ``axis`` or ``reduction``.
      TypeError: integer ``logits``.
      LossInputError: a counted label outside [0, 1] (eager, or under ``jloss.checked``).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> x = jnp.array([[0.0, 2.0]])
      >>> round(float(jloss.multilabel_soft_margin(x, jnp.array([[1.0, 0.0]]))), 4)
      1.41

    References:
      PyTorch ``torch.nn.functional.multilabel_soft_margin_loss``.
    """
    logits, labels, class_weights, weights, where = checks.array_likes(
        logits, labels, class_weights, weights, where)
    axis, loss_shape, num_classes = class_axis(logits, axis, reduction, weights, where)
    checks.check_same_shape(logits=logits, labels=labels)
    check_class_vector("class_weights", class_weights, num_classes)
    checks.check_range("class_weights", class_weights, low=0)
    checks.check_unit_interval("labels", jnp.moveaxis(jnp.asarray(labels), axis, -1),
                               loss_mask(where, loss_shape))
    return _multilabel_soft_margin(logits, labels, class_weights, weights, where, axis=axis,
                                   reduction=reduction)


@functools.partial(jax.jit, static_argnames=("axis", "reduction"))
def _multilabel_soft_margin(logits, labels, class_weights, weights, where, *, axis, reduction):
    loss_shape, mask, row_mask = row_masks(logits.shape, axis, where)
    x = fill_masked(to_rows(logits, axis), row_mask, 0)
    y = fill_masked(to_rows(jnp.asarray(labels), axis), row_mask, 0)
    dtype = compute_dtype(x)
    per_class = sigmoid_bce(x, y, jnp.ones((), dtype), jnp.zeros((), dtype))
    if class_weights is not None:
        per_class = per_class * jax.lax.stop_gradient(class_weights).astype(dtype)
    loss = jnp.mean(per_class, axis=-1).reshape(loss_shape)
    return reduce_loss(loss, mask, weights, reduction)

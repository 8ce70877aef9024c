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
from jloss.kernels.common import keep_inputs, times
from jloss.kernels.sigmoid import sigmoid_bce


def multilabel_margin(scores, labels, *, axis=-1, weights=None, where=None, reduction="mean"):
    r"""Multi-label hinge: every target class must beat every other class by 1.

    .. math:: \ell = \frac{1}{C} \sum_{j \in Y} \sum_{i \notin Y} \max(0, 1 - (s_j - s_i))

    Multi-label classification with a ranking margin: the set ``Y`` of target
    classes of an example is read from ``labels``, class indices padded with
    -1 (the indices up to the first -1 count, the rest is ignored). As torch
    ``multilabel_margin_loss``. Computed from sorted scores in O(C log C) per
    example (counts of margin violations), not by comparing every pair.

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

    def bad(labels, xp):  # per example: an index before the first -1 that is not a class
        rows = xp.moveaxis(labels, axis, -1)
        listed = xp.cumprod(rows != -1, axis=-1).astype(bool)
        return xp.any(listed & ((rows < 0) | (rows >= num_classes)), axis=-1)

    checks.check_values(labels, bad, f"labels must be class indices in [0, {num_classes}) padded with -1",
                        mask)
    return _multilabel_margin(scores, labels, weights, where, axis=axis, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("axis", "reduction"))
def _multilabel_margin(scores, labels, weights, where, *, axis, reduction):
    loss_shape, mask, row_mask = row_masks(scores.shape, axis, where)
    x = fill_masked(to_rows(scores, axis), row_mask, 0)
    y = fill_masked(to_rows(labels, axis), row_mask, -1)
    num_classes = x.shape[-1]
    listed = jnp.cumprod(y != -1, axis=-1).astype(bool)
    valid = ~jnp.any(listed & ((y < 0) | (y >= num_classes)), axis=-1)
    rows = jnp.arange(x.shape[0])[:, None]
    column = jnp.where(listed & valid[:, None], y, num_classes)  # unlisted: a spare column
    is_target = jnp.zeros((x.shape[0], num_classes + 1), bool).at[rows, column].set(True)[:, :num_classes]
    loss = _ranked_hinge(x, is_target) / num_classes
    loss = jnp.where(valid, loss, jnp.nan).reshape(loss_shape)
    return reduce_loss(loss, mask, weights, reduction)


def _ranked_hinge(x, is_target):
    """Per row ``sum_{j target} sum_{i other} max(0, 1 - x_j + x_i)`` in O(C log C), not O(C^2).

    With ``k_j`` the number of other classes that violate target ``j``'s
    margin (``x_i > x_j - 1``) and ``c_i`` the number of targets whose margin
    class ``i`` violates, the sum is ``sum_j k_j (1 - x_j) + sum_i c_i x_i``:
    two sorts and binary searches count the violations. The counts are
    constant almost everywhere, so the gradient is ``c_i - k_j``, as the
    pairwise sum's. Scores are taken relative to the row mean (the loss
    does not change): ``k_j x_j`` and ``c_i x_i`` then stay as small as the
    score differences, as the pairwise terms are.
    """
    dtype = compute_dtype(x)
    z = jax.lax.stop_gradient(x).astype(dtype)
    finite = jnp.isfinite(z)
    center = jnp.sum(jnp.where(finite, z, 0), axis=-1) / jnp.maximum(jnp.sum(finite, axis=-1), 1)
    z = z - center[:, None]
    key = _sort_key(z)
    last = jnp.iinfo(key.dtype).max  # after every score's key
    others = jnp.sort(jnp.where(is_target, last, key), axis=-1)
    targets = jnp.sort(jnp.where(is_target, key, last), axis=-1)
    count_below = jax.vmap(functools.partial(jnp.searchsorted, side="right"))
    count_under = jax.vmap(functools.partial(jnp.searchsorted, side="left"))
    num_others = jnp.sum(~is_target, axis=-1, keepdims=True)
    k = jnp.where(is_target, num_others - count_below(others, _sort_key(z - 1)), 0)
    c = jnp.where(is_target, 0, count_under(targets, _sort_key(z + 1)))

    def linear(x, coefficient):  # sum_j k_j (1 - x_j) + sum_i c_i x_i = sum k + sum (c - k) x
        x = x.astype(dtype) - center[:, None]
        return jnp.sum(times(coefficient.astype(dtype), x), axis=-1)

    # the integer counts and the inputs are what the backward keeps (no float32 copy of bf16 x)
    total = jnp.sum(k, axis=-1).astype(dtype) + keep_inputs(linear, x, c - k)
    return jnp.where(jnp.any(jnp.isnan(z), axis=-1), jnp.nan, total)


def _sort_key(v):
    """Integer keys that order as the floats ``v`` (sorting them is several times faster on CPU)."""
    bits = jax.lax.bitcast_convert_type(v, jnp.dtype(f"int{8 * v.dtype.itemsize}"))
    return jnp.where(bits < 0, bits ^ jnp.iinfo(bits.dtype).max, bits)


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

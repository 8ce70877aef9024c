"""Ranking losses: learning to order the items of a list by relevance."""

import functools

import jax
import jax.numpy as jnp

from jloss._core import checks
from jloss._core.dtypes import compute_dtype
from jloss._core.reduce import combine_masks, fill_masked, loss_mask, reduce_loss
from jloss.kernels.common import keep_inputs


def ranking_softmax(scores, relevance, *, valid=None, weights=None, where=None, reduction="mean"):
    r"""Softmax ranking loss (ListNet): cross-entropy of the relevance against softmax(scores).

    .. math:: \ell = -\sum_{i \in \text{list}} r_i \log \frac{e^{s_i}}{\sum_{j\,\text{valid}} e^{s_j}}

    Learning to rank (search, recommendation): one loss per list of items,
    which pushes the score mass toward the relevant items. ``valid`` marks
    the real items of padded lists; padding takes no part in the softmax and
    may hold any value (NaN, -inf). Lists without a valid item are not
    counted in ``"mean"``. As optax ``ranking_softmax_loss`` (its ``where``
    is ``valid`` here; its ``weights`` scale the relevance, here ``weights``
    are per list, as in every jloss loss).

    Args:
      scores: ``(..., L)`` float array, one row per list.
      relevance: same shape, finite and non-negative (graded or 0/1).
      valid: bool array broadcastable to ``scores.shape``, or None (all items valid).
      weights, where, reduction: see the conventions page; per list ``(...)``.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-list loss (``"none"``).

    Raises:
      ValueError: shapes differ, ``scores`` is a scalar, ``valid`` does not broadcast,
        unknown ``reduction``.
      TypeError: integer ``scores`` or non-boolean ``valid``.
      LossInputError: negative or non-finite relevance of a counted valid item.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> s = jnp.array([[2.0, 1.0, 0.0, jnp.nan]])
      >>> r = jnp.array([[1.0, 0.0, 0.0, 0.0]])
      >>> valid = jnp.array([[True, True, True, False]])
      >>> round(float(jloss.ranking_softmax(s, r, valid=valid)), 4)
      0.4076

    References:
      Cao et al. (2007), Learning to rank: from pairwise approach to listwise
      approach (ListNet), ICML; optax ``ranking_softmax_loss``.
    """
    scores, relevance, valid, weights, where = checks.array_likes(scores, relevance, valid, weights, where)
    checks.check_float(scores=scores)
    shape = jnp.shape(scores)
    if len(shape) < 1:
        raise ValueError("scores must have a list axis (the last), got a scalar")
    checks.check_same_shape(scores=scores, relevance=relevance)
    checks.check_broadcastable("valid", valid, shape)
    if valid is not None and jnp.asarray(valid).dtype != jnp.bool_:
        raise TypeError(f"valid must be a boolean mask, got dtype {jnp.asarray(valid).dtype}")
    loss_shape = shape[:-1]
    checks.check_convention(reduction, weights, where, loss_shape)
    items = combine_masks(None if where is None else loss_mask(where, loss_shape)[..., None],
                          None if valid is None else jnp.asarray(valid))
    items = None if items is None else jnp.broadcast_to(items, shape)
    checks.check_nonnegative("relevance", relevance, items)
    return _ranking_softmax(scores, relevance, valid, weights, where, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("reduction",))
def _ranking_softmax(scores, relevance, valid, weights, where, *, reduction):
    loss_shape = scores.shape[:-1]
    dtype = compute_dtype(scores, relevance)
    mask = combine_masks(loss_mask(where, loss_shape),
                         None if valid is None else jnp.any(jnp.broadcast_to(valid, scores.shape), axis=-1))

    def loss(x, r, valid):
        # ``valid`` enters as given, broadcast here: the backward keeps no (N, L) copy of it
        if valid is not None:
            v = jnp.broadcast_to(valid, x.shape)
            x, r = jnp.where(v, x, 0), jnp.where(v, r, 0)
        x, r = x.astype(dtype), r.astype(dtype)
        if valid is None:
            log_p = jax.nn.log_softmax(x, axis=-1)
        else:
            top = jnp.max(jnp.where(v, x, -jnp.inf), axis=-1, initial=-jnp.inf, keepdims=True)
            top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0))
            total = jnp.sum(jnp.where(v, jnp.exp(x - top), 0), axis=-1, keepdims=True)
            log_p = x - top - jnp.log(jnp.where(total > 0, total, 1))
        return -jnp.sum(r * log_p, axis=-1)

    loss = keep_inputs(loss, fill_masked(scores, mask, 0), fill_masked(jnp.asarray(relevance), mask, 0),
                       valid)
    return reduce_loss(loss, mask, weights, reduction)

"""Masks, weights and reductions: the one place they live.

Every loss produces an unreduced loss ``l`` and hands it here with its mask
``m`` (``where`` and, where it applies, ``labels != ignore_index``), the user's
``weights`` ``w`` and, for class-weighted sparse cross-entropy, the weight
``c`` of each example's label:

* ``"none"``: ``m * w * l`` (masked positions exactly 0),
* ``"sum"``:  ``sum(m * w * l)``,
* ``"mean"``: ``sum(m * w * l) / sum(m * w * c)`` (PyTorch's weighted mean),
  and exactly 0.0 with an exactly zero gradient when nothing is counted.

Masked positions must never leak NaN, so a loss first replaces its inputs
there with harmless values (:func:`fill_masked`), then the result is selected
again here: the "double where" pattern.

Under ``jax.pmap`` each device sees a shard of the batch, and the mean of
per-device means is not the batch mean when devices count different numbers
of examples (masks, weights). A train step that traces ``loss_fn`` inside
:func:`global_mean_over` makes every ``"mean"`` divide its local weighted sum
by the mean over devices of the local denominators; averaging the result
across devices (the step's ``pmean`` of loss and gradients) then gives
exactly ``sum over all devices / count over all devices`` and its gradient.
"""

import contextlib

import jax
import jax.numpy as jnp

REDUCTIONS = ("mean", "sum", "none")

# The pmap axis whose devices share one "mean" while a train step traces loss_fn.
# A jax.jit cache-sensitive context: a jitted loss traced inside and outside it is
# traced separately, so no cached trace carries the wrong denominator.
_MEAN_AXIS = jax.make_user_context(default_value=None)


@contextlib.contextmanager
def global_mean_over(axis_name):
    """Within this context (at trace time, inside ``pmap`` over ``axis_name``), ``"mean"`` is global.

    Every ``reduce_loss(..., "mean")`` traced here divides the device's
    weighted sum by ``pmean(local denominator, axis_name)``, so that the
    ``pmean`` of the loss over devices is the weighted mean over all devices'
    examples (exactly 0 with a zero gradient when no device counts any).
    """
    with _MEAN_AXIS(axis_name):
        yield


def combine_masks(*masks):
    """Logical AND of the masks that are not None (None if all are None)."""
    out = None
    for m in masks:
        if m is None:
            continue
        out = m if out is None else jnp.logical_and(out, m)
    return out


def loss_mask(where, shape):
    """``where`` broadcast to the unreduced loss shape, or None."""
    if where is None:
        return None
    return jnp.broadcast_to(jnp.asarray(where, dtype=bool), shape)


def fill_masked(x, mask, fill=0):
    """Replace masked-out entries of ``x`` by ``fill`` (first half of double-where).

    ``mask`` has the unreduced loss shape; if ``x`` has extra trailing axes
    (a class axis), the mask is broadcast over them.

    The select runs under ``jax.checkpoint``: differentiated, a plain
    ``jnp.where`` keeps the mask broadcast to ``x.shape`` and a zero tensor of
    ``x``'s size for the backward pass (two extra (N, V) tensors next to the
    logits); rematerialised, the backward keeps only ``mask``.
    """
    if mask is None:
        return x
    return _select(x, mask, jnp.asarray(fill, x.dtype))


@jax.checkpoint
def _select(x, mask, fill):
    m = mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
    return jnp.where(m, x, fill)


def reduce_loss(loss, mask=None, weights=None, reduction="mean", normalizer=None, axis_name=None):
    """Apply mask and weights to the unreduced ``loss`` and reduce it.

    Args:
      loss: unreduced loss, float.
      mask: bool array of ``loss.shape`` or None.
      weights: non-negative weights broadcastable to ``loss.shape`` or None.
      reduction: "mean", "sum" or "none".
      normalizer: per-position weight ``c`` counted in the denominator of
        "mean" (the class weight of the label), or None for 1.
      axis_name: inside ``shard_map`` / ``pmap``, a mesh axis the batch is
        sharded over: "sum" and "mean" reduce over every device on it (the
        sums are ``psum``-ed); "none" stays local.
    """
    w = None if weights is None else jnp.broadcast_to(jnp.asarray(weights, loss.dtype), loss.shape)
    if w is not None and mask is not None:
        w = jnp.where(mask, w, 0)  # NaN weights in masked slots must not leak either
    weighted = loss if w is None else w * loss
    if mask is not None:
        weighted = jnp.where(mask, weighted, 0)
    if reduction == "none":
        return weighted
    total = _psum(jnp.sum(weighted), axis_name)
    if reduction == "sum":
        return total
    count = jnp.ones(loss.shape, loss.dtype) if w is None else w
    if normalizer is not None:
        count = count * normalizer
    if mask is not None and (w is None or normalizer is not None):
        # a masked w is already 0 there: selecting it again costs a second (N,) buffer
        count = jnp.where(mask, count, 0)
    count = _psum(jnp.sum(count), axis_name)
    axis = _MEAN_AXIS.value
    if axis is not None:
        count = jax.lax.pmean(count, axis)
    empty = count == 0
    return jnp.where(empty, jnp.zeros((), loss.dtype), total / jnp.where(empty, 1, count))


def _psum(x, axis_name):
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def constant(*hyperparameters):
    """Hyperparameters (smoothing, z-loss, class weights, gamma, alpha) get zero
    cotangents on every path, kernel or not, the mean's denominator included:
    they may be traced (schedules) but are not learned."""
    out = tuple(None if h is None else jax.lax.stop_gradient(h) for h in hyperparameters)
    return out if len(out) > 1 else out[0]

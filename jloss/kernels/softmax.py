"""Softmax cross-entropy kernels (sparse and dense targets) and the softmax focal kernel.

Each kernel works on 2-D ``(N, C)`` logits (classes last) or elementwise
binary logits, computes in float32 (float64 for x64 inputs), returns the
unreduced loss, and has a closed-form backward:

* softmax family: the forward keeps the logits (input dtype) and the
  per-example row max ``m`` and ``log sum exp(x - m)``; the backward recomputes
  ``p = exp((x - m) - log sum exp(x - m))`` (never ``exp(x - lse)``: at large
  logits ``lse = m + ...`` rounds away its small part) and forms
  ``(total target mass + 2 z lse) * p - target`` in one pass, cast to the
  logits' dtype. No float32 copy of half-precision logits is kept.
* losses are computed relative to the row max, ``log sum exp(x - m) - (x_y - m)``,
  so logits far from zero keep full precision.
* a class whose logit is -inf is a masked class: it gets probability 0 and
  no label-smoothing mass; the loss stays finite while the target class has a
  finite logit.

Hyperparameters (smoothing, z-loss, class weights, gamma) are inputs, not
constants, so they may be traced, but their cotangents are zero: they are not
meant to be learned. Forward-mode autodiff applied directly (``jax.jvp``,
``jax.jacfwd``) is not available on custom-VJP functions; second derivatives
work with ``jax.hessian`` (forward over reverse) and
``jax.jacrev(jax.jacrev(f))`` because every backward is itself differentiable.

"""

import functools

import jax
import jax.numpy as jnp

from jloss._core.dtypes import compute_dtype
from jloss.kernels.common import (
    focal_modulator,
    int_cotangent,
    is_label,
    picked,
    probs,
    row_max,
    row_stats,
    softmax_rel,
    upcast,
    vary_together,
    zero_cotangent,
)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def sparse_softmax_ce(smoothing_on, logits, labels, smoothing, class_weights, z_loss):
    """Per-example ``(1-s) w_y (-log p_y) + (s/C) sum_c w_c (-log p_c) + z lse^2``.

    ``logits`` (N, C) in any float dtype, ``labels`` (N,) int in [0, C),
    ``class_weights`` (C,) or None. ``smoothing_on`` (static) skips the
    smoothing reduction when the caller knows ``smoothing == 0``.
    """
    return _sparse_fwd(smoothing_on, logits, labels, smoothing, class_weights, z_loss)[0]


def sparse_ce_from_stats(lse_rel, picked_rel, lse, w_y, smooth_mass, smooth_sum_rel,
                         smoothing, z_loss, num_classes):
    """The sparse softmax CE of one example from its statistics.

    ``lse_rel = log sum_c exp(x_c - m)``, ``picked_rel = x_y - m``, ``lse = m +
    lse_rel``; with smoothing (else ``smooth_mass`` is None)
    ``smooth_mass = sum_{c finite} w_c`` and ``smooth_sum_rel = sum_{c finite}
    w_c (x_c - m)``. Shared by the dense-logits kernel below and the
    vocabulary-blocked kernel of :mod:`jloss.heads.linear_cross_entropy`, which builds the same
    statistics block by block.
    """
    loss = (1 - smoothing) * w_y * (lse_rel - picked_rel)
    if smooth_mass is not None:
        loss = loss + smoothing / num_classes * (smooth_mass * lse_rel - smooth_sum_rel)
    return loss + z_loss * lse**2


def sparse_ce_grad(p, finite, is_label, g, w_y, w_c, lse, smooth_mass, smoothing, z_loss,
                   num_classes):
    """Cotangent of the logits of any block of classes, in the compute dtype.

    ``g ((1-s) w_y + 2 z lse + s/C smooth_mass) p - g target`` with ``target =
    (1-s) w_y [c = y] + s/C w_c [x_c finite]``, in one elementwise pass (the
    label column is selected by the ``is_label`` mask, not scattered). ``p``
    (N, B) is the softmax of the block, ``finite`` marks its finite logits
    (None without smoothing, as is ``smooth_mass``), ``w_y`` (N,) or 1.0,
    ``w_c`` (1, B) or 1.0. Shared by the dense kernel below and
    :mod:`jloss.heads.linear_cross_entropy`.
    """
    hit = (1 - smoothing) * w_y
    total = hit + 2 * z_loss * lse
    target = jnp.where(is_label, hit[..., None] if jnp.ndim(hit) else hit, 0)
    if smooth_mass is not None:
        total = total + smoothing / num_classes * smooth_mass
        target = target + jnp.where(finite, smoothing / num_classes * w_c, 0)
    return g[:, None] * (jnp.broadcast_to(total, g.shape)[:, None] * p - target)



def _keeps_exp(smoothing_on, logits):
    """Which (N, C) tensor the backward keeps.

    float32 / float64 logits without smoothing: ``e = exp(x - m)``, which the
    forward writes anyway to sum it; the backward scales it into the
    cotangent in place and computes no second exp. Half-precision logits, or
    label smoothing (which needs to know which logits are -inf): the logits
    themselves, and the backward recomputes the exp; never a float32 copy of
    half-precision logits.
    """
    return not smoothing_on and logits.dtype in (jnp.float32, jnp.float64)


def _class_weights(class_weights, labels, dtype):
    """``(w_y (N,), w_c (1, C))``, or ``(1.0, 1.0)`` without class weights."""
    if class_weights is None:
        return 1.0, 1.0
    w = class_weights.astype(dtype)
    return w[labels], w[None, :]


def _sparse_fwd(smoothing_on, logits, labels, smoothing, class_weights, z_loss):
    m = row_max(logits)
    if _keeps_exp(smoothing_on, logits):
        kept = jnp.exp(logits - m[:, None])
        lse_rel = jnp.log(jnp.sum(kept, axis=-1))
    else:
        kept = logits
        # ``+ (-m)``: a broadcast of its own, which XLA does not merge with the backward's
        # ``- m`` (merged, it would be written out as an (N, C) array; see upcast).
        lse_rel = jnp.log(jnp.sum(jnp.exp(logits.astype(m.dtype) + (-m)[:, None]), axis=-1))
    w_y, w_c = _class_weights(class_weights, labels, m.dtype)
    x = upcast(logits)
    smooth_mass = smooth_sum = None
    if smoothing_on:
        shifted = x - m[:, None]
        finite = jnp.isfinite(shifted)
        smooth_mass = jnp.sum(jnp.where(finite, w_c, 0), axis=-1)
        smooth_sum = jnp.sum(jnp.where(finite, w_c * shifted, 0), axis=-1)
    loss = sparse_ce_from_stats(lse_rel, picked(x, labels) - m, m + lse_rel, w_y, smooth_mass,
                                smooth_sum, smoothing, z_loss, logits.shape[-1])
    return loss, (kept, labels, m, lse_rel, smooth_mass, smoothing, class_weights, z_loss)


def _sparse_bwd(smoothing_on, res, g):
    kept, labels, m, lse_rel, smooth_mass, smoothing, class_weights, z_loss = res
    w_y, w_c = _class_weights(class_weights, labels, m.dtype)
    finite = None
    if _keeps_exp(smoothing_on, kept):
        p = kept * jnp.exp(-lse_rel)[:, None]
    else:
        shifted = upcast(kept) - m[:, None]
        p = softmax_rel(shifted, lse_rel)
        finite = jnp.isfinite(shifted) if smoothing_on else None
    grad = sparse_ce_grad(p, finite, is_label(labels, kept.shape[-1]), g, w_y, w_c, m + lse_rel,
                          smooth_mass, smoothing, z_loss, kept.shape[-1])
    return (grad.astype(kept.dtype), int_cotangent(labels), zero_cotangent(smoothing),
            zero_cotangent(class_weights), zero_cotangent(z_loss))


sparse_softmax_ce.defvjp(_sparse_fwd, _sparse_bwd)


# ------------------------------------------------------- dense softmax CE


def dense_softmax_ce(logits, targets, smoothing, class_weights, z_loss):
    """Per-example ``sum_c a_c (-log p_c) + z lse^2``, ``a = ((1-s) t + s/C) w``.

    ``targets`` (N, C) probabilities. At a -inf logit the smoothing mass is
    dropped and any real target mass there makes the loss +inf.
    """
    return _dense_ce(*vary_together(logits, targets), smoothing, class_weights, z_loss)


@jax.custom_vjp
def _dense_ce(logits, targets, smoothing, class_weights, z_loss):
    return _dense_fwd(logits, targets, smoothing, class_weights, z_loss)[0]


def _dense_mass(finite, targets, smoothing, class_weights, num_classes, dtype):
    """Target mass ``a`` per class (0 at -inf logits) and ``(1-s) t w`` (for +inf)."""
    w_c = 1.0 if class_weights is None else class_weights.astype(dtype)[None, :]
    hard = (1 - smoothing) * targets.astype(dtype) * w_c
    a = jnp.where(finite, hard + smoothing / num_classes * w_c, 0)
    return a, hard


def _dense_fwd(logits, targets, smoothing, class_weights, z_loss):
    shifted, m, lse_rel = row_stats(logits)
    finite = jnp.isfinite(shifted)
    a, hard = _dense_mass(finite, targets, smoothing, class_weights, logits.shape[-1], shifted.dtype)
    nll = jnp.where(finite, lse_rel[:, None] - shifted, 0)
    infinite = jnp.any(~finite & (hard > 0), axis=-1)
    loss = jnp.where(infinite, jnp.inf, jnp.sum(a * nll, axis=-1))
    loss = loss + z_loss * (m + lse_rel) ** 2
    return loss, (logits, targets, m, lse_rel, jnp.sum(a, axis=-1), smoothing, class_weights,
                  z_loss)


def _dense_bwd(res, g):
    logits, targets, m, lse_rel, mass, smoothing, class_weights, z_loss = res
    dtype = compute_dtype(logits)
    shifted, p = probs(logits, m, lse_rel)
    finite = jnp.isfinite(shifted)
    a, _ = _dense_mass(finite, targets, smoothing, class_weights, logits.shape[-1], dtype)
    grad = g[:, None] * ((mass + 2 * z_loss * (m + lse_rel))[:, None] * p - a)
    w_c = 1.0 if class_weights is None else class_weights.astype(dtype)[None, :]
    nll = jnp.where(finite, lse_rel[:, None] - shifted, 0)
    dtargets = g[:, None] * (1 - smoothing) * w_c * nll
    return (grad.astype(logits.dtype), dtargets.astype(targets.dtype), zero_cotangent(smoothing),
            zero_cotangent(class_weights), zero_cotangent(z_loss))


_dense_ce.defvjp(_dense_fwd, _dense_bwd)


# ------------------------------------------------------ softmax focal


@jax.custom_vjp
def softmax_focal(logits, labels, gamma):
    """Per-example ``-(1 - p_y)^gamma log p_y`` (no alpha), in log space.

    ``log(1 - p_y)`` is computed from the other classes' logits, so it is
    exact when ``p_y`` rounds to 1, and the gradient is finite for every
    ``gamma >= 0``.
    """
    return _focal_fwd(logits, labels, gamma)[0]


def _log_sum_exp_others(shifted, is_label):
    """``log sum_{c != y} exp(shifted_c)`` relative to its own max (-inf if no other class).

    Every derivative is finite: the sum is >= 1 after the shift, and the empty
    case is selected with a double where.
    """
    others = jnp.where(is_label, -jnp.inf, shifted)
    m2 = jax.lax.stop_gradient(jnp.max(others, axis=-1))
    m2 = jnp.where(jnp.isfinite(m2), m2, 0)
    total = jnp.sum(jnp.exp(others - m2[:, None]), axis=-1)
    some = total > 0
    return jnp.where(some, m2 + jnp.log(jnp.where(some, total, 1)), -jnp.inf)


def _focal_stats(logits, labels):
    shifted, m, lse_rel = row_stats(logits)
    log_q = _log_sum_exp_others(shifted, is_label(labels, logits.shape[-1])) - lse_rel
    q = jnp.exp(log_q)  # 1 - p_y; log_q may be -inf
    near_one = q < 0.5  # p_y > 1/2: log p_y = log1p(-q), exact when p_y rounds to 1
    log_p = jnp.where(near_one, jnp.log1p(-jnp.where(near_one, q, 0)),
                      picked(shifted, labels) - lse_rel)
    return (m, lse_rel), log_q, q, log_p


def _focal_fwd(logits, labels, gamma):
    stats, log_q, _, log_p = _focal_stats(logits, labels)
    loss = -focal_modulator(gamma, log_q) * log_p
    return loss, (logits, labels, stats, log_q, log_p, gamma)


def _focal_bwd(res, g):
    logits, labels, (m, lse_rel), log_q, log_p, gamma = res
    _, p = probs(logits, m, lse_rel)
    q = jnp.exp(log_q)
    p_y = jnp.exp(log_p)
    small = q < 1e-4
    ratio = jnp.where(small, -1 - q / 2 - q**2 / 3, log_p / jnp.where(small, 1, q))  # log(1-q)/q
    mod = focal_modulator(gamma, log_q)
    other = (mod * (1 - gamma * p_y * ratio))[:, None] * p
    own = -mod * (q - gamma * log_p * p_y)
    grad = g[:, None] * jnp.where(is_label(labels, logits.shape[-1]), own[:, None], other)
    return grad.astype(logits.dtype), int_cotangent(labels), zero_cotangent(gamma)


softmax_focal.defvjp(_focal_fwd, _focal_bwd)

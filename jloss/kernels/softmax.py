"""Softmax cross-entropy kernels (sparse and dense targets) and the softmax focal kernel.

Each kernel works on 2-D ``(N, C)`` logits (classes last) or elementwise
binary logits, computes in float32 (float64 for x64 inputs), returns the
unreduced loss, and has a closed-form backward:

* softmax family: the forward keeps the logits (input dtype) and the
  per-example row max ``m`` and ``log sum exp(x - m)``; the backward recomputes
  ``p = exp((x - m) - log sum exp(x - m))`` (never ``exp(x - lse)``: at large
  logits ``lse = m + ...`` rounds away its small part) and forms
  ``(total target mass + 2 z lse) * p - target`` in one pass
  (:func:`jloss.kernels.common.ce_cotangent`), cast to the logits' dtype. No
  float32 copy of half-precision logits is kept. float32 / float64 logits
  without smoothing keep ``exp(x - m)`` instead, which the forward writes
  anyway: the backward is then one pass over it (and the targets).
* losses are computed relative to the row max, ``log sum exp(x - m) - (x_y - m)``,
  so logits far from zero keep full precision.
* a class whose logit is -inf is a masked class: it gets probability 0 and
  no label-smoothing mass; the loss stays finite while the target class has a
  finite logit. A +inf logit takes the whole probability mass (shared with
  any other +inf logit of its row): a +inf label logit gives loss 0 and
  gradient 0.
* ``z_loss=None`` means no z-loss term (the callers pass None when z is
  statically 0): ``0 * lse^2`` would be NaN where ``lse^2`` overflows.

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
    ce_cotangent,
    focal_modulator,
    int_cotangent,
    is_label,
    picked,
    probs,
    relative,
    row_max,
    row_stats,
    softmax_rel,
    times,
    upcast,
    vary_together,
    with_z_loss,
    zero_cotangent,
)


def _keeps_exp(smoothing_on, logits):
    """Which (N, C) tensor the backward keeps.

    float32 / float64 logits without smoothing: ``e = exp(x - m)``, which the
    forward writes anyway to sum it; the backward scales it into the
    cotangent in place and computes no second exp. Half-precision logits, or
    label smoothing (which needs to know which logits are -inf): the logits
    themselves, and the backward recomputes the exp; never a float32 copy of
    half-precision logits.
    """
    return not smoothing_on and logits.dtype == compute_dtype(logits)


def _softmax_stats(smoothing_on, logits):
    """Forward: ``(kept, m, log sum exp(x - m), exp(x - m))``, ``kept`` as :func:`_keeps_exp` says."""
    m = row_max(logits)
    if _keeps_exp(smoothing_on, logits):
        kept = jnp.exp(relative(logits, m[:, None]))
        return kept, m, jnp.log(jnp.sum(kept, axis=-1)), kept
    # ``+ (-m)``: a broadcast of its own, which XLA does not merge with the backward's
    # ``- m`` (merged, it would be written out as an (N, C) array; see upcast). The clamp
    # of ``relative`` is applied to the logits, in their dtype: after the convert, XLA
    # would write the float32 copy too.
    x = jnp.minimum(logits, jnp.finfo(logits.dtype).max)
    e = jnp.exp(x.astype(m.dtype) + (-m)[:, None])
    return logits, m, jnp.log(jnp.sum(e, axis=-1)), e


def _softmax(smoothing_on, kept, m, lse_rel):
    """Backward: the softmax ``p`` and, with smoothing, the mask of finite logits (else None)."""
    if _keeps_exp(smoothing_on, kept):
        return kept * jnp.exp(-lse_rel)[:, None], None
    shifted = relative(upcast(kept), m[:, None])
    return softmax_rel(shifted, lse_rel), (jnp.isfinite(shifted) if smoothing_on else None)


def _class_weights(class_weights, labels, dtype):
    """``(w_y (N,), w_c (1, C))``, or ``(1.0, 1.0)`` without class weights."""
    if class_weights is None:
        return 1.0, 1.0
    w = class_weights.astype(dtype)
    return w if labels is None else w[labels], w[None, :]


# ------------------------------------------------------ sparse softmax CE


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def sparse_softmax_ce(smoothing_on, logits, labels, smoothing, class_weights, z_loss):
    """Per-example ``(1-s) w_y (-log p_y) + (s/C) sum_c w_c (-log p_c) + z lse^2``.

    ``logits`` (N, C) in any float dtype, ``labels`` (N,) int in [0, C),
    ``class_weights`` (C,) or None, ``z_loss`` None for no z-loss term.
    ``smoothing_on`` (static) skips the smoothing reduction when the caller
    knows ``smoothing == 0``.
    """
    return _sparse_fwd(smoothing_on, logits, labels, smoothing, class_weights, z_loss)[0]


def sparse_ce_from_stats(lse_rel, picked_rel, lse, w_y, smooth_mass, smooth_sum_rel,
                         smoothing, z_loss, num_classes):
    """The sparse softmax CE of one example from its statistics.

    ``lse_rel = log sum_c exp(x_c - m)``, ``picked_rel = x_y - m``, ``lse = m +
    lse_rel``; with smoothing (else ``smooth_mass`` is None)
    ``smooth_mass = sum_{c finite} w_c`` and ``smooth_sum_rel = sum_{c finite}
    w_c (x_c - m)``; ``z_loss`` None for no z-loss term. Shared by the
    dense-logits kernel below and the vocabulary-blocked kernel of
    :mod:`jloss.heads.linear_cross_entropy`, which builds the same statistics
    block by block.
    """
    loss = (1 - smoothing) * w_y * (lse_rel - picked_rel)
    if smooth_mass is not None:
        loss = loss + smoothing / num_classes * (smooth_mass * lse_rel - smooth_sum_rel)
    return with_z_loss(loss, z_loss, lse)


def sparse_ce_grad(p, finite, is_label, g, w_y, w_c, lse, smooth_mass, smoothing, z_loss,
                   num_classes):
    """Cotangent of the logits of any block of classes, in the compute dtype.

    :func:`jloss.kernels.common.ce_cotangent` with the target ``(1-s) w_y [c =
    y] + s/C w_c [x_c finite]`` and its mass ``(1-s) w_y + s/C smooth_mass``
    (the label column is selected by the ``is_label`` mask, not scattered).
    ``p`` (N, B) is the softmax of the block, ``finite`` marks its finite
    logits (None without smoothing, as is ``smooth_mass``), ``w_y`` (N,) or
    1.0, ``w_c`` (1, B) or 1.0, ``z_loss`` None for no z-loss term. Shared by
    the sparse kernel below and :mod:`jloss.heads.linear_cross_entropy`.
    """
    mass = (1 - smoothing) * w_y
    target = jnp.where(is_label, mass[..., None] if jnp.ndim(mass) else mass, 0)
    if smooth_mass is not None:
        mass = mass + smoothing / num_classes * smooth_mass
        target = target + jnp.where(finite, smoothing / num_classes * w_c, 0)
    return ce_cotangent(g, p, mass, target, lse, z_loss)


def _sparse_fwd(smoothing_on, logits, labels, smoothing, class_weights, z_loss):
    kept, m, lse_rel, _ = _softmax_stats(smoothing_on, logits)
    w_y, w_c = _class_weights(class_weights, labels, m.dtype)
    x = upcast(logits)
    smooth_mass = smooth_sum = None
    if smoothing_on:
        shifted = relative(x, m[:, None])
        finite = jnp.isfinite(shifted)
        smooth_mass = jnp.sum(jnp.where(finite, w_c, 0), axis=-1)
        smooth_sum = jnp.sum(jnp.where(finite, w_c * shifted, 0), axis=-1)
    loss = sparse_ce_from_stats(lse_rel, relative(picked(x, labels), m), m + lse_rel, w_y,
                                smooth_mass, smooth_sum, smoothing, z_loss, logits.shape[-1])
    return loss, (kept, labels, m, lse_rel, smooth_mass, smoothing, class_weights, z_loss)


def _sparse_bwd(smoothing_on, res, g):
    kept, labels, m, lse_rel, smooth_mass, smoothing, class_weights, z_loss = res
    w_y, w_c = _class_weights(class_weights, labels, m.dtype)
    p, finite = _softmax(smoothing_on, kept, m, lse_rel)
    grad = sparse_ce_grad(p, finite, is_label(labels, kept.shape[-1]), g, w_y, w_c, m + lse_rel,
                          smooth_mass, smoothing, z_loss, kept.shape[-1])
    return (grad.astype(kept.dtype), int_cotangent(labels), zero_cotangent(smoothing),
            zero_cotangent(class_weights), zero_cotangent(z_loss))


sparse_softmax_ce.defvjp(_sparse_fwd, _sparse_bwd)


# ------------------------------------------------------- dense softmax CE


def dense_softmax_ce(smoothing_on, logits, targets, smoothing, class_weights, z_loss, epsilon=None):
    """Per-example ``sum_c a_c (-log p_c) + z lse^2``, ``a = ((1-s) t + s/C) w``.

    ``targets`` (N, C) probabilities, ``z_loss`` None for no z-loss term,
    ``smoothing_on`` (static) as for :func:`sparse_softmax_ce`. At a -inf
    logit the smoothing mass is dropped and any real target mass there makes
    the loss +inf. ``epsilon`` not None adds the Poly-1 term
    ``epsilon sum_c t'_c (1 - p_c)``, ``t' = (1-s) t + s/C`` (no class weights):
    the same softmax serves both terms and the backward stays one pass.
    """
    return _dense_ce(smoothing_on, *vary_together(logits, targets), smoothing, class_weights,
                     z_loss, epsilon)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _dense_ce(smoothing_on, logits, targets, smoothing, class_weights, z_loss, epsilon):
    return _dense_fwd(smoothing_on, logits, targets, smoothing, class_weights, z_loss, epsilon)[0]


def _dense_target(targets, finite, smoothing, class_weights, dtype):
    """Target mass ``a`` per class: ``(1-s) t w``, plus ``s/C w`` at finite logits (``finite`` not None)."""
    _, w_c = _class_weights(class_weights, None, dtype)
    t = targets.astype(dtype)
    if finite is None:
        return t * w_c
    return ((1 - smoothing) * t + jnp.where(finite, smoothing / finite.shape[-1], 0)) * w_c


def _dense_fwd(smoothing_on, logits, targets, smoothing, class_weights, z_loss, epsilon):
    kept, m, lse_rel, e = _softmax_stats(smoothing_on, logits)
    shifted = relative(upcast(logits), m[:, None])
    finite = jnp.isfinite(shifted) if smoothing_on else None
    a = _dense_target(targets, finite, smoothing, class_weights, m.dtype)
    mass = jnp.sum(a, axis=-1)
    # sum_c a_c (lse_rel - shifted_c); a_c = 0 at a -inf logit adds 0, a_c > 0 there +inf
    loss = with_z_loss(mass * lse_rel - jnp.sum(times(a, shifted), axis=-1), z_loss, m + lse_rel)
    t_p = None
    if epsilon is not None:
        # sum_c t'_c (1 - p_c) = (1-s) (sum t - sum t p) + s (1 - 1/C), sum t p from the
        # statistics' exp(x - m), in the same pass
        t = targets.astype(m.dtype)
        t_p = jnp.sum(t * e, axis=-1) * jnp.exp(-lse_rel)
        poly = (1 - smoothing) * (jnp.sum(t, axis=-1) - t_p) + smoothing * (1 - 1 / logits.shape[-1])
        loss = loss + epsilon * poly
    return loss, (kept, logits, targets, m, lse_rel, mass, t_p, smoothing, class_weights, z_loss,
                  epsilon)


def _dense_bwd(smoothing_on, res, g):
    kept, logits, targets, m, lse_rel, mass, t_p, smoothing, class_weights, z_loss, epsilon = res
    p, finite = _softmax(smoothing_on, kept, m, lse_rel)
    a = _dense_target(targets, finite, smoothing, class_weights, m.dtype)
    if epsilon is not None:
        # d/dx_c of -e' sum_k t_k p_k, e' = epsilon (1 - s): -e' p_c (t_c - t_p); with the CE
        # cotangent (mass p - a) it is (mass + e' t_p) p - (a + e' t p): one pass
        poly = epsilon * (1 - smoothing)
        mass = mass + poly * t_p
        a = a + poly * targets.astype(m.dtype) * p
    grad = ce_cotangent(g, p, mass, a, m + lse_rel, z_loss)
    shifted = relative(upcast(logits), m[:, None])
    _, w_c = _class_weights(class_weights, None, m.dtype)
    nll = jnp.where(jnp.isfinite(shifted), lse_rel[:, None] - shifted, 0)
    if epsilon is not None:
        nll = nll + epsilon * (1 - p)
    dtargets = g[:, None] * (1 - smoothing) * w_c * nll
    return (grad.astype(logits.dtype), dtargets.astype(targets.dtype), zero_cotangent(smoothing),
            zero_cotangent(class_weights), zero_cotangent(z_loss), zero_cotangent(epsilon))


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
    plogp = jnp.where(p_y > 0, p_y * log_p, 0)  # bounded: never gamma * log_p alone (overflows)
    small = q < 1e-4
    # p_y log(p_y) / q = p_y log(1 - q) / q
    ratio = jnp.where(small, p_y * (-1 - q / 2 - q**2 / 3), plogp / jnp.where(small, 1, q))
    mod = focal_modulator(gamma, log_q)
    other = (mod * (1 - gamma * ratio))[:, None] * p
    own = -mod * (q - gamma * plogp)
    grad = g[:, None] * jnp.where(is_label(labels, logits.shape[-1]), own[:, None], other)
    return grad.astype(logits.dtype), int_cotangent(labels), zero_cotangent(gamma)


softmax_focal.defvjp(_focal_fwd, _focal_bwd)

"""Custom-VJP kernels of the cross-entropy family.

Each kernel works on 2-D ``(N, C)`` logits (classes last) or elementwise
binary logits, computes in float32 (float64 for x64 inputs), returns the
unreduced loss, and has a closed-form backward:

* softmax family: the forward keeps the logits (input dtype) and the
  per-example logsumexp; the backward recomputes ``p = exp(x - lse)`` and
  forms ``(total target mass + 2 z lse) * p - target`` in one pass, cast to the
  logits' dtype. No float32 copy of half-precision logits is kept.
* losses are computed relative to the row max, ``log sum exp(x - m) - (x_y - m)``,
  so logits far from zero keep full precision.
* a class whose logit is -inf is a masked class: it gets probability 0 and
  no label-smoothing mass; the loss stays finite while the target class has a
  finite logit.

Hyperparameters (smoothing, z-loss, class weights, gamma) are inputs, not
constants, so they may be traced, but their cotangents are zero: they are not
meant to be learned. Forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``,
``jax.hessian``) is not available on custom-VJP functions; second derivatives
work with ``jax.jacrev(jax.jacrev(f))`` because every backward is itself
differentiable.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _compute_dtype(x):
    return jnp.promote_types(x.dtype, jnp.float32)


def _zeros_like_int(y):
    return np.zeros(y.shape, dtype=jax.dtypes.float0)


def _zero(v):
    return None if v is None else jnp.zeros_like(v)


def _row_stats(x):
    """Per-row max ``m`` (0 for an all -inf row), ``x - m`` and ``log sum exp(x - m)``."""
    xf = x.astype(_compute_dtype(x))
    m = jnp.max(xf, axis=-1)
    m = jnp.where(jnp.isfinite(m), m, 0)
    shifted = xf - m[:, None]
    lse_rel = jnp.log(jnp.sum(jnp.exp(shifted), axis=-1))
    return shifted, m, lse_rel


def _picked(a, labels):
    return jnp.take_along_axis(a, labels[:, None], axis=-1)[:, 0]


def _is_label(labels, num_classes):
    return jnp.arange(num_classes)[None, :] == labels[:, None]


# ------------------------------------------------------ sparse softmax CE


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
    vocabulary-blocked kernel of :mod:`jloss.fused`, which builds the same
    statistics block by block.
    """
    loss = (1 - smoothing) * w_y * (lse_rel - picked_rel)
    if smooth_mass is not None:
        loss = loss + smoothing / num_classes * (smooth_mass * lse_rel - smooth_sum_rel)
    return loss + z_loss * lse**2


def sparse_ce_grad(x, is_label, lse, g, w_y, w_c, smooth_mass, smoothing, z_loss, num_classes):
    """Cotangent of the logits ``x`` (N, B) (any block of classes) in the compute dtype.

    ``g * ((w_y (1-s) + 2 z lse + s/C smooth_mass) p - target)`` with ``p =
    exp(x - lse)`` and ``target = (1-s) w_y [c = y] + s/C w_c [x_c finite]``;
    ``is_label`` (N, B) marks the label column, ``smooth_mass`` is None without
    smoothing, ``w_y`` (N,) or 1.0, ``w_c`` (1, B) or 1.0.
    """
    p = jnp.exp(x - lse[:, None])
    hit = (1 - smoothing) * w_y
    total = hit + 2 * z_loss * lse
    target = jnp.where(is_label, hit[..., None] if jnp.ndim(hit) else hit, 0)
    if smooth_mass is not None:
        total = total + smoothing / num_classes * smooth_mass
        target = target + jnp.where(jnp.isfinite(x), smoothing / num_classes * w_c, 0)
    return g[:, None] * (jnp.broadcast_to(total, g.shape)[:, None] * p - target)


def _sparse_fwd(smoothing_on, logits, labels, smoothing, class_weights, z_loss):
    shifted, m, lse_rel = _row_stats(logits)
    num_classes = logits.shape[-1]
    w_y = 1.0 if class_weights is None else class_weights.astype(shifted.dtype)[labels]
    smooth_mass = smooth_sum = None
    if smoothing_on:
        finite = jnp.isfinite(shifted)
        w_c = 1.0 if class_weights is None else class_weights.astype(shifted.dtype)[None, :]
        w_fin = jnp.where(finite, w_c, 0)
        smooth_mass = jnp.sum(w_fin, axis=-1)
        smooth_sum = jnp.sum(jnp.where(finite, w_c * shifted, 0), axis=-1)
    lse = m + lse_rel
    loss = sparse_ce_from_stats(lse_rel, _picked(shifted, labels), lse, w_y, smooth_mass,
                                smooth_sum, smoothing, z_loss, num_classes)
    return loss, (logits, labels, lse, smooth_mass, smoothing, class_weights, z_loss)


def _sparse_bwd(smoothing_on, res, g):
    logits, labels, lse, smooth_mass, smoothing, class_weights, z_loss = res
    dtype = _compute_dtype(logits)
    num_classes = logits.shape[-1]
    w_y = 1.0 if class_weights is None else class_weights.astype(dtype)[labels]
    w_c = 1.0 if class_weights is None else class_weights.astype(dtype)[None, :]
    grad = sparse_ce_grad(logits.astype(dtype), _is_label(labels, num_classes), lse, g, w_y, w_c,
                          smooth_mass, smoothing, z_loss, num_classes)
    return (grad.astype(logits.dtype), _zeros_like_int(labels), _zero(smoothing),
            _zero(class_weights), _zero(z_loss))


sparse_softmax_ce.defvjp(_sparse_fwd, _sparse_bwd)


# ------------------------------------------------------- dense softmax CE


@jax.custom_vjp
def dense_softmax_ce(logits, targets, smoothing, class_weights, z_loss):
    """Per-example ``sum_c a_c (-log p_c) + z lse^2``, ``a = ((1-s) t + s/C) w``.

    ``targets`` (N, C) probabilities. At a -inf logit the smoothing mass is
    dropped and any real target mass there makes the loss +inf.
    """
    return _dense_fwd(logits, targets, smoothing, class_weights, z_loss)[0]


def _dense_mass(finite, targets, smoothing, class_weights, num_classes, dtype):
    """Target mass ``a`` per class (0 at -inf logits) and ``(1-s) t w`` (for +inf)."""
    w_c = 1.0 if class_weights is None else class_weights.astype(dtype)[None, :]
    hard = (1 - smoothing) * targets.astype(dtype) * w_c
    a = jnp.where(finite, hard + smoothing / num_classes * w_c, 0)
    return a, hard


def _dense_fwd(logits, targets, smoothing, class_weights, z_loss):
    shifted, m, lse_rel = _row_stats(logits)
    finite = jnp.isfinite(shifted)
    a, hard = _dense_mass(finite, targets, smoothing, class_weights, logits.shape[-1], shifted.dtype)
    nll = jnp.where(finite, lse_rel[:, None] - shifted, 0)
    infinite = jnp.any(~finite & (hard > 0), axis=-1)
    loss = jnp.where(infinite, jnp.inf, jnp.sum(a * nll, axis=-1))
    lse = m + lse_rel
    loss = loss + z_loss * lse**2
    return loss, (logits, targets, lse, jnp.sum(a, axis=-1), smoothing, class_weights, z_loss)


def _dense_bwd(res, g):
    logits, targets, lse, mass, smoothing, class_weights, z_loss = res
    dtype = _compute_dtype(logits)
    xf = logits.astype(dtype)
    finite = jnp.isfinite(xf)
    a, _ = _dense_mass(finite, targets, smoothing, class_weights, logits.shape[-1], dtype)
    p = jnp.exp(xf - lse[:, None])
    grad = g[:, None] * ((mass + 2 * z_loss * lse)[:, None] * p - a)
    w_c = 1.0 if class_weights is None else class_weights.astype(dtype)[None, :]
    nll = jnp.where(finite, lse[:, None] - xf, 0)
    dtargets = g[:, None] * (1 - smoothing) * w_c * nll
    return (grad.astype(logits.dtype), dtargets.astype(targets.dtype), _zero(smoothing),
            _zero(class_weights), _zero(z_loss))


dense_softmax_ce.defvjp(_dense_fwd, _dense_bwd)


# ------------------------------------------------------ softmax focal


@jax.custom_vjp
def softmax_focal(logits, labels, gamma):
    """Per-example ``-(1 - p_y)^gamma log p_y`` (no alpha), in log space.

    ``log(1 - p_y)`` is computed from the other classes' logits, so it is
    exact when ``p_y`` rounds to 1, and the gradient is finite for every
    ``gamma >= 0``.
    """
    return _focal_fwd(logits, labels, gamma)[0]


def _focal_stats(logits, labels):
    shifted, m, lse_rel = _row_stats(logits)
    others = jnp.where(_is_label(labels, logits.shape[-1]), 0, jnp.exp(shifted))
    log_q = jnp.log(jnp.sum(others, axis=-1)) - lse_rel  # log(1 - p_y), may be -inf
    q = jnp.exp(log_q)
    log_p = jnp.where(q < 0.5, jnp.log1p(-q), _picked(shifted, labels) - lse_rel)
    return m + lse_rel, log_q, q, log_p


def _modulator(gamma, log_q):
    return jnp.exp(gamma * jnp.maximum(log_q, -1e30))


def _focal_fwd(logits, labels, gamma):
    lse, log_q, q, log_p = _focal_stats(logits, labels)
    loss = -_modulator(gamma, log_q) * log_p
    return loss, (logits, labels, lse, log_q, log_p, gamma)


def _focal_bwd(res, g):
    logits, labels, lse, log_q, log_p, gamma = res
    dtype = _compute_dtype(logits)
    p = jnp.exp(logits.astype(dtype) - lse[:, None])
    q = jnp.exp(log_q)
    p_y = jnp.exp(log_p)
    small = q < 1e-4
    ratio = jnp.where(small, -1 - q / 2 - q**2 / 3, log_p / jnp.where(small, 1, q))  # log(1-q)/q
    mod = _modulator(gamma, log_q)
    other = (mod * (1 - gamma * p_y * ratio))[:, None] * p
    own = -mod * (q - gamma * log_p * p_y)
    grad = g[:, None] * jnp.where(_is_label(labels, logits.shape[-1]), own[:, None], other)
    return grad.astype(logits.dtype), _zeros_like_int(labels), _zero(gamma)


softmax_focal.defvjp(_focal_fwd, _focal_bwd)


# ------------------------------------------------------ sigmoid family


@jax.custom_vjp
def sigmoid_bce(logits, labels, pos_weight):
    """Elementwise ``pw y softplus(-x) + (1 - y) softplus(x)``: BCE with logits."""
    return _bce_fwd(logits, labels, pos_weight)[0]


def _bce_fwd(logits, labels, pos_weight):
    dtype = _compute_dtype(logits)
    x, y, pw = logits.astype(dtype), labels.astype(dtype), pos_weight.astype(dtype)
    loss = pw * y * jax.nn.softplus(-x) + (1 - y) * jax.nn.softplus(x)
    return loss, (logits, labels, pos_weight)


def _bce_bwd(res, g):
    logits, labels, pos_weight = res
    dtype = _compute_dtype(logits)
    x, y, pw = logits.astype(dtype), labels.astype(dtype), pos_weight.astype(dtype)
    dx = (1 - y) * jax.nn.sigmoid(x) - pw * y * jax.nn.sigmoid(-x)
    dy = pw * jax.nn.softplus(-x) - jax.nn.softplus(x)
    dpw = y * jax.nn.softplus(-x)
    return ((g * dx).astype(logits.dtype), (g * dy).astype(labels.dtype),
            (g * dpw).astype(pos_weight.dtype))


sigmoid_bce.defvjp(_bce_fwd, _bce_bwd)


@jax.custom_vjp
def sigmoid_focal(logits, labels, gamma):
    """Elementwise ``BCE(x, y) (1 - p_t)^gamma`` with ``1 - p_t = p (1-y) + (1-p) y``.

    The modulating factor is ``exp(gamma log(1 - p_t))`` with the log taken
    from log-sigmoids, so it and its derivatives stay finite at saturation.
    Labels are treated as constants (zero cotangent).
    """
    return _sfocal_fwd(logits, labels, gamma)[0]


def _sfocal_terms(logits, labels, gamma):
    dtype = _compute_dtype(logits)
    x, y = logits.astype(dtype), labels.astype(dtype)
    ls_pos, ls_neg = jax.nn.log_sigmoid(x), jax.nn.log_sigmoid(-x)
    ce = -(y * ls_pos + (1 - y) * ls_neg)
    log_q = jnp.logaddexp(jnp.log1p(-y) + ls_pos, jnp.log(y) + ls_neg)
    return x, y, ls_pos, ls_neg, ce, log_q, _modulator(gamma, log_q)


def _sfocal_fwd(logits, labels, gamma):
    *_, ce, _, mod = _sfocal_terms(logits, labels, gamma)
    return ce * mod, (logits, labels, gamma)


def _sfocal_bwd(res, g):
    logits, labels, gamma = res
    x, y, ls_pos, ls_neg, ce, log_q, mod = _sfocal_terms(logits, labels, gamma)
    dlog_q = (1 - 2 * y) * jnp.exp(ls_pos + ls_neg - log_q)  # d log(1 - p_t) / dx
    dx = mod * (jax.nn.sigmoid(x) - y + gamma * ce * dlog_q)
    return (g * dx).astype(logits.dtype), jnp.zeros_like(labels), _zero(gamma)


sigmoid_focal.defvjp(_sfocal_fwd, _sfocal_bwd)


def clamped_log(p):
    """``log(p)`` clamped below at -100 (as PyTorch), with finite gradients at 0."""
    positive = p > 0
    return jnp.where(positive, jnp.maximum(jnp.log(jnp.where(positive, p, 1)), -100.0), -100.0)

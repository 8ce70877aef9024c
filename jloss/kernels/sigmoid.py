"""Sigmoid kernels: binary cross-entropy with logits and the sigmoid focal loss.

Both use log-sigmoid / softplus forms, so they are exact at saturated logits,
and have closed-form backward passes that keep the logits and labels in their
own dtypes (no float32 copy of half-precision inputs).
"""

import jax
import jax.numpy as jnp

from jloss._core.dtypes import compute_dtype
from jloss.kernels.common import focal_modulator, int_cotangent, times, vary_together, zero_cotangent


def smooth_binary_labels(labels, dtype, smoothing):
    """Binary labels in the compute dtype, smoothed: ``y (1 - s) + s / 2``."""
    return labels.astype(dtype) * (1 - smoothing) + smoothing / 2


def _label_cotangent(labels, ct=None):
    """``ct`` in the labels' dtype, or the symbolic zero of integer / bool labels."""
    if not jnp.issubdtype(labels.dtype, jnp.inexact):
        return int_cotangent(labels)
    return jnp.zeros_like(labels) if ct is None else ct.astype(labels.dtype)


def _sum_to_shape(x, shape):
    """Sum a cotangent over the axes along which an operand of ``shape`` was broadcast."""
    x = jnp.sum(x, axis=tuple(range(x.ndim - len(shape))))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and x.shape[i] != 1)
    return jnp.sum(x, axis=axes, keepdims=True) if axes else x


def sigmoid_bce(logits, labels, pos_weight, smoothing):
    """Elementwise ``pw y' softplus(-x) + (1 - y') softplus(x)``: BCE with logits.

    ``y' = y (1 - s) + s / 2`` is formed inside the kernel, ``labels`` (any
    dtype) and ``pos_weight`` (broadcastable) are kept as given, so the
    backward holds the logits and labels in their own dtypes and no
    float32 (N, V) copy.
    """
    return _bce(*vary_together(logits, labels, pos_weight), smoothing)


@jax.custom_vjp
def _bce(logits, labels, pos_weight, smoothing):
    return _bce_fwd(logits, labels, pos_weight, smoothing)[0]


def _bce_terms(logits, labels, pos_weight, smoothing):
    dtype = compute_dtype(logits)
    x = logits.astype(dtype)
    return x, smooth_binary_labels(labels, dtype, smoothing), pos_weight.astype(dtype)


def bce_logit_grad(x, y, pw=1.0):
    """``d BCE / dx = (1 - y) sigmoid(x) - pw y sigmoid(-x)``, without cancellation.

    (``sigmoid(x) - y`` would lose ``-sigmoid(-x)`` for ``y = 1``, ``x >> 0``.)
    """
    return (1 - y) * jax.nn.sigmoid(x) - pw * y * jax.nn.sigmoid(-x)


def _bce_fwd(logits, labels, pos_weight, smoothing):
    x, y, pw = _bce_terms(logits, labels, pos_weight, smoothing)
    # ``times``: a term whose weight is 0 is 0 at +-inf logits too (BCE(+inf, 1) = 0)
    loss = pw * times(y, jax.nn.softplus(-x)) + times(1 - y, jax.nn.softplus(x))
    return loss, (logits, labels, pos_weight, smoothing)


def _bce_bwd(res, g):
    logits, labels, pos_weight, smoothing = res
    x, y, pw = _bce_terms(logits, labels, pos_weight, smoothing)
    dx = bce_logit_grad(x, y, pw)
    dy = (1 - smoothing) * (pw * jax.nn.softplus(-x) - jax.nn.softplus(x))
    dpw = _sum_to_shape(g * times(y, jax.nn.softplus(-x)), pos_weight.shape)
    return ((g * dx).astype(logits.dtype), _label_cotangent(labels, g * dy),
            dpw.astype(pos_weight.dtype), zero_cotangent(smoothing))


_bce.defvjp(_bce_fwd, _bce_bwd)


@jax.custom_vjp
def sigmoid_focal(logits, labels, gamma, alpha):
    """Elementwise ``alpha_t BCE(x, y) (1 - p_t)^gamma`` with ``1 - p_t = p (1-y) + (1-p) y``.

    The modulating factor is ``exp(gamma log(1 - p_t))`` with the log taken
    from log-sigmoids, so it and its derivatives stay finite at saturation.
    ``alpha_t = alpha y + (1 - alpha)(1 - y)`` (``alpha`` None: 1) is formed
    inside the kernel. Labels are treated as constants (zero cotangent).
    """
    return _sfocal_fwd(logits, labels, gamma, alpha)[0]


def _sfocal_terms(logits, labels, gamma, alpha):
    dtype = compute_dtype(logits)
    x, y = logits.astype(dtype), labels.astype(dtype)
    ls_pos, ls_neg = jax.nn.log_sigmoid(x), jax.nn.log_sigmoid(-x)
    ce = -(times(y, ls_pos) + times(1 - y, ls_neg))
    log_q = jnp.logaddexp(jnp.log1p(-y) + ls_pos, jnp.log(y) + ls_neg)
    alpha_t = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    return x, y, ls_pos, ls_neg, ce, log_q, alpha_t * focal_modulator(gamma, log_q)


def _sfocal_fwd(logits, labels, gamma, alpha):
    *_, ce, _, mod = _sfocal_terms(logits, labels, gamma, alpha)
    return ce * mod, (logits, labels, gamma, alpha)


def _sfocal_bwd(res, g):
    logits, labels, gamma, alpha = res
    x, y, ls_pos, ls_neg, ce, log_q, mod = _sfocal_terms(logits, labels, gamma, alpha)
    # d log(1 - p_t) / dx = (1 - 2y) p (1 - p) / (1 - p_t), of size at most 1; its limit has
    # size 1 where 1 - p_t = 0 (a hard label at a +-inf logit), where the log form is -inf + inf
    saturated = log_q == -jnp.inf
    dlog_q = (1 - 2 * y) * jnp.exp(jnp.where(saturated, 0, ls_pos + ls_neg - log_q))
    # gamma (ce dlog_q), not (gamma ce) dlog_q: gamma ce overflows at logits near 3e38
    dx = mod * (bce_logit_grad(x, y) + gamma * (ce * dlog_q))
    return ((g * dx).astype(logits.dtype), _label_cotangent(labels), zero_cotangent(gamma),
            zero_cotangent(alpha))


sigmoid_focal.defvjp(_sfocal_fwd, _sfocal_bwd)

"""The overlap sums of the segmentation losses (Dice, Tversky), blocked over positions.

For ``(B, S, C)`` logits (``S`` positions, classes last) and targets, the
kernel returns, per example and class, ``I = sum_s p t``, ``P = sum_s p`` and
``T = sum_s t``, with ``p`` the softmax over classes, one sigmoid per class,
or the input itself. It computes in float32 (float64 for x64 inputs) on
blocks of positions, so its float32 temporaries are one block large (and stay
in cache) whatever the dtype of the inputs; the backward keeps the inputs in
their own dtype and the softmax row statistics, and writes the logits'
cotangent ``dp = gI t + gP`` (through the activation) once, block by block.
"""

import functools

import jax
import jax.numpy as jnp

from jloss._core.dtypes import compute_dtype
from jloss.kernels.common import (
    for_each_block,
    from_bfloat16_bits,
    probs,
    row_stats,
    softmax_rel,
    vary_together,
)

#: A block of positions holds about this many elements (B x positions x C).
BLOCK_ELEMENTS = 2**16


def overlap_sums(activation, x, t):
    """``(I, P, T)``, each ``(B, C)`` in the compute dtype, for ``x``, ``t`` of shape ``(B, S, C)``.

    ``activation`` (static): ``"softmax"`` (over the last axis),
    ``"sigmoid"`` or None (``x`` holds the probabilities).
    """
    return _overlap(activation, *vary_together(x, t))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _overlap(activation, x, t):
    return _overlap_fwd(activation, x, t)[0]


def _sliceable(a):
    """``a`` as the loop slices it: bfloat16 as its bits (see :func:`_block`)."""
    return jax.lax.bitcast_convert_type(a, jnp.uint16) if a.dtype == jnp.bfloat16 else a


def _block(a, start, length, dtype):
    """Positions ``[start, start + length)`` of ``a`` (from :func:`_sliceable`) in ``dtype``.

    XLA:CPU moves a ``convert`` of a slice in a loop before the slice: the
    whole bfloat16 input would be widened to float32 before the loop. A slice
    of its bits, widened by a shift, stays one block.
    """
    b = jax.lax.dynamic_slice_in_dim(a, start, length, axis=1)
    return (from_bfloat16_bits(b) if b.dtype == jnp.uint16 else b).astype(dtype)


def _positions(shape):
    """Positions per block."""
    batch, positions, classes = shape
    return max(1, min(positions, BLOCK_ELEMENTS // max(1, batch * classes)))


def _activate(activation, x, m, lse_rel):
    """``p`` of a ``(B, S', C)`` block; ``m``, ``lse_rel`` its softmax row statistics ``(B, S')``."""
    if activation == "softmax":
        rows = x.reshape(-1, x.shape[-1])
        return probs(rows, m.reshape(-1), lse_rel.reshape(-1))[1].reshape(x.shape)
    v = x.astype(compute_dtype(x))
    return jax.nn.sigmoid(v) if activation == "sigmoid" else v


def _overlap_fwd(activation, x, t):
    dtype = compute_dtype(x, t)
    batch, _, classes = x.shape
    xs, ts = _sliceable(x), _sliceable(t)

    def body(carry, start, length):
        sums, m, lse_rel = carry
        xb, tb = _block(xs, start, length, compute_dtype(x)), _block(ts, start, length, dtype)
        if activation == "softmax":
            shifted, mb, lb = row_stats(xb.reshape(-1, classes))
            p = softmax_rel(shifted, lb).reshape(xb.shape)
            m = jax.lax.dynamic_update_slice_in_dim(m, mb.reshape(batch, length), start, axis=1)
            lse_rel = jax.lax.dynamic_update_slice_in_dim(lse_rel, lb.reshape(batch, length), start,
                                                          axis=1)
        else:
            p = _activate(activation, xb, None, None)
        p = p.astype(dtype)
        block_sums = (jnp.sum(p * tb, axis=1), jnp.sum(p, axis=1), jnp.sum(tb, axis=1))
        return tuple(a + b for a, b in zip(sums, block_sums, strict=True)), m, lse_rel

    stats = None
    if activation == "softmax":
        stats = jnp.zeros(x.shape[:2], compute_dtype(x))
        stats = vary_together(stats, x)[0]
    zeros = vary_together(jnp.zeros((batch, classes), dtype), x, t)[0]
    sums, m, lse_rel = for_each_block(x.shape[1], _positions(x.shape), body,
                                      ((zeros, zeros, zeros), stats, stats))
    return sums, (x, t, m, lse_rel)


def _overlap_bwd(activation, res, g):
    x, t, m, lse_rel = res
    g_overlap, g_predicted, g_target = (v[:, None, :] for v in g)
    dtype = g_overlap.dtype
    xs, ts = _sliceable(x), _sliceable(t)

    def body(dx, start, length):
        stats = (None, None) if m is None else (_block(m, start, length, m.dtype),
                                                _block(lse_rel, start, length, m.dtype))
        p = _activate(activation, _block(xs, start, length, compute_dtype(x)), *stats).astype(dtype)
        dp = g_overlap * _block(ts, start, length, dtype) + g_predicted
        if activation == "softmax":
            dxb = p * (dp - jnp.sum(p * dp, axis=-1, keepdims=True))
        elif activation == "sigmoid":
            dxb = p * (1 - p) * dp
        else:
            dxb = dp
        return jax.lax.dynamic_update_slice_in_dim(dx, dxb.astype(x.dtype), start, axis=1)

    dx = for_each_block(x.shape[1], _positions(x.shape), body, jnp.zeros_like(x))
    # elementwise, outside the loop: XLA drops it when only the logits' gradient is taken
    p = _activate(activation, x, m, lse_rel).astype(dtype)
    return dx, (g_overlap * p + g_target).astype(t.dtype)


_overlap.defvjp(_overlap_fwd, _overlap_bwd)

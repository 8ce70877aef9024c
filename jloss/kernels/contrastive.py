"""The sigmoid contrastive (SigLIP) loss: pairwise terms, and a ring over devices with a closed-form backward.

Sharded over a mesh axis, every device holds a block of the rows of ``x``
and ``y``. The loss of a row of ``x`` needs every row of ``y``, so the blocks
of ``y`` travel round the ring of devices (``jax.lax.ppermute``): a device
holds its own block and the one arriving, never the whole matrix. The
backward pass runs the ring again, each block travelling with the gradient
accumulated for it, and the gradients arrive home after a full turn; no
per-step residuals are kept.
"""

import functools

import jax
import jax.numpy as jnp

from jloss.kernels.common import vary_together


def pair_losses(x, y, keep, t, b, diagonal):
    """``-log sigmoid(z_ij (t x_i . y_j + b))`` summed over the columns ``j`` that ``keep``.

    x (n, D), y (m, D), keep (m,) 0 / 1; z = +1 on the diagonal when ``diagonal``
    (the block of ``y`` is ``x``'s own partners) and -1 elsewhere. Returns (n,).
    """
    u = t * (x @ y.T) + b
    z = _signs(u.shape, diagonal, u.dtype)
    return jnp.sum(jax.nn.softplus(-z * u) * keep[None, :], axis=-1)


def _signs(shape, diagonal, dtype):
    if not diagonal:
        return -jnp.ones(shape, dtype)
    return jnp.where(jnp.eye(*shape, dtype=bool), 1, -1).astype(dtype)


def _pair_grads(x, y, keep, t, b, g, diagonal):
    """Cotangents of ``sum_i g_i pair_losses(...)_i`` for x, y, t and b."""
    s = x @ y.T
    u = t * s + b
    z = _signs(u.shape, diagonal, u.dtype)
    a = g[:, None] * keep[None, :] * -z * jax.nn.sigmoid(-z * u)  # d loss / d u
    return t * (a @ y), t * (a.T @ x), jnp.sum(a * s), jnp.sum(a)


def _ring(axis_name):
    size = jax.lax.axis_size(axis_name)
    return size, [(i, (i + 1) % size) for i in range(size)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def ring_sigmoid_losses(x, y, keep, t, b, axis_name):
    """Per local row of ``x``, its SigLIP loss against the rows of ``y`` on every device of
    ``axis_name`` (run inside ``shard_map`` / ``pmap``); ``keep`` marks the counted rows of ``y``.

    x, y (n, D) the local blocks (L2-normalised), keep (n,) 0 / 1, t and b scalars.
    Returns (n,). Custom VJP: no forward-mode autodiff.
    """
    return _ring_fwd(x, y, keep, t, b, axis_name)[0]


def _ring_fwd(x, y, keep, t, b, axis_name):
    size, perm = _ring(axis_name)
    own = pair_losses(x, y, keep, t, b, diagonal=True)

    def visit(_, carry):
        blk, blk_keep, acc = carry
        blk, blk_keep = jax.lax.ppermute((blk, blk_keep), axis_name, perm)
        return blk, blk_keep, acc + pair_losses(x, blk, blk_keep, t, b, diagonal=False)

    _, _, loss = jax.lax.fori_loop(1, size, visit, (y, keep, own))
    return loss, (x, y, keep, t, b)


def _ring_bwd(axis_name, res, g):
    x, y, keep, t, b = res
    size, perm = _ring(axis_name)
    dx, dy, dt, db = _pair_grads(x, y, keep, t, b, g, diagonal=True)

    def visit(_, carry):
        # the block and the gradient gathered for it travel on together; after the last
        # step one more hop brings each gradient home to its block's device
        blk, blk_keep, blk_grad, dx, dt, db = carry
        blk, blk_keep, blk_grad = jax.lax.ppermute((blk, blk_keep, blk_grad), axis_name, perm)
        gx, gy, gt, gb = _pair_grads(x, blk, blk_keep, t, b, g, diagonal=False)
        return blk, blk_keep, blk_grad + gy, dx + gx, dt + gt, db + gb

    _, _, dy, dx, dt, db = jax.lax.fori_loop(1, size, visit, (y, keep, dy, dx, dt, db))
    dy = jax.lax.ppermute(dy, axis_name, perm)
    return dx, dy, jnp.zeros_like(keep), dt, db


ring_sigmoid_losses.defvjp(_ring_fwd, _ring_bwd)


def sigmoid_losses(x, y, keep, t, b, axis_name):
    """Per row of ``x``, ``sum_j keep_j -log sigmoid(z_ij (t x_i . y_j + b))``: over the local
    rows of ``y``, or round the ring of ``axis_name``."""
    if axis_name is None:
        return pair_losses(x, y, keep, t, b, diagonal=True)
    x, y, keep, t, b = vary_together(x, y, keep, t, b)
    return ring_sigmoid_losses(x, y, keep, t, b, axis_name)

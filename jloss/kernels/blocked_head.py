"""The vocabulary-blocked kernel of the fused output head (:func:`jloss.linear_cross_entropy`).

:func:`blocked_head_ce` computes, per row, the sparse softmax cross-entropy of
``x = softcap((hidden @ weight + bias) / temperature)`` without ever holding
the ``(N, V)`` logits:

* forward: the vocabulary is cut into blocks of ``block`` classes (columns of
  ``weight``). Each block's logits give partial statistics (max, sum of
  exponentials, label logit and, as needed, the sums of label smoothing and of
  the entropy), which are merged online (:func:`_combine`);
* backward (``jax.custom_vjp``): a second pass recomputes each block's logits,
  forms the closed-form cotangent ``softmax - target`` of that block
  (:func:`jloss.kernels.softmax.sparse_ce_grad`, the code of the dense kernel),
  writes that block of ``dweight`` / ``dbias`` in place and accumulates
  ``dhidden`` in float32.

Blocks are ``jax.lax.dynamic_slice_in_dim`` views of ``weight`` inside a
``fori_loop`` (a remainder of ``V % block`` classes is a static slice), so
``weight`` is never padded or copied. When the rows are many the rows are cut
into chunks too (:func:`row_block_size`), so the scratch memory is a few
``(rows, block)`` tiles plus ``(N, D)``: it grows neither with V nor, per tile,
with N.

Vocabulary parallelism (``vocab_axis``, inside ``jax.shard_map``): ``weight``
is this device's consecutive ``(D, V / M)`` slice and the labels are global
ids. Each device builds the statistics of its slice; they are merged with one
``pmax`` and ``psum`` over ``O(rows)`` values (Megatron-LM's vocab-parallel
cross-entropy); the backward keeps ``dweight`` local and sums the
``(N, D)`` hidden-state cotangent over the axis. The weight is never gathered.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jloss._core.dtypes import compute_dtype
from jloss.kernels.common import (
    for_each_block,
    int_cotangent,
    softmax_rel,
    vary_together,
    varying_axes,
    zero_cotangent,
)
from jloss.kernels.softmax import sparse_ce_from_stats, sparse_ce_grad

#: ``block_size=None`` keeps one ``(N, block)`` float32 tile of logits within
#: this many bytes (see :func:`default_block_size`); rows are cut into chunks so
#: that a ``(rows, block)`` tile stays within it (see :func:`row_block_size`).
TILE_BUDGET_BYTES = 4 * 2**20
MIN_BLOCK = 256
MAX_BLOCK = 4096
BLOCK_MULTIPLE = 128
ROW_MULTIPLE = 8


def default_block_size(num_rows, vocab_size):
    """The vocabulary block used when ``block_size=None``.

    Rule: the largest multiple of 128 whose ``(num_rows, block)`` float32 tile
    of logits fits in :data:`TILE_BUDGET_BYTES` (4 MiB), clamped to
    ``[256, 4096]``, and never more than ``vocab_size`` (a vocabulary of at
    most 256 classes is a single block). Big blocks keep the matmuls
    efficient; a bounded tile keeps the scratch memory small and the
    elementwise work in cache. For N = 2048 rows this gives 512. Under
    vocabulary parallelism both sizes are per device.
    """
    rows = max(int(num_rows), 1)
    block = TILE_BUDGET_BYTES // (4 * rows) // BLOCK_MULTIPLE * BLOCK_MULTIPLE
    block = min(max(block, MIN_BLOCK), MAX_BLOCK)
    return max(min(block, int(vocab_size)), 1)


def row_block_size(num_rows, block):
    """Rows processed at once: all of them while a ``(num_rows, block)`` float32 tile
    fits in :data:`TILE_BUDGET_BYTES`, else the largest multiple of 8 rows that fits
    (at least 8). At N = 65,536 rows and the 256-class block this gives 4,096.
    """
    rows = max(int(num_rows), 1)
    if rows * block * 4 <= TILE_BUDGET_BYTES:
        return rows
    return max(TILE_BUDGET_BYTES // (4 * block) // ROW_MULTIPLE * ROW_MULTIPLE, ROW_MULTIPLE)


class HeadConfig(NamedTuple):
    """Static configuration of :func:`blocked_head_ce`."""

    block: int  # classes per vocabulary block
    rows: int  # rows per chunk (>= N: one chunk)
    smoothing_on: bool  # label-smoothing sums are built
    stats_on: bool  # entropy and argmax are built (return_stats)
    vocab_axis: object = None  # the shard_map axis ``weight`` is sharded over along V


# ------------------------------------------------------------ iteration


def _scan_rows(fn, carry, rows, *arrays):
    """``carry, out = fn(carry, *chunks)`` over chunks of ``rows`` rows of each array.

    Per-row outputs (a pytree of ``(rows, ...)`` arrays) are concatenated back
    to ``(N, ...)``. One chunk: ``fn`` is called once, without a loop.
    """
    n = arrays[0].shape[0]
    if rows >= n:
        return fn(carry, *arrays)
    full = n // rows * rows
    split = [a[:full].reshape(n // rows, rows, *a.shape[1:]) for a in arrays]
    carry, out = jax.lax.scan(lambda c, xs: fn(c, *xs), carry, split)
    out = jax.tree.map(lambda o: o.reshape(full, *o.shape[2:]), out)
    if full < n:
        carry, rest = fn(carry, *(a[full:] for a in arrays))
        out = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, rest)
    return carry, out


# ------------------------------------------------------------ statistics


class _Partial(NamedTuple):
    """Per-row statistics of some of the classes, relative to ``ref = safe(m)``.

    ``s = sum exp(x - ref)``; ``ent = sum exp(x - ref) (x - ref)`` (stats only);
    ``mass = sum_{x finite} w_c`` and ``total = sum_{x finite} w_c (x - ref)``
    (smoothing only); ``picked`` the label's logit if it is among these classes,
    else 0; ``best`` the global index of the first largest logit (stats only).
    """

    m: jax.Array
    s: jax.Array
    ent: jax.Array | None
    mass: jax.Array | None
    total: jax.Array | None
    picked: jax.Array
    best: jax.Array | None


def _safe(m):
    """A max usable as a shift: 0 while every logit is -inf."""
    return jnp.where(jnp.isfinite(m), m, 0)


def _rescale(p, ref):
    """``p`` expressed relative to ``ref`` (parts with ``s = 0`` stay exactly 0)."""
    delta = _safe(p.m) - ref
    some = p.s > 0
    scale = jnp.where(some, jnp.exp(jnp.where(some, delta, 0)), 0)
    ent = None if p.ent is None else scale * (p.ent + delta * p.s)
    total = None if p.total is None else p.total + delta * p.mass
    return p._replace(s=scale * p.s, ent=ent, total=total)


def _add(a, b):
    return None if a is None else a + b


def _combine(a, b):
    """The statistics of the union of two disjoint sets of classes."""
    m = jnp.maximum(a.m, b.m)
    ref = _safe(m)
    a, b = _rescale(a, ref), _rescale(b, ref)
    best = None if a.best is None else jnp.where(b.m > a.m, b.best, a.best)
    return _Partial(m, a.s + b.s, _add(a.ent, b.ent), _add(a.mass, b.mass),
                    _add(a.total, b.total), a.picked + b.picked, best)


def _merge_shards(p, axis):
    """The statistics of the whole vocabulary from each device's: O(rows) collectives."""
    m = jax.lax.pmax(p.m, axis)
    p = _rescale(p, _safe(m))
    best = None
    if p.best is not None:
        best = jax.lax.pmin(jnp.where(p.m == m, p.best, jnp.iinfo(p.best.dtype).max), axis)
    s, ent, mass, total, picked = jax.lax.psum((p.s, p.ent, p.mass, p.total, p.picked), axis)
    return _Partial(m, s, ent, mass, total, picked, best)


def _empty(cfg, rows, dtype):
    zeros = jnp.zeros((rows,), dtype)
    return _Partial(jnp.full((rows,), -jnp.inf, dtype), zeros,
                    zeros if cfg.stats_on else None,
                    zeros if cfg.smoothing_on else None, zeros if cfg.smoothing_on else None,
                    zeros, jnp.zeros((rows,), jnp.int32) if cfg.stats_on else None)


def _block_stats(cfg, x, local, w_c, first):
    """Statistics of one ``(rows, B)`` block of logits; ``local`` = label - block start."""
    m = jnp.max(x, axis=1)
    ref = _safe(m)
    shifted = x - ref[:, None]
    e = jnp.exp(shifted)
    inside = (local >= 0) & (local < x.shape[1])
    here = jnp.take_along_axis(x, jnp.clip(local, 0, x.shape[1] - 1)[:, None], axis=1)[:, 0]
    finite = jnp.isfinite(x)
    ent = mass = total = best = None
    if cfg.stats_on:
        ent = jnp.sum(jnp.where(finite, e * shifted, 0), axis=1)
        best = first + jnp.argmax(x, axis=1).astype(jnp.int32)
    if cfg.smoothing_on:
        mass = jnp.sum(jnp.where(finite, w_c, 0), axis=1)
        total = jnp.sum(jnp.where(finite, w_c * shifted, 0), axis=1)
    return _Partial(m, jnp.sum(e, axis=1), ent, mass, total, jnp.where(inside, here, 0), best)


# ------------------------------------------------------------ one block of logits


class Head(NamedTuple):
    """The head's operands; ``temperature`` / ``cap`` / ``bias`` / ``class_weights`` may be None."""

    weight: jax.Array
    bias: jax.Array | None
    class_weights: jax.Array | None
    temperature: jax.Array | None
    cap: jax.Array | None


def _slice(v, start, size, axis=0):
    return None if v is None else jax.lax.dynamic_slice_in_dim(v, start, size, axis=axis)


def _block_logits(head, hidden, start, size, dtype):
    """``(x, tanh(z / cap) or None, w_blk)`` of the classes ``[start, start + size)``."""
    w_blk = _slice(head.weight, start, size, axis=1)
    z = jnp.dot(hidden, w_blk, preferred_element_type=dtype)
    if head.bias is not None:
        z = z + _slice(head.bias, start, size).astype(dtype)
    if head.temperature is not None:
        z = z / head.temperature
    if head.cap is None:
        return z, None, w_blk
    t = jnp.tanh(z / head.cap)
    return head.cap * t, t, w_blk


def _class_weight_block(head, start, size, dtype):
    """``w_c`` of the block as ``(1, B)``, or 1.0 without class weights."""
    if head.class_weights is None:
        return 1.0
    return _slice(head.class_weights, start, size).astype(dtype)[None, :]


def _vocab(cfg, weight):
    """``(offset of this device's classes, global V)``."""
    local = weight.shape[1]
    if cfg.vocab_axis is None:
        return 0, local
    return jax.lax.axis_index(cfg.vocab_axis) * local, local * jax.lax.axis_size(cfg.vocab_axis)


def label_value(vector, labels, vocab_axis):
    """``vector[labels]`` for a ``(V,)`` vector sharded like ``weight`` (global labels)."""
    local = vector.shape[0]
    if vocab_axis is None:
        return vector[labels]
    y = labels - jax.lax.axis_index(vocab_axis) * local
    inside = (y >= 0) & (y < local)
    return jax.lax.psum(jnp.where(inside, vector[jnp.clip(y, 0, local - 1)], 0), vocab_axis)


def _psum(x, axes):
    return jax.lax.psum(x, axes) if axes else x


def _varying_like(tree, *refs):
    """Loop-carry ``tree`` typed as varying along every ``shard_map`` axis ``refs`` vary along."""
    return jax.tree.map(lambda x: vary_together(x, *refs)[0], tree)


# ------------------------------------------------------------ custom VJP


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def blocked_head_ce(cfg, hidden, head, labels, smoothing, z_loss):
    """Per-row sparse CE of ``softcap((hidden @ weight + bias) / temperature)``, and stats.

    ``hidden`` (N, D), ``labels`` (N,) global class ids in range, ``head`` a
    :class:`Head` whose ``weight`` (D, V) is this device's slice of the
    vocabulary under ``cfg.vocab_axis``. Returns ``(loss (N,), stats)``, where
    ``stats`` is None unless ``cfg.stats_on``: a dict of per-row
    ``logsumexp``, ``entropy``, ``argmax`` and ``label_logprob`` that carry
    no gradient.
    """
    return _fwd(cfg, hidden, head, labels, smoothing, z_loss)[0]


def _fwd(cfg, hidden, head, labels, smoothing, z_loss):
    dtype = compute_dtype(hidden, head.weight, head.bias)
    offset, vocab = _vocab(cfg, head.weight)
    local_vocab = head.weight.shape[1]

    def chunk(carry, h, y):
        def body(p, start, size):
            x, _, _ = _block_logits(head, h, start, size, dtype)
            w_c = _class_weight_block(head, start, size, dtype)
            return _combine(p, _block_stats(cfg, x, y - start, w_c, offset + start))

        init = _varying_like(_empty(cfg, h.shape[0], dtype), h, head.weight)
        return carry, for_each_block(local_vocab, cfg.block, body, init)

    _, p = _scan_rows(chunk, None, cfg.rows, hidden, labels - offset)
    if cfg.vocab_axis is not None:
        p = _merge_shards(p, cfg.vocab_axis)
    ref = _safe(p.m)
    lse_rel = jnp.log(p.s)
    w_y = 1.0 if head.class_weights is None else label_value(
        head.class_weights.astype(dtype), labels, cfg.vocab_axis)
    loss = sparse_ce_from_stats(lse_rel, p.picked - ref, ref + lse_rel, w_y, p.mass, p.total,
                                smoothing, z_loss, vocab)
    stats = None
    if cfg.stats_on:
        stats = {"logsumexp": ref + lse_rel, "entropy": lse_rel - p.ent / p.s,
                 "argmax": p.best, "label_logprob": p.picked - ref - lse_rel}
    return (loss, stats), (hidden, head, labels, ref, lse_rel, w_y, p.mass, smoothing, z_loss)


def _bwd(cfg, res, cotangents):
    hidden, head, labels, ref, lse_rel, w_y, mass, smoothing, z_loss = res
    g = cotangents[0]
    weight, bias = head.weight, head.bias
    dtype = compute_dtype(hidden, weight, bias)
    operand = jnp.result_type(hidden, weight)  # the dtype the materialised logits would have
    offset, vocab = _vocab(cfg, weight)
    per_row = (hidden.astype(operand), labels - offset, ref, lse_rel, g.astype(dtype),
               jnp.broadcast_to(jnp.asarray(w_y, dtype), g.shape))
    if mass is not None:
        per_row += (mass,)

    def chunk(carry, h, y, ref, lse_rel, g, w_y, mass=None):
        def body(c, start, size):
            dhidden, dweight, dbias = c
            x, t, w_blk = _block_logits(head, h, start, size, dtype)
            is_label = jnp.arange(size)[None, :] == (y - start)[:, None]
            shifted = x - ref[:, None]
            finite = jnp.isfinite(shifted) if cfg.smoothing_on else None
            dx = sparse_ce_grad(softmax_rel(shifted, lse_rel), finite, is_label, g, w_y,
                                _class_weight_block(head, start, size, dtype), ref + lse_rel,
                                mass, smoothing, z_loss, vocab)
            if t is not None:
                dx = dx * (1 - t * t)
            if head.temperature is not None:
                dx = dx / head.temperature
            dz = dx.astype(operand)
            dw_blk = _psum(jax.lax.dot_general(h, dz, (((0,), (0,)), ((), ())),
                                               preferred_element_type=dtype), token_axes)
            dweight = jax.lax.dynamic_update_slice_in_dim(
                dweight, (_slice(dweight, start, size, axis=1) + dw_blk).astype(weight.dtype),
                start, axis=1)
            if dbias is not None:
                db_blk = _slice(dbias, start, size) + _psum(jnp.sum(dx, axis=0), token_axes)
                dbias = jax.lax.dynamic_update_slice_in_dim(dbias, db_blk.astype(bias.dtype),
                                                            start, axis=0)
            dhidden = dhidden + jax.lax.dot_general(dz, w_blk.astype(operand),
                                                    (((1,), (1,)), ((), ())),
                                                    preferred_element_type=dtype)
            return dhidden, dweight, dbias

        init = (_varying_like(jnp.zeros((h.shape[0], weight.shape[0]), dtype), h, weight), *carry)
        dhidden, dweight, dbias = for_each_block(weight.shape[1], cfg.block, body, init)
        return (dweight, dbias), dhidden

    # mesh axes the tokens are sharded over but the weight is not (data parallelism): each
    # block of dweight / dbias is summed over them as it is made, so no V-sized buffer waits
    # for one large reduction
    token_axes = tuple(sorted(varying_axes(hidden) - varying_axes(weight)))
    init = (jnp.zeros_like(weight), None if bias is None else jnp.zeros_like(bias))
    (dweight, dbias), dhidden = _scan_rows(chunk, init, cfg.rows, *per_row)
    if cfg.vocab_axis is not None:
        # every device holds a partial sum over its classes; a hidden state that is typed as
        # varying along the axis keeps that type
        dhidden = vary_together(jax.lax.psum(dhidden, cfg.vocab_axis), hidden)[0]
    dhead = Head(dweight, dbias, zero_cotangent(head.class_weights),
                  zero_cotangent(head.temperature), zero_cotangent(head.cap))
    return (dhidden.astype(hidden.dtype), dhead, int_cotangent(labels),
            zero_cotangent(smoothing), zero_cotangent(z_loss))


blocked_head_ce.defvjp(_fwd, _bwd)


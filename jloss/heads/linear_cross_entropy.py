"""Fused output head + cross-entropy for large vocabularies.

:func:`linear_cross_entropy` computes
``sparse_categorical_cross_entropy(softcap(hidden @ weight + bias), labels)``
without ever holding the ``(..., V)`` logits. The vocabulary is cut into
blocks of ``block_size`` classes (columns of ``weight``):

* forward: one pass over the blocks builds, per example, the logsumexp
  online (running max and running sum of exponentials, in float32), the
  label's logit (taken in the block that holds it) and, with label smoothing,
  the number and the sum of the finite logits;
* backward (``jax.custom_vjp``): a second pass recomputes each block's
  logits, forms the closed-form cotangent ``softmax - target`` of that block
  (:func:`jloss.kernels.sparse_ce_grad`, the same code as the dense kernel),
  writes that block of ``dweight`` / ``dbias`` in place, and accumulates
  ``dhidden`` in float32.

The blocks are ``jax.lax.dynamic_slice_in_dim`` views of ``weight`` inside a
``fori_loop`` (a remainder block of ``V % block_size`` classes is a separate
static slice), so ``weight`` is never padded or copied and the scratch memory
is a few ``(N, block_size)`` tiles plus ``(N, D)``: it does not grow with V.
The backward does four matmuls' worth of work (the forward's logits are
recomputed) where the materialised path does three, but it never writes or
reads a ``(N, V)`` array; see ``benchmarks/linear_cross_entropy.py``.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jloss._core import checks
from jloss._core.dtypes import compute_dtype
from jloss._core.layout import label_mask, sparse_rows
from jloss._core.reduce import reduce_loss
from jloss.kernels.common import softmax_rel, vary_together, zero_cotangent
from jloss.kernels.softmax import sparse_ce_from_stats, sparse_ce_grad

#: ``block_size=None`` keeps one ``(N, block)`` float32 tile of logits within
#: this many bytes (see :func:`default_block_size`).
TILE_BUDGET_BYTES = 4 * 2**20
MIN_BLOCK = 256
MAX_BLOCK = 4096
BLOCK_MULTIPLE = 128


def default_block_size(num_rows, vocab_size):
    """The vocabulary block used when ``block_size=None``.

    Rule: the largest multiple of 128 whose ``(num_rows, block)`` float32 tile
    of logits fits in :data:`TILE_BUDGET_BYTES` (4 MiB), clamped to
    ``[256, 4096]``, and never more than ``vocab_size`` (a vocabulary of at
    most 256 classes is a single block). Big blocks keep the matmuls
    efficient; a bounded tile keeps the scratch memory small and the
    elementwise work in cache. For N = 2048 rows this gives 512.
    """
    rows = max(int(num_rows), 1)
    block = TILE_BUDGET_BYTES // (4 * rows) // BLOCK_MULTIPLE * BLOCK_MULTIPLE
    block = min(max(block, MIN_BLOCK), MAX_BLOCK)
    return max(min(block, int(vocab_size)), 1)


class _Config(NamedTuple):
    block: int
    smoothing_on: bool
    softcap_on: bool


# ------------------------------------------------------------ the blocks


def _safe_max(m):
    """A running max usable as a shift: 0 while every logit so far is -inf."""
    return jnp.where(jnp.isfinite(m), m, 0)


def _for_each_block(block, weight, bias, body, carry):
    """``carry = body(carry, w_blk, b_blk, start)`` over the vocabulary blocks.

    Full blocks run in a ``fori_loop`` on dynamic slices of ``weight`` (no
    copy of ``weight``); the ``V % block`` remainder is one static slice.
    """
    vocab = weight.shape[1]
    full, rest = divmod(vocab, block)

    def step(j, carry):
        start = j * block
        w_blk = jax.lax.dynamic_slice_in_dim(weight, start, block, axis=1)
        b_blk = None if bias is None else jax.lax.dynamic_slice_in_dim(bias, start, block)
        return body(carry, w_blk, b_blk, start)

    if full == 1:
        carry = step(0, carry)
    elif full > 1:
        carry = jax.lax.fori_loop(0, full, step, carry)
    if rest:
        start = full * block
        carry = body(carry, weight[:, start:], None if bias is None else bias[start:], start)
    return carry


def _block_logits(cfg, hidden, w_blk, b_blk, cap, dtype):
    """Logits of one block in the compute dtype, and ``tanh(z / cap)`` with softcap."""
    z = jnp.dot(hidden, w_blk, preferred_element_type=dtype)
    if b_blk is not None:
        z = z + b_blk.astype(dtype)
    if not cfg.softcap_on:
        return z, None
    t = jnp.tanh(z / cap)
    return cap * t, t


# ------------------------------------------------------------ custom VJP


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused_ce(cfg, hidden, weight, bias, labels, smoothing, z_loss, cap):
    """Per-example sparse CE of ``softcap(hidden @ weight + bias)``; (N, D) rows, (N,) labels."""
    return _fused_fwd(cfg, hidden, weight, bias, labels, smoothing, z_loss, cap)[0]


def _fused_fwd(cfg, hidden, weight, bias, labels, smoothing, z_loss, cap):
    dtype = compute_dtype(hidden, weight, bias)
    vocab = weight.shape[1]

    def body(carry, w_blk, b_blk, start):
        m, s, picked, count, shifted_sum = carry
        x, _ = _block_logits(cfg, hidden, w_blk, b_blk, cap, dtype)
        m_new = jnp.maximum(m, jnp.max(x, axis=1))
        ref_old, ref_new = _safe_max(m), _safe_max(m_new)
        s = s * jnp.exp(m - ref_new) + jnp.sum(jnp.exp(x - ref_new[:, None]), axis=1)
        local = labels - start
        inside = (local >= 0) & (local < x.shape[1])
        here = jnp.take_along_axis(x, jnp.clip(local, 0, x.shape[1] - 1)[:, None], axis=1)[:, 0]
        picked = jnp.where(inside, here, picked)
        if cfg.smoothing_on:
            finite = jnp.isfinite(x)
            shifted_sum = (shifted_sum + count * (ref_old - ref_new)
                           + jnp.sum(jnp.where(finite, x - ref_new[:, None], 0), axis=1))
            count = count + jnp.sum(finite, axis=1, dtype=dtype)
        return m_new, s, picked, count, shifted_sum

    zeros = jnp.zeros_like(labels, dtype)
    init = (jnp.full_like(labels, -jnp.inf, dtype), zeros, zeros, zeros, zeros)
    m, s, picked, count, shifted_sum = _for_each_block(cfg.block, weight, bias, body, init)
    ref = _safe_max(m)
    lse_rel = jnp.log(s)
    lse = ref + lse_rel
    if not cfg.smoothing_on:
        count = shifted_sum = None
    loss = sparse_ce_from_stats(lse_rel, picked - ref, lse, 1.0, count, shifted_sum,
                                        smoothing, z_loss, vocab)
    return loss, (hidden, weight, bias, labels, ref, lse_rel, count, smoothing, z_loss, cap)


def _fused_bwd(cfg, res, g):
    hidden, weight, bias, labels, ref, lse_rel, count, smoothing, z_loss, cap = res
    dtype = compute_dtype(hidden, weight, bias)
    operand = jnp.result_type(hidden, weight)  # the dtype the materialised logits would have
    vocab = weight.shape[1]
    g = g.astype(dtype)
    hidden_op = hidden.astype(operand)  # a no-op unless hidden and weight dtypes differ

    def body(carry, w_blk, b_blk, start):
        dhidden, dweight, dbias = carry
        x, t = _block_logits(cfg, hidden, w_blk, b_blk, cap, dtype)
        is_label = jnp.arange(x.shape[1])[None, :] == (labels - start)[:, None]
        shifted = x - ref[:, None]
        finite = jnp.isfinite(shifted) if cfg.smoothing_on else None
        dx = sparse_ce_grad(softmax_rel(shifted, lse_rel), finite, is_label, g,
                                    1.0, 1.0, ref + lse_rel, count, smoothing, z_loss, vocab)
        if cfg.softcap_on:
            dx = dx * (1 - t * t)
        dz = dx.astype(operand)
        dw_blk = jax.lax.dot_general(hidden_op, dz, (((0,), (0,)), ((), ())),
                                     preferred_element_type=dtype)
        dweight = jax.lax.dynamic_update_slice_in_dim(
            dweight, dw_blk.astype(weight.dtype), start, axis=1)
        if dbias is not None:
            dbias = jax.lax.dynamic_update_slice_in_dim(
                dbias, jnp.sum(dx, axis=0).astype(bias.dtype), start, axis=0)
        dhidden = dhidden + jax.lax.dot_general(dz, w_blk.astype(operand),
                                                (((1,), (1,)), ((), ())),
                                                preferred_element_type=dtype)
        return dhidden, dweight, dbias

    init = (jnp.zeros_like(hidden, dtype), jnp.zeros_like(weight),
            None if bias is None else jnp.zeros_like(bias))
    dhidden, dweight, dbias = _for_each_block(cfg.block, weight, bias, body, init)
    return (dhidden.astype(hidden.dtype), dweight, dbias,
            np.zeros(labels.shape, dtype=jax.dtypes.float0),
            zero_cotangent(smoothing), zero_cotangent(z_loss), zero_cotangent(cap))


_fused_ce.defvjp(_fused_fwd, _fused_bwd)


# ------------------------------------------------------------ public API


def linear_cross_entropy(hidden, weight, labels, *, bias=None, block_size=None,
                         ignore_index=None, label_smoothing=0.0, z_loss=0.0,
                         logit_softcap=None, weights=None, where=None, reduction="mean"):
    """Output projection + sparse softmax cross-entropy, never materialising the logits.

    Equal in value and gradient (for ``hidden``, ``weight`` and ``bias``) to::

        logits = hidden @ weight + bias
        if logit_softcap: logits = logit_softcap * tanh(logits / logit_softcap)
        sparse_categorical_cross_entropy(logits, labels, ignore_index=..., label_smoothing=...,
                                         z_loss=..., weights=..., where=..., reduction=...)

    i.e. per example, with ``C = V`` classes and ``x`` the (capped) logits,
    ``(1 - s)(-log p_y) + (s / C) sum_{c: x_c finite} (-log p_c) + z lse(x)^2``,
    but the ``(..., V)`` logits never exist: the vocabulary is processed in
    blocks of ``block_size`` classes, a ``jax.custom_vjp`` recomputes each
    block's logits in the backward pass, and the scratch memory grows with
    ``block_size`` and the number of rows, not with V. Use it for the last
    layer of a language model (large vocabularies), where the logits take most
    of the activation memory.

    Args:
      hidden: (..., D) float activations (the input of the output layer).
      weight: (D, V) float output projection (the Flax ``Dense`` kernel layout;
        pass a tied embedding table (V, D) as ``table.T``).
      labels: integer (...) class indices in [0, V), the shape of ``hidden``
        without its last axis.
      bias: (V,) or None. A -inf bias entry masks that class (without softcap).
      block_size: classes per block (a Python int), or None for
        :func:`default_block_size`: the largest multiple of 128 that keeps a
        (N, block) float32 tile within 4 MiB, clamped to [256, 4096] and to V.
        V need not be a multiple of it.
      ignore_index: label value that is masked out (and never value-checked).
      label_smoothing: s in [0, 1]. z_loss: z >= 0 (PaLM).
      logit_softcap: c > 0 applies ``c * tanh(x / c)`` to the logits (Gemma 2)
        and differentiates through it; None (default) for no cap.
      weights, where, reduction: see the package convention; ``"mean"`` divides
        by the (weighted) number of counted examples.

    Returns: float32 loss (float64 for x64 inputs), scalar or ``labels.shape``
      for ``"none"``. Gradients come back in the dtype of each input;
      bfloat16 / float16 inputs are multiplied with float32 accumulation and
      every statistic (logsumexp, ``dhidden``) is kept in float32.
    Raises: ValueError on bad shapes or options, TypeError on integer
      ``hidden`` / ``weight`` or float labels, LossInputError (eager calls)
      on labels outside [0, V).
    Custom VJP: no forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``).
    References: Wijmans et al., "Cut Your Losses in Large-Vocabulary Language
      Models" (2024); Liger-Kernel's fused linear cross-entropy; PyTorch
      ``cross_entropy``.
    """
    hidden, weight, labels, bias, weights, where = checks.array_likes(
        hidden, weight, labels, bias, weights, where)
    checks.check_float(hidden=hidden, weight=weight)
    if bias is not None:
        checks.check_float(bias=bias)
    h_shape, w_shape = jnp.shape(hidden), jnp.shape(weight)
    checks.check_rank("hidden", hidden, max(len(h_shape), 1), "(..., D)")
    if h_shape[-1] == 0:
        raise ValueError(f"hidden has shape {h_shape}: its feature axis D is empty")
    if len(w_shape) != 2 or w_shape[0] != h_shape[-1]:
        raise ValueError(
            f"weight has shape {w_shape} but hidden {h_shape} needs shape ({h_shape[-1]}, V) "
            "(pass a tied embedding table of shape (V, D) as table.T)"
        )
    vocab = w_shape[1]
    if vocab < 1:
        raise ValueError(f"weight has shape {w_shape}: the vocabulary V must not be empty")
    if bias is not None:
        checks.check_shape("bias", bias, (vocab,), f"weight with {vocab} classes")
    loss_shape = h_shape[:-1]
    checks.check_integer(labels=labels)
    checks.check_shape("labels", labels, loss_shape, f"hidden {h_shape} without its last axis")
    checks.check_convention(reduction, weights, where, loss_shape)
    checks.check_range("label_smoothing", label_smoothing, low=0, high=1, shape=())
    checks.check_range("z_loss", z_loss, low=0, shape=())
    checks.check_range("logit_softcap", logit_softcap, low=0, low_open=True, shape=())
    ignore_index = checks.optional_int("ignore_index", ignore_index)
    if block_size is None:
        block = default_block_size(int(np.prod(loss_shape)), vocab)
    else:
        block = min(checks.check_int("block_size", block_size, low=1), vocab)
    mask = label_mask(labels, ignore_index, where, loss_shape)
    checks.check_class_labels(labels, vocab, mask)
    return _linear_ce(hidden, weight, bias, labels, label_smoothing, z_loss, logit_softcap,
                      weights, where, block=block, ignore_index=ignore_index,
                      smoothing_on=not checks.is_zero(label_smoothing), reduction=reduction)


@functools.partial(jax.jit, static_argnames=("block", "ignore_index", "smoothing_on",
                                             "reduction"))
def _linear_ce(hidden, weight, bias, labels, smoothing, z_loss, softcap, weights, where, *,
               block, ignore_index, smoothing_on, reduction):
    vocab = weight.shape[1]
    h, y, valid, mask = sparse_rows(hidden, labels, where, ignore_index, -1, 0, num_classes=vocab)
    dtype = compute_dtype(hidden, weight, bias)
    cfg = _Config(block=block, smoothing_on=smoothing_on, softcap_on=softcap is not None)
    cap = None if softcap is None else jnp.asarray(softcap, dtype)
    h, weight, bias, y = vary_together(h, weight, bias, y)
    loss = _fused_ce(cfg, h, weight, bias, y, jnp.asarray(smoothing, dtype),
                     jnp.asarray(z_loss, dtype), cap)
    loss = jnp.where(valid, loss, jnp.nan).reshape(labels.shape)
    return reduce_loss(loss, mask, weights, reduction)

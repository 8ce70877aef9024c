"""The vocabulary-blocked kernel of the distillation heads (:mod:`jloss.heads.distillation`).

:func:`blocked_divergence` computes, per row, a divergence between the
softmaxes of two linear heads, ``a = (hidden_a @ weight_a + bias_a) / T`` and
``b = (hidden_b @ weight_b + bias_b) / T`` (the two hidden sizes may differ,
the vocabulary is shared), without ever holding either ``(N, V)`` logits:

* ``kind="kl"``: ``KL(p_a || p_b) = sum p_a (log p_a - log p_b)``. One forward
  pass over vocabulary blocks keeps, per row, the running max and sum of
  exponentials of both heads and ``sum exp(a - max_a) (a - b)``, rescaled
  online when a max grows: ``KL = acc / s_a - lse_a + lse_b``.
* ``kind="jsd"``: the generalised Jensen-Shannon divergence
  ``beta KL(p_a || m) + (1 - beta) KL(p_b || m)``, ``m = beta p_a + (1 - beta) p_b``.
  ``log m`` needs both normalisers, so a first pass takes the two logsumexps
  and a second the two KL terms.

The backward (``jax.custom_vjp``) recomputes each block's logits and forms the
closed-form cotangents: for KL ``da = p_a (log p_a - log p_b - KL)`` and
``db = p_b - p_a``; for JSD ``da = beta p_a (log p_a - log m - KL(p_a || m))``
and ``db = (1 - beta) p_b (log p_b - log m - KL(p_b || m))``. Each block
writes its columns of both ``dweight`` (and ``dbias``) and accumulates both
``dhidden`` in the compute dtype. Under ``jax.jit`` a head whose gradient is
not used (a teacher under ``jax.lax.stop_gradient``) has its gradient work
removed as dead code.

Vocabulary parallelism (``vocab_axis``, inside ``jax.shard_map``): both weights
are this device's consecutive ``(D, V / M)`` slices. Per-row statistics are
merged with one ``pmax`` and one ``psum`` over ``O(rows)`` values; ``dweight``
stays local and the ``(N, D)`` hidden-state cotangents are summed over the axis.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jloss._core.dtypes import compute_dtype
from jloss.kernels.common import for_each_block, vary_together, varying_axes, zero_cotangent


class DivergenceConfig(NamedTuple):
    """Static configuration of :func:`blocked_divergence`."""

    kind: str  # "kl" or "jsd"
    block: int  # classes per vocabulary block
    vocab_axis: object = None  # the shard_map axis both weights are sharded over along V


class LinearHead(NamedTuple):
    """One head's operands: ``hidden`` (N, D), ``weight`` (D, V), ``bias`` (V,) or None."""

    hidden: jax.Array
    weight: jax.Array
    bias: jax.Array | None


def _logits(head, start, size, temperature, dtype):
    """``(z, weight block)`` of the classes ``[start, start + size)`` of ``head``."""
    w = jax.lax.dynamic_slice_in_dim(head.weight, start, size, axis=1)
    z = jnp.dot(head.hidden, w, preferred_element_type=dtype)
    if head.bias is not None:
        z = z + jax.lax.dynamic_slice_in_dim(head.bias, start, size).astype(dtype)
    if temperature is not None:
        z = z / temperature
    return z, w


def _safe(m):
    return jnp.where(jnp.isfinite(m), m, 0)


def _scale(m, new_m):
    """``exp(m - new_m)`` (``new_m >= m``): the factor that re-bases sums kept relative to ``m``."""
    return jnp.where(m == -jnp.inf, 0, jnp.exp(m - _safe(new_m)))


def _merge(a, b):
    """Online merge of ``(m, sums)`` pairs whose sums are relative to ``exp(m)``."""
    m = jnp.maximum(a[0], b[0])
    sa, sb = _scale(a[0], m), _scale(b[0], m)
    return m, tuple(sa * x + sb * y for x, y in zip(a[1], b[1], strict=True))


def _merge_shards(stats, axis):
    """The whole vocabulary's ``(m, sums)`` from each device's: one pmax, one psum."""
    m = jax.lax.pmax(stats[0], axis)
    s = _scale(stats[0], m)
    return m, jax.lax.psum(tuple(s * x for x in stats[1]), axis)


def _block_sums(z, extra=None):
    """``(max, (sum exp(z - max), [sum exp(z - max) extra]))`` of one block, per row."""
    m = jnp.max(z, axis=1)
    e = jnp.exp(z - _safe(m)[:, None])
    sums = (jnp.sum(e, axis=1),)
    if extra is not None:
        sums += (jnp.sum(jnp.where(e > 0, e * extra, 0), axis=1),)
    return m, sums


def _lse(m, s):
    return _safe(m) + jnp.log(s)


def _xlogy_ratio(p, log_p, log_q):
    """``p (log p - log q)``, 0 where ``p = 0``."""
    return jnp.where(p > 0, p * (log_p - log_q), 0)


def _mixture_log(log_pa, log_pb, beta):
    """``log(beta p_a + (1 - beta) p_b)``."""
    return jnp.logaddexp(log_pa + jnp.log(beta), log_pb + jnp.log1p(-beta))


def _init(rows, dtype, *refs):
    inf = jnp.full((rows,), -jnp.inf, dtype)
    zero = jnp.zeros((rows,), dtype)
    return jax.tree.map(lambda x: vary_together(x, *refs)[0], (inf, (zero, zero)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def blocked_divergence(cfg, a, b, temperature, beta):
    """Per-row divergence of the softmaxes of heads ``a`` and ``b`` (:class:`LinearHead`), (N,).

    ``temperature`` (a scalar or None for 1) divides both heads' logits;
    ``beta`` (a scalar, ``kind="jsd"`` only) is the weight of ``p_a`` in the mixture.
    """
    return _fwd(cfg, a, b, temperature, beta)[0]


def _fwd(cfg, a, b, temperature, beta):
    dtype = compute_dtype(a.hidden, a.weight, a.bias, b.hidden, b.weight, b.bias)
    rows, local_vocab = a.hidden.shape[0], a.weight.shape[1]
    refs = (a.hidden, a.weight, b.hidden, b.weight)

    def merged(stats):
        return stats if cfg.vocab_axis is None else _merge_shards(stats, cfg.vocab_axis)

    if cfg.kind == "kl":
        def body(c, start, size):
            za, _ = _logits(a, start, size, temperature, dtype)
            zb, _ = _logits(b, start, size, temperature, dtype)
            (ma, (sa, acc)), (mb, (sb,)) = c
            return (_merge((ma, (sa, acc)), _block_sums(za, za - zb)),
                    _merge((mb, (sb,)), _block_sums(zb)))

        ma0, (z0, _) = _init(rows, dtype, *refs)
        (ma, (sa, acc)), (mb, (sb,)) = for_each_block(
            local_vocab, cfg.block, body, ((ma0, (z0, z0)), (ma0, (z0,))))
        ma, (sa, acc) = merged((ma, (sa, acc)))
        mb, (sb,) = merged((mb, (sb,)))
        lse_a, lse_b = _lse(ma, sa), _lse(mb, sb)
        terms = (acc / sa - lse_a + lse_b,)
        loss = terms[0]
    else:
        def lse_body(c, start, size):
            za, _ = _logits(a, start, size, temperature, dtype)
            zb, _ = _logits(b, start, size, temperature, dtype)
            return _merge(c[0], _block_sums(za)), _merge(c[1], _block_sums(zb))

        init = _init(rows, dtype, *refs)
        init = ((init[0], init[1][:1]), (init[0], init[1][:1]))
        (ma, (sa,)), (mb, (sb,)) = for_each_block(local_vocab, cfg.block, lse_body, init)
        (ma, (sa,)), (mb, (sb,)) = merged((ma, (sa,))), merged((mb, (sb,)))
        lse_a, lse_b = _lse(ma, sa), _lse(mb, sb)

        def kl_body(c, start, size):
            za, _ = _logits(a, start, size, temperature, dtype)
            zb, _ = _logits(b, start, size, temperature, dtype)
            log_pa, log_pb = za - lse_a[:, None], zb - lse_b[:, None]
            log_m = _mixture_log(log_pa, log_pb, beta)
            return (c[0] + jnp.sum(_xlogy_ratio(jnp.exp(log_pa), log_pa, log_m), axis=1),
                    c[1] + jnp.sum(_xlogy_ratio(jnp.exp(log_pb), log_pb, log_m), axis=1))

        terms = for_each_block(local_vocab, cfg.block, kl_body, _init(rows, dtype, *refs)[1])
        if cfg.vocab_axis is not None:
            terms = jax.lax.psum(terms, cfg.vocab_axis)
        loss = beta * terms[0] + (1 - beta) * terms[1]
    return loss, (a, b, temperature, beta, lse_a, lse_b, terms)


def _head_grads(head, dz, w_blk, start, carry, token_axes):
    """Add one block's contribution to ``(dhidden, dweight, dbias)`` of ``head``."""
    dhidden, dweight, dbias = carry
    operand = jnp.result_type(head.hidden, head.weight)
    dz_op = dz.astype(operand)
    size = dz.shape[1]
    dw = jax.lax.dot_general(head.hidden, dz_op, (((0,), (0,)), ((), ())),
                             preferred_element_type=dz.dtype)
    if token_axes:
        dw = jax.lax.psum(dw, token_axes)
    old = jax.lax.dynamic_slice_in_dim(dweight, start, size, axis=1)
    dweight = jax.lax.dynamic_update_slice_in_dim(dweight, (old + dw).astype(dweight.dtype), start, axis=1)
    if dbias is not None:
        db = jnp.sum(dz, axis=0)
        if token_axes:
            db = jax.lax.psum(db, token_axes)
        old = jax.lax.dynamic_slice_in_dim(dbias, start, size)
        dbias = jax.lax.dynamic_update_slice_in_dim(dbias, (old + db).astype(dbias.dtype), start, axis=0)
    dhidden = dhidden + jax.lax.dot_general(dz_op, w_blk.astype(operand), (((1,), (1,)), ((), ())),
                                            preferred_element_type=dz.dtype)
    return dhidden, dweight, dbias


def _bwd(cfg, res, g):
    a, b, temperature, beta, lse_a, lse_b, terms = res
    dtype = lse_a.dtype
    scale = g.astype(dtype)[:, None]
    if temperature is not None:
        scale = scale / temperature

    def body(c, start, size):
        ca, cb = c
        za, wa = _logits(a, start, size, temperature, dtype)
        zb, wb = _logits(b, start, size, temperature, dtype)
        log_pa, log_pb = za - lse_a[:, None], zb - lse_b[:, None]
        pa, pb = jnp.exp(log_pa), jnp.exp(log_pb)
        if cfg.kind == "kl":
            da = _xlogy_ratio(pa, log_pa - terms[0][:, None], log_pb)
            db = pb - pa
        else:
            log_m = _mixture_log(log_pa, log_pb, beta)
            da = beta * _xlogy_ratio(pa, log_pa - terms[0][:, None], log_m)
            db = (1 - beta) * _xlogy_ratio(pb, log_pb - terms[1][:, None], log_m)
        return (_head_grads(a, da * scale, wa, start, ca, axes_a),
                _head_grads(b, db * scale, wb, start, cb, axes_b))

    def init(head):
        dh = vary_together(jnp.zeros(head.hidden.shape, dtype), head.hidden, head.weight)[0]
        return dh, jnp.zeros_like(head.weight), None if head.bias is None else jnp.zeros_like(head.bias)

    # mesh axes the tokens are sharded over but a weight is not: its gradient is summed over them
    axes_a = tuple(sorted(varying_axes(a.hidden) - varying_axes(a.weight)))
    axes_b = tuple(sorted(varying_axes(b.hidden) - varying_axes(b.weight)))
    grads = for_each_block(a.weight.shape[1], cfg.block, body, (init(a), init(b)))
    out = []
    for head, (dh, dw, dbias) in zip((a, b), grads, strict=True):
        if cfg.vocab_axis is not None:
            dh = vary_together(jax.lax.psum(dh, cfg.vocab_axis), head.hidden)[0]
        out.append(LinearHead(dh.astype(head.hidden.dtype), dw, dbias))
    return (*out, zero_cotangent(temperature), zero_cotangent(beta))


blocked_divergence.defvjp(_fwd, _bwd)

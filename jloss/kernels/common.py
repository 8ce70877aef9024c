"""Building blocks shared by the custom-VJP kernels: row statistics, casts, cotangent helpers.

Kernels work on 2-D ``(N, C)`` rows (classes last) or elementwise binary
logits and compute in the dtype of :func:`jloss._core.dtypes.compute_dtype`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jloss._core.dtypes import compute_dtype


def int_cotangent(y):
    """The symbolic zero cotangent of an integer operand (labels)."""
    return np.zeros(y.shape, dtype=jax.dtypes.float0)


def zero_cotangent(v):
    """A zero cotangent for a hyperparameter operand (None stays None)."""
    return None if v is None else jnp.zeros_like(v)


def row_max(x):
    """Per-row max in the compute dtype, 0 for an all -inf row.

    Taken in the input dtype, where it is exact: taken on a float32 upcast of
    half-precision logits, XLA would materialise that upcast to share it
    between the max and the exp.
    """
    m = jnp.max(x, axis=-1).astype(compute_dtype(x))
    return jnp.where(jnp.isfinite(m), m, 0)


def row_stats(x):
    """Per-row max ``m``, ``x - m`` and ``log sum exp(x - m)``."""
    m = row_max(x)
    shifted = x.astype(m.dtype) - m[:, None]
    return shifted, m, jnp.log(jnp.sum(jnp.exp(shifted), axis=-1))

def upcast(x):
    """``x`` in the compute dtype, bfloat16 widened through its bits (exact, equal to ``astype``).

    The sparse kernel reads half-precision logits three ways: the forward's
    sum of exponentials, the label gather and the backward. On XLA:CPU the
    sum is fused with its ``convert`` (the logits are read once, nothing is
    written) only while that ``convert`` is the logits' sole float user; the
    other two read through this bit-level widening, which XLA does not merge
    with it. Otherwise XLA writes a float32 (N, C) copy: about 2x slower in
    bfloat16 (``benchmarks/losses.py``).
    """
    if x.dtype == jnp.bfloat16:
        bits = jax.lax.bitcast_convert_type(x, jnp.uint16).astype(jnp.uint32) << 16
        return jax.lax.bitcast_convert_type(bits, jnp.float32)
    return x.astype(compute_dtype(x))



def probs(logits, m, lse_rel):
    """Backward-pass softmax from the saved row stats, relative to the row max."""
    shifted = logits.astype(compute_dtype(logits)) - m[:, None]
    return shifted, softmax_rel(shifted, lse_rel)


def softmax_rel(shifted, lse_rel):
    """``p = exp(shifted - lse_rel)`` from logits relative to the row max, ``shifted = x - m``.

    Never ``exp(x - lse)``: at logits near 1e8, ``lse = m + lse_rel`` rounds
    away its small part.
    """
    return jnp.exp(shifted - lse_rel[:, None])


def picked(a, labels):
    """``a[n, labels[n]]`` for each row."""
    return jnp.take_along_axis(a, labels[:, None], axis=-1)[:, 0]


def is_label(labels, num_classes):
    """The (N, C) boolean mask of each row's label column."""
    return jnp.arange(num_classes)[None, :] == labels[:, None]


def focal_modulator(gamma, log_q):
    """``(1 - p_t)^gamma = exp(gamma log q)``, finite (and 0 for gamma > 0) at ``log q = -inf``."""
    return jnp.exp(gamma * jnp.maximum(log_q, -1e30))


def clamped_log(p):
    """``log(p)`` clamped below at -100 (as PyTorch), with finite gradients at 0."""
    positive = p > 0
    return jnp.where(positive, jnp.maximum(jnp.log(jnp.where(positive, p, 1)), -100.0), -100.0)


# ------------------------------------------------------ shard_map typing


def varying_axes(x):
    """The ``shard_map`` mesh axes along which ``x`` varies (none outside ``shard_map``)."""
    aval = jax.typeof(x)
    manual = getattr(aval, "manual_axis_type", None)  # older jax releases call it ``vma``
    return frozenset(manual.varying if manual is not None else getattr(aval, "vma", ()))


def vary_together(*xs):
    """``xs`` (None allowed), each marked as varying along every mesh axis any of them varies along.

    Inside ``shard_map`` a replicated operand (``pos_weight``, the ``weight``
    of :func:`jloss.linear_cross_entropy`) meets sharded logits or hidden
    states. A custom VJP must return each cotangent with its operand's type,
    but a cotangent computed from sharded data varies per device, and a
    ``fori_loop`` carry must keep one type. Marked varying before the kernel,
    autodiff sums the replicated operands' cotangents across devices itself
    (the transpose of the cast). Kernels whose cotangents for replicated
    operands are zero (class weights, gamma) do not need it. Outside
    ``shard_map`` this is the identity.
    """
    axes = frozenset().union(*(varying_axes(x) for x in xs if x is not None))
    pcast = getattr(jax.lax, "pcast", None)

    def vary(x):
        missing = () if x is None else tuple(sorted(axes - varying_axes(x)))
        if not missing:
            return x
        return pcast(x, missing, to="varying") if pcast else jax.lax.pvary(x, missing)

    return tuple(vary(x) for x in xs)


# ------------------------------------------------------ blocked loops


def for_each_block(total, size, body, carry):
    """``carry = body(carry, start, length)`` over ``[0, total)`` in pieces of ``size``.

    Full pieces run in a ``fori_loop`` (traced ``start``, static ``length``);
    the ``total % size`` remainder is one more piece with a static start.
    """
    full, rest = divmod(total, size)
    if full == 1:
        carry = body(carry, 0, size)
    elif full > 1:
        carry = jax.lax.fori_loop(0, full, lambda j, c: body(c, j * size, size), carry)
    if rest:
        carry = body(carry, full * size, rest)
    return carry

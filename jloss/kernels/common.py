"""Building blocks shared by the custom-VJP kernels: row statistics, casts, cotangent helpers.

Kernels work on 2-D ``(N, C)`` rows (classes last) or elementwise binary
logits and compute in the dtype of :func:`jloss._core.dtypes.compute_dtype`.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from jloss._core.dtypes import compute_dtype


def int_cotangent(y):
    """The symbolic zero cotangent of an integer operand (labels)."""
    return np.zeros(y.shape, dtype=jax.dtypes.float0)


def zero_cotangent(v):
    """A zero cotangent for a hyperparameter operand (None stays None)."""
    return None if v is None else jnp.zeros_like(v)


def row_max(x):
    """Per-row max in the compute dtype: 0 for an all -inf row, the largest finite value for a +inf one.

    Taken in the input dtype, where it is exact: taken on a float32 upcast of
    half-precision logits, XLA would materialise that upcast to share it
    between the max and the exp.
    """
    m = jnp.max(x, axis=-1).astype(compute_dtype(x))
    return jnp.where(jnp.isfinite(m), m, jnp.where(m > 0, jnp.finfo(x.dtype).max, 0))


def relative(x, m):
    """``x - m``, at most 0, for logits ``x`` and their row max ``m`` (broadcast by the caller).

    The clamp is the limit at a +inf logit (whose row max is the largest
    finite value, see :func:`row_max`): it weighs 1 in the softmax (its class gets
    all the probability mass, shared with any other +inf class), so a +inf
    label logit gives the loss 0 and the gradient 0, never ``inf - inf``.
    """
    d = x - m
    return jnp.where(d > 0, 0, d)  # not jnp.minimum, whose derivative is 1/2 at d = 0


def row_stats(x):
    """Per-row max ``m``, ``x - m`` and ``log sum exp(x - m)``."""
    m = row_max(x)
    shifted = relative(x.astype(m.dtype), m[:, None])
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
        return from_bfloat16_bits(jax.lax.bitcast_convert_type(x, jnp.uint16))
    return x.astype(compute_dtype(x))


def from_bfloat16_bits(bits):
    """float32 values of bfloat16 numbers given by their ``uint16`` bits (exact: a shift)."""
    return jax.lax.bitcast_convert_type(bits.astype(jnp.uint32) << 16, jnp.float32)


def probs(logits, m, lse_rel):
    """Backward-pass softmax from the saved row stats, relative to the row max."""
    shifted = relative(logits.astype(compute_dtype(logits)), m[:, None])
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


#: PyTorch's ``binary_cross_entropy`` backward divides by ``max(p (1 - p), 1e-12)``.
LOG_GRAD_EPS = 1e-12


@jax.custom_jvp
def clamped_log(p):
    """``log(p)`` clamped below at -100 (as PyTorch), derivative ``1 / max(p, 1e-12)``.

    The derivative is never the clamp's 0: at ``p = 0`` a probability loss
    gets a large gradient of the right sign, as PyTorch's backward gives
    (it divides by ``max(p (1 - p), 1e-12)``).
    """
    return jnp.maximum(jnp.log(p), -100.0)


@clamped_log.defjvp
def _clamped_log_jvp(primals, tangents):
    (p,), (dp,) = primals, tangents
    return clamped_log(p), dp / jnp.maximum(p, LOG_GRAD_EPS)


#: The checkpoint name of :func:`max_over_classes`'s maxima.
MAXIMA = "jloss_max_over_classes"


@jax.custom_jvp
def max_over_classes(x):
    """``jnp.max(x, axis=-1)``, derivative shared equally over ties (as ``jnp.max``'s).

    Its JVP names the maxima; differentiated under :func:`keep_maxima`, the
    backward keeps them (one value per row) and finds where they are again
    in ``x``, instead of keeping an (N, C) mask (``jnp.max``'s gradient writes
    one, and a float32 copy of it).
    """
    return jnp.max(x, axis=-1)


@max_over_classes.defjvp
def _max_over_classes_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    m = checkpoint_name(max_over_classes(x), MAXIMA)
    at_max = x == m[..., None]
    return m, jnp.sum(jnp.where(at_max, dx, 0), axis=-1) / jnp.sum(at_max, axis=-1, dtype=jnp.int32)


def keep_maxima(fn):
    """``fn`` rematerialised in the backward but for :func:`max_over_classes`'s maxima."""
    return jax.checkpoint(fn, policy=jax.checkpoint_policies.save_only_these_names(MAXIMA))


def times(c, v):
    """``c * v`` with ``0 * v = 0`` for any ``v``: the limit of a term whose weight is 0.

    For terms such as ``(1 - y) softplus(x)`` at ``y = 1``, ``x = +inf``.
    """
    return jnp.where(c == 0, 0, c * v)


def ce_cotangent(g, p, mass, target, lse, z_loss):
    """The softmax cross-entropy cotangent ``g ((mass + 2 z lse) p - target)``, in one pass.

    ``p`` (N, B) the softmax, ``target`` (N, B) or broadcastable the target
    mass per class, ``mass`` (N,) or scalar its total, ``lse`` (N,) the
    logsumexp (the z-loss derivative), ``g`` (N,) the incoming cotangent.
    ``z_loss`` None: no z-loss term. Every softmax CE backward (sparse,
    dense, the vocabulary-blocked head) forms its cotangent here.
    """
    total = mass if z_loss is None else mass + (2 * z_loss) * lse
    return g[:, None] * (jnp.broadcast_to(total, g.shape)[:, None] * p - target)


def with_z_loss(loss, z_loss, lse):
    """``loss + z lse^2`` (``loss`` itself when ``z_loss`` is None).

    Ordered ``(z lse) lse``: finite wherever ``z lse^2`` is, where ``lse^2``
    alone overflows float32 beyond ``lse`` ~ 1.8e19.
    """
    return loss if z_loss is None else loss + (z_loss * lse) * lse


def keep_inputs(fn, *args, cast=False):
    """``fn(*args)``, under ``jax.checkpoint`` when an argument is half precision.

    ``fn`` casts to the compute dtype (or, with ``cast``, receives the floating
    arguments cast to their common compute dtype) and does the loss math;
    differentiated as is, its backward would keep float32 (N, C) arrays (the
    upcast inputs, intermediates) next to the bfloat16 inputs. Rematerialised,
    it keeps the inputs themselves only. float32 / float64 inputs are left to
    XLA, which fuses the backward with the forward's values.
    """
    floats = [a for a in jax.tree_util.tree_leaves(args)
              if a is not None and jnp.issubdtype(a.dtype, jnp.floating)]
    half = any(a.dtype != compute_dtype(a) for a in floats)
    if cast:
        dtype, inner = compute_dtype(*floats), fn

        def fn(*args):
            return inner(*(a.astype(dtype) if a is not None and jnp.issubdtype(a.dtype, jnp.floating)
                           else a for a in args))

    return jax.checkpoint(fn)(*args) if half else fn(*args)


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

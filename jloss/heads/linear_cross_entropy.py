"""Fused output heads for large vocabularies: :func:`linear_cross_entropy` and :func:`linear_log_probs`.

Both compute from ``softcap((hidden @ weight + bias) / temperature)`` without
ever holding the ``(..., V)`` logits: the vocabulary-blocked kernel with its
closed-form backward lives in :mod:`jloss.kernels.blocked_head`; this module
checks the inputs, applies masks, weights and reductions, and places the
computation on a mesh (``vocab_axis``, ``batch_axes``): inside
``jax.shard_map`` it runs on the local shards; under ``jax.jit`` on global
arrays with a mesh set (``jax.set_mesh``) it wraps a ``shard_map`` itself,
with ``weight`` sharded over ``vocab_axis`` along V and the tokens over
``batch_axes``.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from jloss._core import checks
from jloss._core.dtypes import compute_dtype
from jloss._core.layout import check_class_vector, label_mask, sparse_rows
from jloss._core.reduce import reduce_loss
from jloss.heads.options import axis_names, static_temperature
from jloss.kernels.blocked_head import (
    Head,
    HeadConfig,
    blocked_head_ce,
    default_block_size,
    label_value,
    row_block_size,
)
from jloss.kernels.common import vary_together

__all__ = ["default_block_size", "linear_cross_entropy", "linear_log_probs"]


# ------------------------------------------------------------ placement on a mesh




def _placement(vocab_axis, batch_axes):
    """``None`` (no mesh), ``"manual"`` (inside ``shard_map``) or ``"mesh"`` (global arrays)."""
    names = axis_names(vocab_axis) + axis_names(batch_axes)
    if not names:
        return None
    if len(axis_names(vocab_axis)) > 1:
        raise ValueError(f"vocab_axis must be one mesh axis name, got {vocab_axis!r}")
    mesh = jax.sharding.get_abstract_mesh()
    manual = [a for a in names if a in mesh.manual_axes]
    if manual and len(manual) == len(names):
        return "manual"
    missing = [a for a in names if a not in mesh.axis_names]
    if manual or missing:
        raise ValueError(
            f"vocab_axis={vocab_axis!r} and batch_axes={batch_axes!r} must all be axes of the "
            f"current mesh {dict(mesh.shape)}: call inside jax.shard_map over them, or on global "
            "arrays under jax.set_mesh(mesh)")
    return "mesh"


def _sizes(placement, vocab_axis, batch_axes, num_rows, vocab):
    """``(rows per device, classes per device, global V)``; checks divisibility on a mesh."""
    if placement is None:
        return num_rows, vocab, vocab
    shape = jax.sharding.get_abstract_mesh().shape
    m = shape[vocab_axis] if vocab_axis is not None else 1
    b = math.prod(shape[a] for a in axis_names(batch_axes))
    if placement == "manual":
        return num_rows, vocab, vocab * m
    if vocab % m:
        raise ValueError(f"weight has {vocab} classes, not divisible by the {m} devices of "
                         f"vocab_axis={vocab_axis!r}")
    if num_rows % b:
        raise ValueError(f"labels hold {num_rows} tokens, not divisible by the {b} devices of "
                         f"batch_axes={batch_axes!r}")
    return num_rows // b, vocab // m, vocab


def _place(x, spec):
    """``x`` laid out as ``spec`` on the current mesh (explicit or automatic axes)."""
    if x is None:
        return None
    mesh = jax.sharding.get_abstract_mesh()
    if all(t == jax.sharding.AxisType.Explicit for t in mesh.axis_types):
        return jax.reshard(x, spec)
    return jax.lax.with_sharding_constraint(x, spec)


@functools.partial(jax.jit, static_argnames=("static_items",))
def _on_mesh(hidden, weight, bias, labels, class_weights, hypers, weights, where, *, static_items):
    """:func:`_linear_ce` on global arrays: one ``shard_map`` over the vocabulary and token axes."""
    static = dict(static_items)
    vocab_axis, batch_axes = static["vocab_axis"], static["batch_axes"]
    shape = labels.shape
    n = math.prod(shape)
    tokens, vocab = P(batch_axes), P(vocab_axis)
    flat = [hidden.reshape(n, hidden.shape[-1]), weight, bias, labels.reshape(n), class_weights]
    specs = [P(batch_axes, None), P(None, vocab_axis), vocab, tokens, vocab]
    for opt in (weights, where):
        flat.append(None if opt is None else jnp.broadcast_to(opt, shape).reshape(n))
        specs.append(tokens)
    flat = [_place(x, s) for x, s in zip(flat, specs, strict=True)]
    h, w, b, y, cw, wts, whr = flat
    out_loss = tokens if static["reduction"] == "none" else P()
    out_stats = {k: tokens for k in _STATS} if static["stats_on"] else None

    def local(h, w, b, y, cw, hypers, wts, whr):
        return _linear_ce(h, w, b, y, cw, *hypers, wts, whr, **static)

    loss, stats = jax.shard_map(local, in_specs=(*specs[:5], P(), tokens, tokens),
                                out_specs=(out_loss, out_stats))(h, w, b, y, cw, hypers, wts, whr)
    if static["reduction"] == "none":
        loss = loss.reshape(shape)
    if stats is not None:
        stats = {k: v.reshape(shape) for k, v in stats.items()}
    return loss, stats


# ------------------------------------------------------------ the blocked computation


_STATS = ("logsumexp", "entropy", "argmax", "label_logprob")


@functools.partial(jax.jit, static_argnames=("block", "rows", "ignore_index", "smoothing_on",
                                             "stats_on", "vocab_axis", "batch_axes", "reduction"))
def _linear_ce(hidden, weight, bias, labels, class_weights, smoothing, z_loss, temperature, cap,
               weights, where, *, block, rows, ignore_index, smoothing_on, stats_on, vocab_axis,
               batch_axes, reduction):
    vocab = weight.shape[1] * (1 if vocab_axis is None else jax.lax.axis_size(vocab_axis))
    h, y, valid, mask = sparse_rows(hidden, labels, where, ignore_index, -1, 0, num_classes=vocab)
    dtype = compute_dtype(hidden, weight, bias)
    # hyperparameters are not learned: no gradient, the mean's denominator included
    class_weights, smoothing, z_loss, temperature, cap = (
        None if v is None else jax.lax.stop_gradient(jnp.asarray(v, dtype))
        for v in (class_weights, smoothing, z_loss, temperature, cap))
    h, y = vary_together(h, y)  # the kernel sums dweight over the axes only h varies along
    cfg = HeadConfig(block=block, rows=rows, smoothing_on=smoothing_on, stats_on=stats_on,
                     vocab_axis=vocab_axis)
    loss, stats = blocked_head_ce(cfg, h, Head(weight, bias, class_weights, temperature, cap), y,
                                  smoothing, z_loss)
    loss = jnp.where(valid, loss, jnp.nan).reshape(labels.shape)
    normalizer = None
    if class_weights is not None:
        normalizer = label_value(class_weights, y, vocab_axis).reshape(labels.shape)
    out = reduce_loss(loss, mask, weights, reduction, normalizer, axis_name=batch_axes)
    if stats is not None:
        keep = jnp.ones(labels.shape, bool) if mask is None else mask
        stats["label_logprob"] = jnp.where(valid, stats["label_logprob"], jnp.nan)
        stats = {k: jnp.where(keep, stats[k].reshape(labels.shape), -1 if k == "argmax" else 0)
                 for k in _STATS}
    return out, stats


def _check_head(hidden, weight, labels, bias, class_weights, logit_softcap, temperature,
                block_size, vocab_axis, batch_axes):
    """Checks shared by the fused heads; returns ``(cap, static sizes, placement)``."""
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
    check_class_vector("class_weights", class_weights, vocab)
    loss_shape = h_shape[:-1]
    checks.check_integer(labels=labels)
    checks.check_shape("labels", labels, loss_shape, f"hidden {h_shape} without its last axis")
    checks.check_range("temperature", temperature, low=0, low_open=True, shape=())
    checks.check_range("logit_softcap", logit_softcap, low=0, low_open=True, shape=())
    cap = logit_softcap
    c = checks.concrete(logit_softcap)
    if c is not None and c.ndim == 0 and np.isposinf(c):
        cap = None  # c * tanh(x / c) -> x as c -> inf: no cap
    placement = _placement(vocab_axis, batch_axes)
    rows, local_vocab, global_vocab = _sizes(placement, vocab_axis, batch_axes,
                                             math.prod(loss_shape), vocab)
    if block_size is None:
        block = default_block_size(rows, local_vocab)
    else:
        block = min(checks.check_int("block_size", block_size, low=1), local_vocab)
    sizes = {"block": block, "rows": row_block_size(rows, block),
             "vocab_axis": vocab_axis, "batch_axes": axis_names(batch_axes) or None}
    return cap, sizes, placement, global_vocab, loss_shape




def _run(placement, hidden, weight, bias, labels, class_weights, hypers, weights, where, static):
    if placement == "mesh":
        return _on_mesh(hidden, weight, bias, labels, class_weights, hypers, weights, where,
                        static_items=tuple(sorted(static.items())))
    return _linear_ce(hidden, weight, bias, labels, class_weights, *hypers, weights, where,
                      **static)


# ------------------------------------------------------------ public API


def linear_cross_entropy(hidden, weight, labels, *, bias=None, block_size=None,
                         ignore_index=None, label_smoothing=0.0, z_loss=0.0,
                         logit_softcap=None, temperature=1.0, class_weights=None,
                         vocab_axis=None, batch_axes=None, return_stats=False, weights=None,
                         where=None, reduction="mean"):
    r"""Output projection and sparse softmax cross-entropy, never materialising the logits.

    .. math::
       \ell = (1 - s)\, w_y (-\log p_y) + \frac{s}{V} \sum_{c:\, x_c \text{ finite}} w_c (-\log p_c)
       + z \, \big(\log\textstyle\sum_c e^{x_c}\big)^2,
       \qquad x = \mathrm{softcap}\big((h W + b) / T\big), \quad p = \mathrm{softmax}(x)

    Equal in value and gradient (for ``hidden``, ``weight`` and ``bias``) to::

        logits = (hidden @ weight + bias) / temperature
        if logit_softcap: logits = logit_softcap * tanh(logits / logit_softcap)
        sparse_categorical_cross_entropy(logits, labels, ignore_index=..., label_smoothing=...,
                                         class_weights=..., z_loss=..., weights=..., where=...,
                                         reduction=...)

    but the ``(..., V)`` logits never exist: the vocabulary is processed in
    blocks of ``block_size`` classes (and the tokens in chunks when they are
    many), a ``jax.custom_vjp`` recomputes each block's logits in the backward
    pass, and the scratch memory grows with ``block_size``, not with V. Use it
    for the last layer of a language model (large vocabularies), where the
    logits take most of the activation memory. Forward-mode autodiff applied
    directly (``jax.jvp``, ``jax.jacfwd``) is not supported. The blockwise
    method of Cut Cross-Entropy and Liger-Kernel's fused linear cross-entropy.

    Vocabulary parallelism (``vocab_axis``), as Megatron-LM's vocab-parallel
    cross-entropy: each device computes the statistics of its slice of the
    vocabulary (max, sum of exponentials, label logit, smoothing sums), which
    are merged with ``pmax`` / ``psum`` over O(tokens) values; ``dweight``
    stays local and only the ``(tokens, D)`` hidden-state gradient is summed
    across the axis. The weight is never gathered.

    * Inside ``jax.shard_map``: ``weight`` (and ``bias``, ``class_weights``) is
      this device's consecutive ``(D, V / M)`` slice of the vocabulary (device
      ``i`` of the ``M`` along ``vocab_axis`` holds classes ``[i V / M, (i + 1)
      V / M)``) and ``labels`` are global class ids. With ``batch_axes`` the
      tokens are this device's share of the batch and ``"mean"`` / ``"sum"``
      are taken over every device's tokens; without it they are local.
    * Under ``jax.jit`` (or eagerly) on global arrays with a mesh set
      (``jax.set_mesh(mesh)``): the call shards ``weight`` over ``vocab_axis``
      and the tokens over ``batch_axes`` itself (V and the number of tokens must
      divide evenly), and ``dweight`` comes back sharded like that.

    In both, the loss and every gradient equal the unsharded call.

    Args:
      hidden: ``(..., D)`` float activations (the input of the output layer).
      weight: ``(D, V)`` float output projection (the Flax ``Dense`` kernel
        layout; pass a tied embedding table ``(V, D)`` as ``table.T``); inside
        ``shard_map`` with ``vocab_axis``, this device's ``(D, V / M)`` slice.
      labels: integer ``(...)`` class indices in ``[0, V)`` (global ids), the
        shape of ``hidden`` without its last axis.
      bias: ``(V,)`` (sharded like ``weight``) or None. A -inf bias entry masks
        that class (without softcap).
      block_size: classes per block (a Python int), or None for the default:
        the largest multiple of 128 that keeps a ``(N, block)`` float32 tile
        within 4 MiB, clamped to [256, 4096] and to V (N and V per device).
        V need not be a multiple of it.
      ignore_index: a label value that is masked out (and never value-checked), or None.
      label_smoothing: ``s`` in [0, 1], spread over the whole vocabulary.
      z_loss: ``z >= 0`` (PaLM's z-loss).
      logit_softcap: ``c > 0`` applies ``c * tanh(x / c)`` to the logits (Gemma 2)
        and differentiates through it; None or a concrete ``inf`` for no cap.
      temperature: ``T > 0``; the logits are divided by it before the softcap.
        Not differentiated (a hyperparameter).
      class_weights: ``(V,)`` non-negative weights ``w_c`` (sharded like
        ``weight``), or None; ``"mean"`` divides by ``sum w_y`` (as torch).
      vocab_axis: the mesh axis ``weight`` is sharded over along V, or None.
      batch_axes: the mesh axis or axes the tokens are sharded over, or None.
      return_stats: also return per-token statistics (below).
      weights: non-negative weights broadcastable to ``labels.shape``, or None.
      where: boolean mask broadcastable to ``labels.shape``, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`); ``"mean"``
        divides by the (weighted) number of counted examples.

    Returns:
      A float32 scalar (float64 for float64 inputs) for ``"mean"`` and ``"sum"``;
      for ``"none"`` the loss per example, of shape ``labels.shape``. Gradients
      come back in the dtype of each input; bfloat16 / float16 inputs are
      multiplied with float32 accumulation and every statistic (logsumexp,
      ``dhidden``) is kept in float32. With ``return_stats=True``, ``(loss,
      stats)``: ``stats`` a dict of arrays of ``labels.shape`` computed in the
      same pass and carrying no gradient: ``"logsumexp"`` of the logits,
      ``"entropy"`` of the softmax, ``"argmax"`` (int32, the first largest
      logit) and ``"label_logprob"`` (``log p_y``); 0 (``argmax`` -1) at
      positions excluded by ``where`` or ``ignore_index``.

    Raises:
      ValueError: bad shapes or options, a ``vocab_axis`` / ``batch_axes`` that is
        not an axis of the current mesh, or sizes that do not divide over it.
      TypeError: integer ``hidden`` / ``weight``, or float ``labels``.
      LossInputError: labels outside ``[0, V)`` that are not ``ignore_index``
        (eager calls).

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> hidden = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> weight = jnp.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
      >>> labels = jnp.array([0, 1])
      >>> round(float(jloss.linear_cross_entropy(hidden, weight, labels)), 4)
      0.6691
      >>> dense = jloss.sparse_categorical_cross_entropy(hidden @ weight, labels)
      >>> round(float(dense), 4)
      0.6691
      >>> loss, stats = jloss.linear_cross_entropy(hidden, weight, labels, return_stats=True)
      >>> stats["argmax"].tolist(), round(float(stats["entropy"][1]), 4)
      ([0, 0], 1.0986)

    References:
      Wijmans, E. et al. (2024). Cut Your Losses in Large-Vocabulary Language
      Models; Liger-Kernel's fused linear cross-entropy; Shoeybi, M. et al.
      (2019). Megatron-LM (vocab-parallel cross-entropy); Gemma Team (2024),
      Gemma 2 (logit soft-capping); PyTorch ``torch.nn.functional.cross_entropy``.
    """
    hidden, weight, labels, bias, class_weights, weights, where = checks.array_likes(
        hidden, weight, labels, bias, class_weights, weights, where)
    cap, sizes, placement, vocab, loss_shape = _check_head(
        hidden, weight, labels, bias, class_weights, logit_softcap, temperature, block_size,
        vocab_axis, batch_axes)
    checks.check_convention(reduction, weights, where, loss_shape)
    checks.check_range("label_smoothing", label_smoothing, low=0, high=1, shape=())
    checks.check_range("z_loss", z_loss, low=0, shape=())
    ignore_index = checks.optional_int("ignore_index", ignore_index)
    mask = label_mask(labels, ignore_index, where, loss_shape)
    checks.check_class_labels(labels, vocab, mask)
    static = dict(sizes, ignore_index=ignore_index, smoothing_on=not checks.is_zero(label_smoothing),
                  stats_on=bool(return_stats), reduction=reduction)
    z_loss = None if checks.is_zero(z_loss) else z_loss  # no term at all: it cannot overflow to NaN
    hypers = (label_smoothing, z_loss, static_temperature(temperature), cap)
    loss, stats = _run(placement, hidden, weight, bias, labels, class_weights, hypers, weights,
                       where, static)
    return (loss, stats) if return_stats else loss


def linear_log_probs(hidden, weight, labels, *, bias=None, temperature=1.0, logit_softcap=None,
                     vocab_axis=None, batch_axes=None, block_size=None):
    r"""Per-token log-probability of each label under a linear head, never materialising the logits.

    .. math::
       \log p_y = x_y - \log \textstyle\sum_c e^{x_c},
       \qquad x = \mathrm{softcap}\big((h W + b) / T\big)

    Equal in value and gradient (for ``hidden``, ``weight`` and ``bias``) to
    ``jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], -1)[..., 0]``
    with the logits of :func:`linear_cross_entropy`, through the same
    vocabulary-blocked kernel: memory grows with ``block_size``, not with V.
    The building block of sequence-level objectives (policy gradients,
    preference losses such as DPO): sum it over a sequence's tokens. Unreduced,
    with no mask: mask the result yourself (every label must be in range).
    ``vocab_axis`` / ``batch_axes`` as in :func:`linear_cross_entropy` (the
    result is sharded over ``batch_axes``). Forward-mode autodiff applied
    directly (``jax.jvp``, ``jax.jacfwd``) is not supported.

    Args:
      hidden: ``(..., D)`` float activations.
      weight: ``(D, V)`` float output projection (this device's ``(D, V / M)``
        slice inside ``shard_map`` with ``vocab_axis``).
      labels: integer ``(...)`` class indices in ``[0, V)`` (global ids).
      bias: ``(V,)`` (sharded like ``weight``) or None.
      temperature: ``T > 0``; the logits are divided by it before the softcap.
      logit_softcap: ``c > 0`` applies ``c * tanh(x / c)``; None or ``inf`` for no cap.
      vocab_axis: the mesh axis ``weight`` is sharded over along V, or None.
      batch_axes: the mesh axis or axes the tokens are sharded over, or None.
      block_size: classes per block, or None for the default of
        :func:`linear_cross_entropy`.

    Returns:
      Float32 (float64 for float64 inputs) log-probabilities of ``labels.shape``,
      all ``<= 0``.

    Raises:
      ValueError: bad shapes or options, or a mesh axis that is not available.
      TypeError: integer ``hidden`` / ``weight``, or float ``labels``.
      LossInputError: labels outside ``[0, V)`` (eager calls; under ``jit`` such
        a label gives NaN).

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> hidden = jnp.ones((2, 3))  # two tokens, D = 3
      >>> weight = jnp.zeros((3, 4)).at[0, 1].set(2.0)  # V = 4; class 1 scores 2
      >>> logp = jloss.linear_log_probs(hidden, weight, jnp.array([1, 0]))
      >>> [round(x, 4) for x in logp.tolist()]
      [-0.3408, -2.3408]

    References:
      Wijmans, E. et al. (2024). Cut Your Losses in Large-Vocabulary Language
      Models; Rafailov, R. et al. (2023). Direct Preference Optimization.
    """
    hidden, weight, labels, bias = checks.array_likes(hidden, weight, labels, bias)
    cap, sizes, placement, vocab, _ = _check_head(
        hidden, weight, labels, bias, None, logit_softcap, temperature, block_size, vocab_axis,
        batch_axes)
    checks.check_class_labels(labels, vocab, None)
    static = dict(sizes, ignore_index=None, smoothing_on=False, stats_on=False, reduction="none")
    hypers = (0.0, None, static_temperature(temperature), cap)
    loss, _ = _run(placement, hidden, weight, bias, labels, None, hypers, None, None, static)
    return -loss

"""Distillation between two linear output heads over the whole vocabulary.

:func:`linear_kl_divergence` and :func:`linear_jensen_shannon` compare the
softmaxes of a student head ``student_hidden @ student_weight`` and a teacher
head ``teacher_hidden @ teacher_weight`` token by token, without ever holding
either ``(N, V)`` logits: the vocabulary-blocked kernel with its closed-form
backward lives in :mod:`jloss.kernels.distillation`; this module checks the
inputs and applies masks, weights and reductions.
"""

import functools
import math

import jax
import jax.numpy as jnp

from jloss._core import checks
from jloss._core.dtypes import compute_dtype
from jloss._core.reduce import loss_mask, reduce_loss
from jloss.heads.options import axis_names, static_temperature
from jloss.kernels.blocked_head import default_block_size
from jloss.kernels.common import vary_together
from jloss.kernels.distillation import DivergenceConfig, LinearHead, blocked_divergence

_DIRECTIONS = ("forward", "reverse")




def _check_heads(student_hidden, student_weight, teacher_hidden, teacher_weight, student_bias,
                 teacher_bias, temperature, block_size, vocab_axis, batch_axes, weights, where,
                 reduction):
    """Checks shared by the distillation heads; returns ``(loss shape, block)``."""
    checks.check_float(student_hidden=student_hidden, student_weight=student_weight,
                       teacher_hidden=teacher_hidden, teacher_weight=teacher_weight)
    vocab = None
    for who, hidden, weight, bias in (("student", student_hidden, student_weight, student_bias),
                                      ("teacher", teacher_hidden, teacher_weight, teacher_bias)):
        h_shape, w_shape = jnp.shape(hidden), jnp.shape(weight)
        if len(h_shape) < 1:
            raise ValueError(f"{who}_hidden must have shape (..., D), got a scalar")
        if len(w_shape) != 2 or w_shape[0] != h_shape[-1]:
            raise ValueError(f"{who}_weight has shape {w_shape} but {who}_hidden {h_shape} needs shape "
                             f"({h_shape[-1]}, V) (pass a tied embedding table (V, D) as table.T)")
        if vocab is not None and w_shape[1] != vocab:
            raise ValueError(f"student_weight and teacher_weight must share the vocabulary, got "
                             f"V = {vocab} and V = {w_shape[1]}")
        vocab = w_shape[1]
        if bias is not None:
            checks.check_float(**{f"{who}_bias": bias})
            checks.check_shape(f"{who}_bias", bias, (vocab,), f"{who}_weight with {vocab} classes")
    if vocab < 1:
        raise ValueError("the vocabulary V of student_weight must not be empty")
    s_shape, t_shape = jnp.shape(student_hidden)[:-1], jnp.shape(teacher_hidden)[:-1]
    if s_shape != t_shape:
        raise ValueError(f"student_hidden and teacher_hidden must hold the same tokens, got leading "
                         f"shapes {s_shape} and {t_shape}")
    checks.check_range("temperature", temperature, low=0, low_open=True)
    checks.check_convention(reduction, weights, where, s_shape)
    mesh = jax.sharding.get_abstract_mesh()
    for name, axes in (("vocab_axis", axis_names(vocab_axis)), ("batch_axes", axis_names(batch_axes))):
        if axes and not set(axes) <= set(mesh.manual_axes):
            raise ValueError(f"{name}={axes if name == 'batch_axes' else vocab_axis!r} must name axes of "
                             "the jax.shard_map this is called in")
    if vocab_axis is not None and len(axis_names(vocab_axis)) != 1:
        raise ValueError(f"vocab_axis must be one mesh axis name, got {vocab_axis!r}")
    if block_size is None:
        return s_shape, default_block_size(math.prod(s_shape), vocab)
    return s_shape, min(checks.check_int("block_size", block_size, low=1), vocab)


@functools.partial(jax.jit, static_argnames=("kind", "block", "vocab_axis", "batch_axes", "reduction"))
def _divergence(a, b, temperature, beta, weights, where, *, kind, block, vocab_axis, batch_axes,
                reduction):
    shape = a.hidden.shape[:-1]
    n = math.prod(shape)
    mask = loss_mask(where, shape)
    heads = []
    for head in (a, b):
        h = head.hidden.reshape(n, head.hidden.shape[-1])
        if mask is not None:  # masked tokens may hold NaN: they never reach the kernel
            h = jnp.where(mask.reshape(n, 1), h, 0)
        heads.append(head._replace(hidden=h))
    a, b = heads
    a_h, b_h = vary_together(a.hidden, b.hidden)
    a, b = a._replace(hidden=a_h), b._replace(hidden=b_h)
    dtype = compute_dtype(a.hidden, a.weight, b.hidden, b.weight)
    # hyperparameters are not learned
    temperature, beta = (None if v is None else jax.lax.stop_gradient(jnp.asarray(v, dtype))
                         for v in (temperature, beta))
    loss = blocked_divergence(DivergenceConfig(kind, block, vocab_axis), a, b, temperature, beta)
    return reduce_loss(loss.reshape(shape), mask, weights, reduction, axis_name=batch_axes)




def linear_kl_divergence(student_hidden, student_weight, teacher_hidden, teacher_weight, *,
                         temperature=1.0, direction="forward", student_bias=None, teacher_bias=None,
                         block_size=None, vocab_axis=None, batch_axes=None, weights=None, where=None,
                         reduction="mean"):
    r"""KL divergence between a teacher's and a student's linear heads, never materialising the logits.

    .. math::
       \ell_\mathrm{forward} = \sum_c p^T_c \big(\log p^T_c - \log p^S_c\big), \qquad
       \ell_\mathrm{reverse} = \sum_c p^S_c \big(\log p^S_c - \log p^T_c\big),

       p^S = \mathrm{softmax}\big((h^S W^S + b^S) / T\big), \quad
       p^T = \mathrm{softmax}\big((h^T W^T + b^T) / T\big)

    Knowledge distillation of a language model: per token, the divergence of the
    student's next-token distribution from the teacher's over the whole
    vocabulary. ``"forward"`` is ``KL(teacher || student)`` (Hinton's
    distillation, mean-seeking), equal to
    ``jloss.kl_divergence(student_logits, jax.nn.softmax(teacher_logits))``;
    ``"reverse"`` is ``KL(student || teacher)`` (mode-seeking, as MiniLLM /
    GKD). Equal in value and gradient (for both hiddens, weights and biases) to
    those materialised computations, but neither ``(..., V)`` logits exists: the
    vocabulary is walked in blocks of ``block_size`` classes with online
    statistics, and a ``jax.custom_vjp`` recomputes each block in the backward
    pass. The teacher usually receives no gradient: wrap its operands in
    ``jax.lax.stop_gradient`` (under ``jax.jit`` its gradient work is then
    dropped). There is no ``T^2`` factor: multiply by ``temperature ** 2`` for
    Hinton's scaling. Forward-mode autodiff applied directly (``jax.jvp``) is not
    supported.

    Vocabulary parallelism (``vocab_axis``, inside ``jax.shard_map``): both
    weights (and biases) are this device's consecutive ``(D, V / M)`` slices of
    the vocabulary; per-token statistics are merged with ``pmax`` / ``psum``
    over O(tokens) values, ``dweight`` stays local, the weights are never
    gathered, and the result equals the unsharded call. With ``batch_axes``
    the tokens are this device's share and ``"mean"`` / ``"sum"`` are taken over
    every device's tokens.

    Args:
      student_hidden: ``(..., D_S)`` float activations of the student.
      student_weight: ``(D_S, V)`` float output projection of the student.
      teacher_hidden: ``(..., D_T)`` float activations of the teacher (same tokens).
      teacher_weight: ``(D_T, V)`` float output projection of the teacher.
      temperature: ``T > 0`` dividing both heads' logits (not differentiated).
      direction: ``"forward"`` (``KL(teacher || student)``) or ``"reverse"``.
      student_bias: ``(V,)`` or None.
      teacher_bias: ``(V,)`` or None.
      block_size: classes per block (a Python int), or None for the default of
        :func:`jloss.linear_cross_entropy`.
      vocab_axis: the ``shard_map`` axis both weights are sharded over along V, or None.
      batch_axes: the ``shard_map`` axis or axes the tokens are sharded over, or None.
      weights: non-negative weights broadcastable to ``(...)``, or None.
      where: boolean mask broadcastable to ``(...)`` (padding tokens), or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar (float64 for float64 inputs) for ``"mean"`` and ``"sum"``;
      the divergence per token, shape ``(...)``, for ``"none"``.

    Raises:
      ValueError: bad shapes (hiddens over different tokens, weights of
        different vocabularies), ``temperature <= 0``, an unknown ``direction``
        or ``reduction``, a mesh axis that is not a ``shard_map`` axis here.
      TypeError: integer inputs, or a ``where`` that is not boolean.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> student_hidden, teacher_hidden = jnp.ones((2, 2)), jnp.ones((2, 3))
      >>> student_weight = jnp.zeros((2, 4))
      >>> teacher_weight = jnp.zeros((3, 4)).at[0, 0].set(2.0)
      >>> kl = jloss.linear_kl_divergence(student_hidden, student_weight, teacher_hidden, teacher_weight)
      >>> round(float(kl), 4)
      0.468
      >>> teacher_logits, student_logits = teacher_hidden @ teacher_weight, student_hidden @ student_weight
      >>> round(float(jloss.kl_divergence(student_logits, jax.nn.softmax(teacher_logits))), 4)
      0.468

    References:
      Hinton, G. et al. (2015). Distilling the Knowledge in a Neural Network;
      Gu, Y. et al. (2024). MiniLLM: Knowledge Distillation of Large Language
      Models (reverse KL); Agarwal, R. et al. (2024). On-Policy Distillation of
      Language Models (GKD); Wijmans, E. et al. (2024). Cut Your Losses in
      Large-Vocabulary Language Models.
    """
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
    _, block = _check_heads(student_hidden, student_weight, teacher_hidden, teacher_weight,
                            student_bias, teacher_bias, temperature, block_size, vocab_axis,
                            batch_axes, weights, where, reduction)
    student = LinearHead(student_hidden, student_weight, student_bias)
    teacher = LinearHead(teacher_hidden, teacher_weight, teacher_bias)
    first, second = (teacher, student) if direction == "forward" else (student, teacher)
    return _divergence(first, second, static_temperature(temperature), None, weights, where, kind="kl",
                       block=block, vocab_axis=vocab_axis, batch_axes=axis_names(batch_axes) or None,
                       reduction=reduction)


def linear_jensen_shannon(student_hidden, student_weight, teacher_hidden, teacher_weight, *,
                          beta=0.5, temperature=1.0, student_bias=None, teacher_bias=None,
                          block_size=None, vocab_axis=None, batch_axes=None, weights=None, where=None,
                          reduction="mean"):
    r"""Generalised Jensen-Shannon divergence between a teacher's and a student's linear heads.

    .. math::
       \ell = \beta\, \mathrm{KL}(p^T \,\|\, m) + (1 - \beta)\, \mathrm{KL}(p^S \,\|\, m),
       \qquad m = \beta\, p^T + (1 - \beta)\, p^S

    with :math:`p^S`, :math:`p^T` the softmaxes of the two heads' logits divided
    by the temperature, as in :func:`linear_kl_divergence`. A bounded (at most
    :math:`\log 2` for β = 0.5), symmetric-at-0.5 distillation objective that
    interpolates between the forward and reverse KL; the ``beta`` of TRL's GKD
    ``generalized_jsd_loss`` (for β in (0, 1); at the ends TRL switches to a
    plain KL: use :func:`linear_kl_divergence`). Computed block by block over
    the vocabulary without building either ``(..., V)`` logits (two passes: the
    normalisers, then the KL terms), with the same ``vocab_axis`` /
    ``batch_axes`` parallelism and teacher ``stop_gradient`` as
    :func:`linear_kl_divergence`. Forward-mode autodiff applied directly is not
    supported.

    Args:
      student_hidden: ``(..., D_S)`` float activations of the student.
      student_weight: ``(D_S, V)`` float output projection of the student.
      teacher_hidden: ``(..., D_T)`` float activations of the teacher (same tokens).
      teacher_weight: ``(D_T, V)`` float output projection of the teacher.
      beta: β in (0, 1), the teacher's share of the mixture.
      temperature: ``T > 0`` dividing both heads' logits (not differentiated).
      student_bias: ``(V,)`` or None.
      teacher_bias: ``(V,)`` or None.
      block_size: classes per block (a Python int), or None for the default.
      vocab_axis: the ``shard_map`` axis both weights are sharded over along V, or None.
      batch_axes: the ``shard_map`` axis or axes the tokens are sharded over, or None.
      weights: non-negative weights broadcastable to ``(...)``, or None.
      where: boolean mask broadcastable to ``(...)``, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar (float64 for float64 inputs) for ``"mean"`` and ``"sum"``;
      the divergence per token, shape ``(...)``, for ``"none"``.

    Raises:
      ValueError: bad shapes, ``beta`` outside (0, 1), ``temperature <= 0``, bad
        ``reduction``, a mesh axis that is not a ``shard_map`` axis here.
      TypeError: integer inputs, or a ``where`` that is not boolean.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> student_hidden, teacher_hidden = jnp.ones((2, 2)), jnp.ones((2, 3))
      >>> student_weight = jnp.zeros((2, 4))
      >>> teacher_weight = jnp.zeros((3, 4)).at[0, 0].set(2.0)
      >>> jsd = jloss.linear_jensen_shannon(student_hidden, student_weight, teacher_hidden, teacher_weight)
      >>> round(float(jsd), 4)
      0.1107

    References:
      Lin, J. (1991). Divergence Measures Based on the Shannon Entropy; Agarwal,
      R. et al. (2024). On-Policy Distillation of Language Models: Learning from
      Self-Generated Mistakes (generalised JSD); TRL ``GKDTrainer``.
    """
    checks.check_range("beta", beta, low=0, high=1, low_open=True, high_open=True)
    _, block = _check_heads(student_hidden, student_weight, teacher_hidden, teacher_weight,
                            student_bias, teacher_bias, temperature, block_size, vocab_axis,
                            batch_axes, weights, where, reduction)
    student = LinearHead(student_hidden, student_weight, student_bias)
    teacher = LinearHead(teacher_hidden, teacher_weight, teacher_bias)
    return _divergence(teacher, student, static_temperature(temperature), beta, weights, where, kind="jsd",
                       block=block, vocab_axis=vocab_axis, batch_axes=axis_names(batch_axes) or None,
                       reduction=reduction)

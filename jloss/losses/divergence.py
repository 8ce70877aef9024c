"""Divergences between distributions (distillation, matching a target distribution)."""

import functools

import jax
import jax.numpy as jnp

from jloss._core import checks
from jloss._core.dtypes import compute_dtype
from jloss._core.layout import class_axis, row_masks, to_rows
from jloss._core.reduce import fill_masked, loss_mask, reduce_loss
from jloss.kernels.common import clamped_log, keep_inputs


def kl_divergence(logits, targets, *, from_logits=True, log_targets=False, axis=-1,
                  weights=None, where=None, reduction="mean"):
    r"""Kullback-Leibler divergence ``KL(targets || softmax(logits))``, per example.

    .. math:: \ell = \sum_c t_c \,(\log t_c - \log q_c), \qquad q = \mathrm{softmax}(x)

    Knowledge distillation and matching a target distribution. With
    ``from_logits=False`` the first argument is ``q`` itself (logs clamped at
    -100); with ``log_targets=True`` the targets are log-probabilities. Terms with
    ``t_c = 0`` contribute 0 with finite gradients for both arguments. ``"mean"``
    averages over examples: PyTorch's ``"batchmean"`` for 2-D input. With more
    axes every position is an example (a ``(B, T, C)`` input divides by
    ``B * T``, where PyTorch's ``"batchmean"`` divides by ``B``; for that, use
    ``"sum"`` and divide by ``B``). As torch ``kl_div`` with the argument order of
    optax ``kl_divergence``: predictions first.

    Args:
      logits: ``(..., C, ...)`` float logits (probabilities with
        ``from_logits=False``); ``axis`` is the class axis.
      targets: the shape of ``logits``: probabilities along ``axis`` (finite and
        non-negative), or log-probabilities with ``log_targets=True``.
      from_logits: whether the first argument holds logits.
      log_targets: whether ``targets`` are log-probabilities.
      axis: the class axis.
      weights: non-negative weights broadcastable to the unreduced loss, or None.
      where: boolean mask broadcastable to the unreduced loss, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; for ``"none"`` the divergence
      per example, of the shape of ``logits`` without ``axis``.

    Raises:
      ValueError: shapes differ, or a bad ``axis`` or option.
      TypeError: integer ``logits`` or ``targets``.
      LossInputError: targets (or, with ``from_logits=False``, predictions) that
        are not probabilities (eager calls).

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> logits = jnp.zeros((2, 2))  # q = (0.5, 0.5) in both rows
      >>> targets = jnp.array([[1.0, 0.0], [0.5, 0.5]])
      >>> [round(v, 4) for v in jloss.kl_divergence(logits, targets, reduction="none").tolist()]
      [0.6931, 0.0]

    References:
      Kullback, S. and Leibler, R. A. (1951). On Information and Sufficiency;
      Hinton, G. et al. (2015). Distilling the Knowledge in a Neural Network;
      PyTorch ``torch.nn.functional.kl_div``.
    """
    logits, targets, weights, where = checks.array_likes(logits, targets, weights, where)
    axis, loss_shape, _ = class_axis(logits, axis, reduction, weights, where)
    checks.check_same_shape(logits=logits, targets=targets)
    checks.check_float(targets=targets)
    mask = loss_mask(where, loss_shape)
    if not log_targets:
        checks.check_soft_targets("targets", targets, axis, mask)
    if from_logits:
        checks.warn_if_probabilities(logits, axis)
    else:
        checks.check_distribution("logits", logits, axis, mask,
                                   "; with from_logits=False pass probabilities")
    return _kl(logits, targets, weights, where, axis=axis, from_logits=from_logits,
               log_targets=log_targets, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("axis", "from_logits", "log_targets", "reduction"))
def _kl(logits, targets, weights, where, *, axis, from_logits, log_targets, reduction):
    loss_shape = logits.shape[:axis] + logits.shape[axis + 1:]
    mask = loss_mask(where, loss_shape)
    row_mask = None if mask is None else mask.reshape(-1)
    dtype = compute_dtype(logits, targets)
    num_classes = logits.shape[axis]
    x = fill_masked(to_rows(logits, axis), row_mask, 0 if from_logits else 1 / num_classes)
    t = fill_masked(to_rows(targets, axis), row_mask, 0 if log_targets else 1 / num_classes)

    def loss(x, t):
        x, t = x.astype(dtype), t.astype(dtype)
        log_q = jax.nn.log_softmax(x, axis=-1) if from_logits else clamped_log(x)
        if log_targets:
            # exp(log t) (log t - log q); -inf log-targets contribute 0.
            present = t > -jnp.inf
            safe_t = jnp.where(present, t, 0)
            terms = jnp.where(present, jnp.exp(safe_t) * (safe_t - log_q), 0)
        else:
            present = t > 0
            safe_t = jnp.where(present, t, 1)
            terms = jnp.where(present, t * (jnp.log(safe_t) - log_q), 0)
        # Where the target is 0, a -inf log_q must not turn the product into NaN.
        return jnp.sum(terms, axis=-1)

    return reduce_loss(keep_inputs(loss, x, t).reshape(loss_shape), mask, weights, reduction)


def generalized_kl_divergence(log_predictions, targets, *, axis=-1, weights=None, where=None,
                              reduction="mean"):
    r"""Generalized KL divergence between non-negative measures (not necessarily normalised).

    .. math:: \ell = \sum_c t_c (\log t_c - \log q_c) - t_c + q_c, \quad q = \exp(\text{log\_predictions})

    Fitting non-negative quantities that need not sum to 1 (the
    I-divergence of non-negative matrix factorisation, Poisson-like
    intensities): it is 0 only at ``q = t`` and equals :func:`kl_divergence`
    when both sum to 1. Terms with ``t_c = 0`` contribute ``q_c``. As optax
    ``generalized_kl_divergence``.

    Args:
      log_predictions: ``(..., C, ...)`` float array, ``log q``; ``axis`` is the summed axis.
      targets: same shape, finite and non-negative.
      weights, where, reduction: see the conventions page.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-example loss (``"none"``).

    Raises:
      ValueError: shapes differ, bad ``axis`` or ``reduction``.
      TypeError: integer ``log_predictions``.
      LossInputError: counted targets negative or not finite (eager, or under ``jloss.checked``).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> log_q = jnp.log(jnp.array([[1.0, 2.0]]))
      >>> round(float(jloss.generalized_kl_divergence(log_q, jnp.array([[1.0, 1.0]]))), 4)
      0.3069

    References:
      Lee & Seung (2000), Algorithms for non-negative matrix factorization, NeurIPS.
    """
    log_predictions, targets, weights, where = checks.array_likes(log_predictions, targets, weights, where)
    axis, loss_shape, _ = class_axis(log_predictions, axis, reduction, weights, where,
                                     "log_predictions")
    checks.check_same_shape(log_predictions=log_predictions, targets=targets)
    checks.check_float(targets=targets)
    checks.check_nonnegative("targets", jnp.moveaxis(jnp.asarray(targets), axis, -1),
                             loss_mask(where, loss_shape))
    return _generalized_kl(log_predictions, targets, weights, where, axis=axis, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("axis", "reduction"))
def _generalized_kl(log_predictions, targets, weights, where, *, axis, reduction):
    loss_shape, mask, row_mask = row_masks(log_predictions.shape, axis, where)
    dtype = compute_dtype(log_predictions, targets)

    def loss(log_q, t):
        log_q, t = log_q.astype(dtype), t.astype(dtype)
        present = t > 0
        safe_t = jnp.where(present, t, 1)
        # where t = 0 only q remains: a -inf log q there gives 0, never 0 * inf
        terms = jnp.where(present, t * (jnp.log(safe_t) - log_q), 0) - t + jnp.exp(log_q)
        return jnp.sum(terms, axis=-1)

    loss = keep_inputs(loss, fill_masked(to_rows(log_predictions, axis), row_mask, 0),
                       fill_masked(to_rows(targets, axis), row_mask, 1))
    return reduce_loss(loss.reshape(loss_shape), mask, weights, reduction)

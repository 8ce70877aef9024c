"""Classification losses: binary / categorical / sparse cross-entropy, focal, hinge.

Task guide: binary (or multi-label) targets -> ``binary_cross_entropy`` on a
sigmoid output; one class out of C -> ``sparse_categorical_cross_entropy``
(integer labels) or ``categorical_cross_entropy`` (one-hot / soft targets) on
a softmax output; class imbalance -> focal losses or ``class_weights`` /
``pos_weight``; max-margin classifiers -> the hinge family.

All losses follow the convention of :mod:`jloss._core.reduce` (``weights``,
``where``, ``reduction``) and compute half-precision inputs in float32. The
cross-entropy and focal losses are built on the custom-VJP kernels of
:mod:`jloss.kernels`; like every ``jax.custom_vjp`` function they do not
support forward-mode autodiff applied to them directly (``jax.jvp``,
``jax.jacfwd``). Second derivatives work: ``jax.hessian`` (forward over
reverse) and ``jax.jacrev(jax.jacrev(f))`` differentiate the closed-form
backward.
"""

import functools

import jax
import jax.numpy as jnp

from jloss._core import checks
from jloss._core.dtypes import compute_dtype
from jloss._core.layout import (
    check_class_vector,
    check_sparse_labels,
    class_axis,
    label_mask,
    sparse_rows,
    to_rows,
)
from jloss._core.reduce import constant, fill_masked, loss_mask, reduce_loss
from jloss.kernels.common import clamped_log, focal_modulator, keep_inputs
from jloss.kernels.sigmoid import sigmoid_bce, sigmoid_focal, smooth_binary_labels
from jloss.kernels.softmax import dense_softmax_ce, softmax_focal, sparse_softmax_ce

_LOGITS_HINT = "; with from_logits=False the first argument must be probabilities " \
               "(did you pass logits? use from_logits=True)"


# --------------------------------------------------------------- binary


def _binary_checks(logits, labels, weights, where, reduction, from_logits, name="logits"):
    """The shared checks; returns the arguments with lists and tuples as arrays."""
    logits, labels, weights, where = checks.array_likes(logits, labels, weights, where)
    checks.check_float(**{name: logits})
    checks.check_real(labels=labels)
    checks.check_same_shape(**{name: logits, "labels": labels})
    checks.check_convention(reduction, weights, where, jnp.shape(logits))
    mask = loss_mask(where, jnp.shape(logits))
    checks.check_unit_interval("labels", labels, mask)
    if not from_logits:
        checks.check_unit_interval(name, logits, mask, _LOGITS_HINT)
    return logits, labels, weights, where


def _binary_inputs(logits, labels, where, from_logits):
    """Masked-safe logits and labels, both kept in their own dtypes."""
    mask = loss_mask(where, logits.shape)
    x = fill_masked(logits, mask, 0 if from_logits else 0.5)
    y = fill_masked(jnp.asarray(labels), mask, 0)
    return x, y, mask


def binary_cross_entropy(logits, labels, *, from_logits=True, pos_weight=None,
                         label_smoothing=0.0, weights=None, where=None, reduction="mean"):
    r"""Binary cross-entropy on logits, elementwise: binary and multi-label classification.

    .. math::
       \ell = -\big[w_+ \, y' \log \sigma(x) + (1 - y') \log(1 - \sigma(x))\big],
       \qquad y' = y (1 - s) + s / 2

    with ``w_+ = pos_weight`` and ``s = label_smoothing``, computed as
    ``w_+ y' softplus(-x) + (1 - y') softplus(x)``: finite for any finite logit.
    With ``from_logits=False`` the first argument is ``sigmoid(x)`` itself and the
    logs are clamped at -100. As torch ``binary_cross_entropy_with_logits`` (and
    ``binary_cross_entropy`` for probabilities); optax ``sigmoid_binary_cross_entropy``.
    Built on ``jax.custom_vjp`` (closed-form backward): forward-mode autodiff
    applied directly (``jax.jvp``, ``jax.jacfwd``) is not supported;
    ``jax.hessian`` works.

    Args:
      logits: ``(...)`` float logits, or probabilities with ``from_logits=False``.
      labels: ``(...)`` the shape of ``logits``, values in [0, 1] (soft labels allowed).
      from_logits: whether the first argument holds logits.
      pos_weight: weight of the positive term, non-negative, broadcastable to
        ``logits.shape`` (e.g. ``(C,)`` for multi-label), or None.
      label_smoothing: ``s`` in [0, 1].
      weights: non-negative weights broadcastable to the unreduced loss, or None.
      where: boolean mask broadcastable to the unreduced loss, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; for ``"none"`` the elementwise
      loss of shape ``logits.shape`` (float64 for float64 inputs).

    Raises:
      ValueError: shapes differ, or a bad option (``label_smoothing`` outside
        [0, 1], ``pos_weight`` that does not broadcast, ``reduction``, ...).
      TypeError: integer ``logits``.
      LossInputError: labels (or, with ``from_logits=False``, probabilities)
        outside [0, 1] (eager calls).

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> logits, labels = jnp.array([0.0, 2.0]), jnp.array([1.0, 0.0])
      >>> [round(v, 4) for v in jloss.binary_cross_entropy(logits, labels, reduction="none").tolist()]
      [0.6931, 2.1269]
      >>> round(float(jloss.binary_cross_entropy(logits, labels, pos_weight=jnp.array(3.0))), 4)
      2.1032

    References:
      PyTorch ``torch.nn.functional.binary_cross_entropy_with_logits``;
      Szegedy, C. et al. (2016). Rethinking the Inception Architecture for
      Computer Vision (label smoothing).
    """
    logits, labels, weights, where = _binary_checks(logits, labels, weights, where, reduction,
                                                    from_logits)
    label_smoothing = checks.check_range("label_smoothing", label_smoothing, low=0, high=1,
                                         shape=jnp.shape(logits))
    pos_weight = checks.array_likes(pos_weight)
    checks.check_broadcastable("pos_weight", pos_weight, jnp.shape(logits))
    checks.check_nonnegative("pos_weight", pos_weight)
    return _bce(logits, labels, pos_weight, label_smoothing, weights, where,
                from_logits=from_logits, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("from_logits", "reduction"))
def _bce(logits, labels, pos_weight, smoothing, weights, where, *, from_logits, reduction):
    smoothing = constant(smoothing)
    x, y, mask = _binary_inputs(logits, labels, where, from_logits)
    dtype = compute_dtype(logits)
    pw = jnp.ones((), dtype) if pos_weight is None else jnp.asarray(pos_weight)
    if from_logits:
        loss = sigmoid_bce(x, y, pw, jnp.asarray(smoothing, dtype))
    else:
        def probability_bce(p, y, pw):
            y = smooth_binary_labels(y, dtype, smoothing)
            p = p.astype(dtype)
            return -(pw * y * clamped_log(p) + (1 - y) * clamped_log(1 - p))

        loss = keep_inputs(probability_bce, x, y, pw)
    return reduce_loss(loss, mask, weights, reduction)


def binary_focal_loss(logits, labels, *, gamma=2.0, alpha=0.25, from_logits=True,
                      weights=None, where=None, reduction="mean"):
    r"""Sigmoid focal loss: binary cross-entropy scaled down on easy examples.

    .. math::
       \ell = \alpha_t \, (1 - p_t)^\gamma \, \mathrm{BCE}(p, y), \qquad
       p_t = p y + (1 - p)(1 - y), \quad \alpha_t = \alpha y + (1 - \alpha)(1 - y)

    with ``p = sigmoid(logits)``. Dense detection and heavy class imbalance: the
    many easy negatives stop dominating the loss. ``alpha=None`` drops
    ``alpha_t``; ``gamma=0, alpha=None`` is :func:`binary_cross_entropy`. The
    modulating factor is computed in log space, so gradients stay finite at
    saturated logits for every ``gamma >= 0``; labels get no gradient. As
    ``torchvision.ops.sigmoid_focal_loss``; optax ``sigmoid_focal_loss``.
    Built on ``jax.custom_vjp`` (closed-form backward): forward-mode autodiff
    applied directly (``jax.jvp``, ``jax.jacfwd``) is not supported;
    ``jax.hessian`` works.

    Args:
      logits: ``(...)`` float logits, or probabilities with ``from_logits=False``.
      labels: ``(...)`` the shape of ``logits``, values in [0, 1].
      gamma: focusing parameter ``>= 0``.
      alpha: balance of the positive class in [0, 1], or None.
      from_logits: whether the first argument holds logits.
      weights: non-negative weights broadcastable to the unreduced loss, or None.
      where: boolean mask broadcastable to the unreduced loss, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; for ``"none"`` the elementwise
      loss of shape ``logits.shape``.

    Raises:
      ValueError: shapes differ, ``gamma < 0``, ``alpha`` outside [0, 1], or bad
        ``weights``, ``where`` or ``reduction``.
      TypeError: integer ``logits``.
      LossInputError: labels (or probabilities) outside [0, 1] (eager calls).

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> logits, labels = jnp.array([0.0, 2.0]), jnp.array([1.0, 0.0])
      >>> [round(v, 4) for v in jloss.binary_focal_loss(logits, labels, reduction="none").tolist()]
      [0.0433, 1.2376]
      >>> plain = jloss.binary_focal_loss(logits, labels, gamma=0.0, alpha=None)
      >>> round(float(plain), 4) == round(float(jloss.binary_cross_entropy(logits, labels)), 4)
      True

    References:
      Lin, T.-Y. et al. (2017). Focal Loss for Dense Object Detection. ICCV.
    """
    logits, labels, weights, where = _binary_checks(logits, labels, weights, where, reduction,
                                                    from_logits)
    gamma = checks.check_range("gamma", gamma, low=0, shape=jnp.shape(logits))
    alpha = checks.check_range("alpha", alpha, low=0, high=1, shape=jnp.shape(logits))
    return _binary_focal(logits, labels, gamma, alpha, weights, where,
                         from_logits=from_logits, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("from_logits", "reduction"))
def _binary_focal(logits, labels, gamma, alpha, weights, where, *, from_logits, reduction):
    gamma, alpha = constant(gamma, alpha)
    x, y, mask = _binary_inputs(logits, labels, where, from_logits)
    dtype = compute_dtype(logits)
    alpha = None if alpha is None else jnp.asarray(alpha, dtype)
    if from_logits:
        loss = sigmoid_focal(x, y, jnp.asarray(gamma, dtype), alpha)
    else:
        y = y.astype(dtype)
        p = x.astype(dtype)
        ce = -(y * clamped_log(p) + (1 - y) * clamped_log(1 - p))
        q = p * (1 - y) + (1 - p) * y
        loss = ce * focal_modulator(gamma, clamped_log(q))
        if alpha is not None:
            loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    return reduce_loss(loss, mask, weights, reduction)


# ------------------------------------------------------------ categorical


def categorical_cross_entropy(logits, targets, *, from_logits=True, axis=-1, label_smoothing=0.0,
                              class_weights=None, z_loss=0.0, weights=None, where=None,
                              reduction="mean"):
    r"""Softmax cross-entropy against one-hot or probability targets: multi-class.

    .. math::
       \ell = -\sum_c w_c \, t'_c \log p_c + z \, \big(\log\textstyle\sum_c e^{x_c}\big)^2,
       \qquad p = \mathrm{softmax}(x), \quad t' = t (1 - s) + s / C

    per example, with ``w = class_weights`` (default 1), ``s = label_smoothing``
    and ``z = z_loss``. A class with a -inf logit is a masked class: it gets no
    smoothing mass, and the loss stays finite unless the target puts mass on it.
    Targets need not sum to 1 (soft targets). With ``from_logits=False`` the first
    argument holds probabilities and ``log p`` is clamped at -100. As torch
    ``cross_entropy`` with probability targets; optax
    ``softmax_cross_entropy``; Keras ``CategoricalCrossentropy``.
    Built on ``jax.custom_vjp`` (closed-form backward): forward-mode autodiff
    applied directly (``jax.jvp``, ``jax.jacfwd``) is not supported;
    ``jax.hessian`` works.

    Args:
      logits: ``(..., C, ...)`` float logits (probabilities with
        ``from_logits=False``); ``axis`` is the class axis.
      targets: the shape of ``logits``: one-hot or probabilities along ``axis``.
      from_logits: whether the first argument holds logits.
      axis: the class axis.
      label_smoothing: ``s`` in [0, 1].
      class_weights: ``(C,)`` non-negative weights, or None.
      z_loss: ``z >= 0`` (PaLM's z-loss; logits only).
      weights: non-negative weights broadcastable to the unreduced loss, or None.
      where: boolean mask broadcastable to the unreduced loss, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; for ``"none"`` the loss per
      example, of the shape of ``logits`` without ``axis``.

    Raises:
      ValueError: shapes differ, a bad ``axis`` or option, or ``z_loss`` with
        ``from_logits=False``.
      TypeError: integer ``logits``.
      LossInputError: targets that are negative or not finite, or probabilities
        that do not sum to 1 with ``from_logits=False`` (eager calls).

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
      >>> targets = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
      >>> [round(v, 4) for v in jloss.categorical_cross_entropy(logits, targets,
      ...                                                       reduction="none").tolist()]
      [0.2395, 1.0986]

    References:
      PyTorch ``torch.nn.functional.cross_entropy``; Chowdhery, A. et al. (2022).
      PaLM: Scaling Language Modeling with Pathways (z-loss).
    """
    logits, targets, class_weights, weights, where = checks.array_likes(
        logits, targets, class_weights, weights, where)
    axis, loss_shape, num_classes = class_axis(logits, axis, reduction, weights, where)
    checks.check_real(targets=targets)
    checks.check_same_shape(logits=logits, targets=targets)
    _categorical_options(label_smoothing, class_weights, z_loss, num_classes, from_logits)
    mask = loss_mask(where, loss_shape)
    checks.check_soft_targets("targets", targets, axis, mask)
    _check_first_argument(logits, axis, mask, from_logits)
    return _categorical(logits, targets, label_smoothing, class_weights, z_loss, weights, where,
                        axis=axis, from_logits=from_logits, reduction=reduction,
                        **_static_terms(label_smoothing, z_loss))


def _static_terms(label_smoothing, z_loss):
    """Which terms a kernel computes: a term whose factor is statically 0 does not exist
    (``0 * lse^2`` would be NaN where ``lse^2`` overflows)."""
    return {"smoothing_on": not checks.is_zero(label_smoothing),
            "z_loss_on": not checks.is_zero(z_loss)}


def _check_first_argument(logits, axis, mask, from_logits):
    """Probabilities with ``from_logits=False``; a warning if logits look like probabilities."""
    if from_logits:
        checks.warn_if_probabilities(logits, axis, stacklevel=4)
    else:
        checks.check_distribution("logits", logits, axis, mask, _LOGITS_HINT)


def _categorical_options(label_smoothing, class_weights, z_loss, num_classes, from_logits):
    checks.check_range("label_smoothing", label_smoothing, low=0, high=1, shape=())
    checks.check_range("z_loss", z_loss, low=0, shape=())
    check_class_vector("class_weights", class_weights, num_classes)
    if not from_logits and not checks.is_zero(z_loss):
        raise ValueError("z_loss needs logits: it is not defined with from_logits=False")


@functools.partial(jax.jit, static_argnames=("axis", "from_logits", "reduction", "smoothing_on",
                                             "z_loss_on"))
def _categorical(logits, targets, smoothing, class_weights, z_loss, weights, where, *,
                 axis, from_logits, reduction, smoothing_on, z_loss_on):
    smoothing, class_weights, z_loss = constant(smoothing, class_weights, z_loss)
    loss_shape = logits.shape[:axis] + logits.shape[axis + 1:]
    mask = loss_mask(where, loss_shape)
    row_mask = None if mask is None else mask.reshape(-1)
    x = fill_masked(to_rows(logits, axis), row_mask, 0 if from_logits else 1 / logits.shape[axis])
    t = fill_masked(to_rows(targets, axis), row_mask, 0)
    smoothing, z_loss = jnp.asarray(smoothing), jnp.asarray(z_loss)
    if from_logits:
        loss = dense_softmax_ce(smoothing_on, x, t, smoothing, class_weights,
                                z_loss if z_loss_on else None)
    else:
        dtype = compute_dtype(x)
        num_classes = x.shape[-1]
        w = 1.0 if class_weights is None else class_weights.astype(dtype)
        a = (t.astype(dtype) * (1 - smoothing) + smoothing / num_classes) * w
        loss = -jnp.sum(a * clamped_log(x.astype(dtype)), axis=-1)
    return reduce_loss(loss.reshape(loss_shape), mask, weights, reduction)


def sparse_categorical_cross_entropy(logits, labels, *, from_logits=True, axis=-1,
                                     label_smoothing=0.0, class_weights=None, ignore_index=None,
                                     z_loss=0.0, weights=None, where=None, reduction="mean"):
    r"""Softmax cross-entropy against integer class labels: multi-class, language models.

    .. math::
       \ell = (1 - s)\, w_y (-\log p_y) + \frac{s}{C} \sum_c w_c (-\log p_c)
       + z \, \big(\log\textstyle\sum_c e^{x_c}\big)^2,
       \qquad p = \mathrm{softmax}(x)

    per example, with ``w = class_weights`` (default 1); ``"mean"`` divides by
    ``sum(w_y)`` over counted examples, exactly as torch ``cross_entropy``
    (the ``c`` of :doc:`/conventions`). Never builds a one-hot; the backward is
    ``softmax - target`` in closed form. Labels equal to ``ignore_index`` are
    masked and never value-checked. Under ``jax.jit`` an out-of-range label
    gives NaN for its example, never a wrapped class. As torch ``cross_entropy``;
    optax ``softmax_cross_entropy_with_integer_labels``; Keras
    ``SparseCategoricalCrossentropy``.
    Built on ``jax.custom_vjp`` (closed-form backward): forward-mode autodiff
    applied directly (``jax.jvp``, ``jax.jacfwd``) is not supported;
    ``jax.hessian`` works.

    Args:
      logits: ``(..., C, ...)`` float logits (probabilities with
        ``from_logits=False``); ``axis`` is the class axis.
      labels: integer class indices, the shape of ``logits`` without ``axis``.
      from_logits: whether the first argument holds logits.
      axis: the class axis.
      label_smoothing: ``s`` in [0, 1].
      class_weights: ``(C,)`` non-negative weights, or None.
      ignore_index: a label value to mask out (e.g. -100 for padding), or None.
      z_loss: ``z >= 0`` (PaLM's z-loss; logits only).
      weights: non-negative weights broadcastable to the unreduced loss, or None.
      where: boolean mask broadcastable to the unreduced loss, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; for ``"none"`` the loss per
      example, of shape ``labels.shape``.

    Raises:
      ValueError: ``labels`` of the wrong shape, a bad ``axis`` or option.
      TypeError: integer ``logits`` or float ``labels``.
      LossInputError: a label outside ``[0, C)`` that is not ``ignore_index``, or
        probabilities that are not probabilities with ``from_logits=False``
        (eager calls; use :func:`checked` under ``jax.jit``).

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
      >>> [round(v, 4) for v in jloss.sparse_categorical_cross_entropy(
      ...     logits, jnp.array([0, 1]), reduction="none").tolist()]
      [0.2395, 1.0986]
      >>> round(float(jloss.sparse_categorical_cross_entropy(
      ...     logits, jnp.array([0, -100]), ignore_index=-100)), 4)
      0.2395

    References:
      PyTorch ``torch.nn.functional.cross_entropy``; Szegedy, C. et al. (2016)
      for label smoothing; Chowdhery, A. et al. (2022), PaLM, for the z-loss.
    """
    logits, labels, class_weights, weights, where = checks.array_likes(
        logits, labels, class_weights, weights, where)
    axis, loss_shape, num_classes = class_axis(logits, axis, reduction, weights, where)
    check_sparse_labels(labels, logits, axis, loss_shape, "logits")
    ignore_index = checks.optional_int("ignore_index", ignore_index)
    _categorical_options(label_smoothing, class_weights, z_loss, num_classes, from_logits)
    mask = label_mask(labels, ignore_index, where, loss_shape)
    checks.check_class_labels(labels, num_classes, mask)
    _check_first_argument(logits, axis, mask, from_logits)
    return _sparse(logits, labels, label_smoothing, class_weights, z_loss, weights, where,
                   axis=axis, ignore_index=ignore_index, from_logits=from_logits,
                   reduction=reduction, **_static_terms(label_smoothing, z_loss))


@functools.partial(jax.jit, static_argnames=("axis", "ignore_index", "from_logits",
                                             "smoothing_on", "z_loss_on", "reduction"))
def _sparse(logits, labels, smoothing, class_weights, z_loss, weights, where, *, axis,
            ignore_index, from_logits, smoothing_on, z_loss_on, reduction):
    smoothing, class_weights, z_loss = constant(smoothing, class_weights, z_loss)
    num_classes = logits.shape[axis]
    x, y, valid, mask = sparse_rows(logits, labels, where, ignore_index, axis,
                                    0 if from_logits else 1 / num_classes)
    smoothing, z_loss = jnp.asarray(smoothing), jnp.asarray(z_loss)
    if from_logits:
        loss = sparse_softmax_ce(smoothing_on, x, y, smoothing, class_weights,
                                 z_loss if z_loss_on else None)
    else:
        dtype = compute_dtype(x)
        logp = clamped_log(x.astype(dtype))
        w = jnp.ones((num_classes,), dtype) if class_weights is None else class_weights.astype(dtype)
        loss = -(1 - smoothing) * w[y] * jnp.take_along_axis(logp, y[:, None], -1)[:, 0]
        loss = loss - smoothing / num_classes * jnp.sum(w * logp, axis=-1)
    loss = jnp.where(valid, loss, jnp.nan).reshape(labels.shape)
    normalizer = None if class_weights is None else class_weights.astype(loss.dtype)[y].reshape(labels.shape)
    return reduce_loss(loss, mask, weights, reduction, normalizer)


def categorical_focal_loss(logits, labels, *, gamma=2.0, alpha=None, axis=-1, ignore_index=None,
                           weights=None, where=None, reduction="mean"):
    r"""Softmax focal loss with integer labels: multi-class imbalance.

    .. math:: \ell = -\alpha_y \, (1 - p_y)^\gamma \log p_y, \qquad p = \mathrm{softmax}(x)

    ``alpha`` is None (1), a scalar or a ``(C,)`` array of per-class factors; it
    is part of the loss, so ``"mean"`` divides by the number of counted examples.
    ``gamma=0, alpha=None`` is :func:`sparse_categorical_cross_entropy`.
    ``log(1 - p_y)`` comes from the other classes' logits, so gradients are
    finite for every ``gamma >= 0``, saturated logits included. The multi-class
    form of ``torchvision.ops.sigmoid_focal_loss``.
    Built on ``jax.custom_vjp`` (closed-form backward): forward-mode autodiff
    applied directly (``jax.jvp``, ``jax.jacfwd``) is not supported;
    ``jax.hessian`` works.

    Args:
      logits: ``(..., C, ...)`` float logits; ``axis`` is the class axis.
      labels: integer class indices, the shape of ``logits`` without ``axis``.
      gamma: focusing parameter ``>= 0``.
      alpha: None, a non-negative scalar or a ``(C,)`` array.
      axis: the class axis.
      ignore_index: a label value to mask out, or None.
      weights: non-negative weights broadcastable to the unreduced loss, or None.
      where: boolean mask broadcastable to the unreduced loss, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; for ``"none"`` the loss per
      example, of shape ``labels.shape``.

    Raises:
      ValueError: ``labels`` of the wrong shape, ``gamma < 0``, a bad ``alpha``,
        ``axis`` or option.
      TypeError: integer ``logits`` or float ``labels``.
      LossInputError: a label outside ``[0, C)`` that is not ``ignore_index``
        (eager calls).

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
      >>> [round(v, 4) for v in jloss.categorical_focal_loss(
      ...     logits, jnp.array([0, 1]), reduction="none").tolist()]
      [0.0109, 0.4883]

    References:
      Lin, T.-Y. et al. (2017). Focal Loss for Dense Object Detection. ICCV.
    """
    logits, labels, alpha, weights, where = checks.array_likes(logits, labels, alpha, weights, where)
    axis, loss_shape, num_classes = class_axis(logits, axis, reduction, weights, where)
    check_sparse_labels(labels, logits, axis, loss_shape, "logits")
    ignore_index = checks.optional_int("ignore_index", ignore_index)
    gamma = checks.check_range("gamma", gamma, low=0, shape=())
    check_class_vector("alpha", alpha, num_classes)
    checks.check_class_labels(labels, num_classes, label_mask(labels, ignore_index, where, loss_shape))
    checks.warn_if_probabilities(logits, axis)
    return _categorical_focal(logits, labels, gamma, alpha, weights, where, axis=axis,
                              ignore_index=ignore_index, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("axis", "ignore_index", "reduction"))
def _categorical_focal(logits, labels, gamma, alpha, weights, where, *, axis, ignore_index,
                       reduction):
    gamma, alpha = constant(gamma, alpha)
    x, y, valid, mask = sparse_rows(logits, labels, where, ignore_index, axis, 0)
    loss = softmax_focal(x, y, jnp.asarray(gamma, compute_dtype(x)))
    if alpha is not None:
        alpha = jnp.asarray(alpha, loss.dtype)
        loss = loss * (alpha[y] if alpha.ndim else alpha)
    loss = jnp.where(valid, loss, jnp.nan).reshape(labels.shape)
    return reduce_loss(loss, mask, weights, reduction)

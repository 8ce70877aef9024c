"""Margin losses: binary hinge, squared hinge and the multi-class margin loss.

Max-margin classifiers (SVM-style): the loss is zero once the right score
beats the others by ``margin``. Labels are checked like the other losses'.
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
    sparse_rows,
)
from jloss._core.reduce import fill_masked, loss_mask, reduce_loss
from jloss.kernels.common import is_label, keep_inputs, keep_maxima, max_over_classes, picked


def _hinge_checks(scores, labels, weights, where, reduction, margin):
    """The shared checks; returns the arguments with lists and tuples as arrays."""
    scores, labels, weights, where = checks.array_likes(scores, labels, weights, where)
    checks.check_float(scores=scores)
    checks.check_real(labels=labels)
    checks.check_same_shape(scores=scores, labels=labels)
    checks.check_convention(reduction, weights, where, jnp.shape(scores))
    checks.check_values(labels, lambda y, xp: (y != -1) & (y != 0) & (y != 1),
                        "hinge labels must be -1 or +1 (0 is read as -1)",
                        loss_mask(where, jnp.shape(scores)))
    margin = checks.check_range("margin", margin, shape=jnp.shape(scores))
    return scores, labels, margin, weights, where


def hinge(scores, labels, *, margin=1.0, weights=None, where=None, reduction="mean"):
    r"""Hinge loss: zero once the score has the label's sign with room ``margin``.

    .. math:: \ell = \max(0,\; m - y\,s), \qquad y \in \{-1, +1\}

    Max-margin binary classifiers (linear SVMs). Labels 0 are read as -1, as
    Keras does, so 0/1 labels work too. As Keras ``Hinge``; optax ``hinge_loss``.

    Args:
      scores: ``(...)`` float decision scores (logits).
      labels: ``(...)`` the shape of ``scores``, values in {-1, 0, +1}.
      margin: ``m``, the required margin.
      weights: non-negative weights broadcastable to the unreduced loss, or None.
      where: boolean mask broadcastable to the unreduced loss, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; for ``"none"`` the elementwise
      loss of shape ``scores.shape``.

    Raises:
      ValueError: shapes differ, or bad ``margin``, ``weights``, ``where`` or
        ``reduction``.
      TypeError: integer ``scores``.
      LossInputError: labels other than -1, 0 or 1 (eager calls).

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> jloss.hinge(jnp.array([2.0, 0.5, -1.0]), jnp.array([1, 1, 0]), reduction="none").tolist()
      [0.0, 0.5, 0.0]

    References:
      Cortes, C. and Vapnik, V. (1995). Support-Vector Networks. *Machine
      Learning* 20; Keras ``keras.losses.hinge``.
    """
    scores, labels, margin, weights, where = _hinge_checks(scores, labels, weights, where,
                                                           reduction, margin)
    return _hinge(scores, labels, margin, weights, where, squared=False, reduction=reduction)


def squared_hinge(scores, labels, *, margin=1.0, weights=None, where=None, reduction="mean"):
    r"""Squared hinge loss: smooth, and it penalises large violations more.

    .. math:: \ell = \max(0,\; m - y\,s)^2, \qquad y \in \{-1, +1\}

    Max-margin binary classifiers with a differentiable loss (L2-SVM). Labels
    as :func:`hinge`. As Keras ``SquaredHinge``.

    Args:
      scores: ``(...)`` float decision scores (logits).
      labels: ``(...)`` the shape of ``scores``, values in {-1, 0, +1}.
      margin: ``m``, the required margin.
      weights: non-negative weights broadcastable to the unreduced loss, or None.
      where: boolean mask broadcastable to the unreduced loss, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; for ``"none"`` the elementwise
      loss of shape ``scores.shape``.

    Raises:
      ValueError: shapes differ, or bad ``margin``, ``weights``, ``where`` or
        ``reduction``.
      TypeError: integer ``scores``.
      LossInputError: labels other than -1, 0 or 1 (eager calls).

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> jloss.squared_hinge(jnp.array([2.0, 0.5, -1.0]), jnp.array([1, 1, 0]),
      ...                     reduction="none").tolist()
      [0.0, 0.25, 0.0]

    References:
      Keras ``keras.losses.squared_hinge``; Lee, C.-P. and Lin, C.-J. (2013).
      A Study on L2-Loss (Squared Hinge-Loss) Multiclass SVM. *Neural Computation* 25(5).
    """
    scores, labels, margin, weights, where = _hinge_checks(scores, labels, weights, where,
                                                           reduction, margin)
    return _hinge(scores, labels, margin, weights, where, squared=True, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("squared", "reduction"))
def _hinge(scores, labels, margin, weights, where, *, squared, reduction):
    mask = loss_mask(where, scores.shape)
    dtype = compute_dtype(scores)

    def loss(s, y):
        s, y = s.astype(dtype), y.astype(dtype)
        m = margin - jnp.where(y > 0, s, -s)  # labels +-1, 0 read as -1
        out = jnp.where(m > 0, m, 0)
        return out**2 if squared else out

    s = fill_masked(scores, mask, 0)
    y = fill_masked(labels, mask, 1)
    return reduce_loss(keep_inputs(loss, s, y), mask, weights, reduction)


def multiclass_hinge(scores, labels, *, margin=1.0, p=1, class_weights=None, axis=-1,
                     weights=None, where=None, reduction="mean"):
    r"""Multi-class margin loss (Weston-Watkins): a hinge per wrong class, summed.

    .. math:: \ell = \frac{w_y}{C} \sum_{j \ne y} \max(0,\; m - s_y + s_j)^p

    per example, ``p`` in {1, 2}, ``w = class_weights`` (default 1). Every
    wrong class that comes within ``margin`` of the label's score adds to the
    loss: the Weston-Watkins multi-class SVM (Crammer-Singer would take the
    largest violation only), divided by ``C`` as torch does. ``"mean"`` divides
    by the number of counted examples (class weights are part of the loss). As
    torch ``multi_margin_loss``.

    Args:
      scores: ``(..., C, ...)`` float scores; ``axis`` is the class axis.
      labels: integer class indices, the shape of ``scores`` without ``axis``.
      margin: ``m``, the required margin.
      p: 1 (hinge) or 2 (squared hinge).
      class_weights: ``(C,)`` weights, or None.
      axis: the class axis.
      weights: non-negative weights broadcastable to the unreduced loss, or None.
      where: boolean mask broadcastable to the unreduced loss, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; for ``"none"`` the loss per
      example, of shape ``labels.shape``.

    Raises:
      ValueError: ``labels`` of the wrong shape, ``p`` not 1 or 2, or a bad
        ``margin``, ``class_weights``, ``axis`` or option.
      TypeError: integer ``scores`` or float ``labels``.
      LossInputError: a label outside ``[0, C)`` (eager calls).

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> scores = jnp.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0]])
      >>> [round(v, 4) for v in jloss.multiclass_hinge(scores, jnp.array([0, 2]),
      ...                                              reduction="none").tolist()]
      [0.1667, 1.0]

    References:
      Weston, J. and Watkins, C. (1999). Support Vector Machines for Multi-Class
      Pattern Recognition. ESANN; PyTorch ``torch.nn.functional.multi_margin_loss``.
    """
    scores, labels, class_weights, weights, where = checks.array_likes(
        scores, labels, class_weights, weights, where)
    axis, loss_shape, num_classes = class_axis(scores, axis, reduction, weights, where, "scores")
    check_sparse_labels(labels, scores, axis, loss_shape, "scores")
    p = checks.static_int("p", p)
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    margin = checks.check_range("margin", margin, shape=())
    check_class_vector("class_weights", class_weights, num_classes)
    checks.check_class_labels(labels, num_classes, loss_mask(where, loss_shape))
    return _multiclass_hinge(scores, labels, margin, class_weights, weights, where,
                             axis=axis, p=p, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("axis", "p", "reduction"))
def _multiclass_hinge(scores, labels, margin, class_weights, weights, where, *, axis, p,
                      reduction):
    x, y, valid, mask = sparse_rows(scores, labels, where, None, axis, 0)
    dtype = compute_dtype(x)
    num_classes = x.shape[-1]

    def margins(x, y):
        x = x.astype(dtype)
        own = jnp.take_along_axis(x, y[:, None], -1)
        # the label column is dropped before the power: at an inf label score its margin is
        # inf - inf, and a NaN there would leak into the gradient through x ** p
        violation = jnp.maximum(0, jnp.where(is_label(y, num_classes), 0, margin - own + x)) ** p
        return jnp.sum(violation, axis=-1)

    loss = keep_inputs(margins, x, y)
    if class_weights is not None:
        loss = loss * class_weights.astype(dtype)[y]
    # divided after the select, XLA scales in the same pass (before it, in a buffer of its own)
    loss = (jnp.where(valid, loss, jnp.nan) / num_classes).reshape(labels.shape)
    return reduce_loss(loss, mask, weights, reduction)


# ------------------------------------------ signed margins: y s with y = +-1


def _sign_checks(scores, labels, weights, where, reduction):
    """Float scores and +-1 labels of one shape; returns the arguments as arrays."""
    scores, labels, weights, where = checks.array_likes(scores, labels, weights, where)
    checks.check_float(scores=scores)
    checks.check_same_shape(scores=scores, labels=labels)
    checks.check_convention(reduction, weights, where, jnp.shape(scores))
    checks.check_sign_labels(labels, loss_mask(where, jnp.shape(scores)))
    return scores, labels, weights, where


def _soft_margin(z):
    return jax.nn.softplus(-z)


def _perceptron(z):
    return jnp.maximum(0, -z)


@functools.partial(jax.jit, static_argnames=("pointwise", "reduction"))
def _signed(pointwise, scores, labels, weights, where, *, reduction):
    """``pointwise(y s)`` elementwise, masked-safe, reduced."""
    mask = loss_mask(where, scores.shape)
    dtype = compute_dtype(scores)

    def loss(s, y):
        return pointwise(y.astype(dtype) * s.astype(dtype))

    loss = keep_inputs(loss, fill_masked(scores, mask, 0), fill_masked(jnp.asarray(labels), mask, 1))
    return reduce_loss(loss, mask, weights, reduction)


def soft_margin(scores, labels, *, weights=None, where=None, reduction="mean"):
    r"""Soft-margin loss: the logistic loss of the signed score.

    .. math:: \ell = \log(1 + e^{-y s}), \quad y \in \{-1, +1\}

    Binary classification with labels in {-1, +1}: a smooth hinge, the same
    as binary cross-entropy with 0/1 labels ``(y + 1) / 2``. Elementwise, as
    torch ``soft_margin_loss``; computed as ``softplus(-y s)``, exact at any
    score.

    Args:
      scores: ``(...)`` float array.
      labels: same shape, -1 or +1 (any numeric dtype).
      weights, where, reduction: see the conventions page.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-element loss (``"none"``).

    Raises:
      ValueError: shapes differ or an unknown ``reduction``.
      TypeError: integer ``scores``.
      LossInputError: a counted label is not -1 or +1 (eager, or under ``jloss.checked``).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> round(float(jloss.soft_margin(jnp.array([2.0, -1.0]), jnp.array([1.0, 1.0]))), 4)
      0.7201

    References:
      PyTorch ``torch.nn.functional.soft_margin_loss``.
    """
    scores, labels, weights, where = _sign_checks(scores, labels, weights, where, reduction)
    return _signed(_soft_margin, scores, labels, weights, where, reduction=reduction)


def perceptron(scores, labels, *, weights=None, where=None, reduction="mean"):
    r"""Perceptron loss: the score's violation when its sign is wrong.

    .. math:: \ell = \max(0, -y s), \quad y \in \{-1, +1\}

    Binary classification with the perceptron update (Rosenblatt): no loss once
    the sign is right, however small the margin (a hinge with margin 0).
    Elementwise, as optax ``perceptron_loss``.

    Args:
      scores: ``(...)`` float array.
      labels: same shape, -1 or +1 (any numeric dtype).
      weights, where, reduction: see the conventions page.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-element loss (``"none"``).

    Raises:
      ValueError: shapes differ or an unknown ``reduction``.
      TypeError: integer ``scores``.
      LossInputError: a counted label is not -1 or +1 (eager, or under ``jloss.checked``).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> float(jloss.perceptron(jnp.array([2.0, -1.5]), jnp.array([1.0, 1.0]), reduction="sum"))
      1.5

    References:
      Rosenblatt (1958), The perceptron; optax ``perceptron_loss``.
    """
    scores, labels, weights, where = _sign_checks(scores, labels, weights, where, reduction)
    return _signed(_perceptron, scores, labels, weights, where, reduction=reduction)


# ----------------------------------------------- one label out of C classes


def _sparse_margin_checks(scores, labels, axis, weights, where, reduction):
    """Scores with a class axis and one class label per example; returns the arguments as
    arrays and the class axis."""
    scores, labels, weights, where = checks.array_likes(scores, labels, weights, where)
    axis, loss_shape, num_classes = class_axis(scores, axis, reduction, weights, where, "scores")
    check_sparse_labels(labels, scores, axis, loss_shape, "scores")
    checks.check_class_labels(labels, num_classes, loss_mask(where, loss_shape))
    return scores, labels, weights, where, axis


@functools.partial(jax.jit, static_argnames=("axis", "reduction"))
def _best_other(scores, labels, margin, weights, where, *, axis, reduction):
    """``max(0, margin + max_{j != y} s_j - s_y)`` per example; ``margin`` None: 0, the
    perceptron's ``max_j s_j - s_y`` (the label's own term is 0, so no label mask).

    The backward keeps the inputs and the maxima only (no (N, C) mask of where
    the maxima are, as ``jnp.max``'s gradient would)."""
    x, y, valid, mask = sparse_rows(scores, labels, where, None, axis, 0)
    dtype = compute_dtype(x)

    def best_other(x, y):
        x = x.astype(dtype)
        own = picked(x, y)
        if margin is None:
            return max_over_classes(x) - own
        other = max_over_classes(jnp.where(is_label(y, x.shape[-1]), -jnp.inf, x))
        return jnp.maximum(0, margin + other - own)

    loss = jnp.where(valid, keep_maxima(best_other)(x, y), jnp.nan).reshape(labels.shape)
    return reduce_loss(loss, mask, weights, reduction)


def crammer_singer_hinge(scores, labels, *, margin=1.0, axis=-1, weights=None, where=None,
                         reduction="mean"):
    r"""Crammer-Singer multi-class hinge: the label's score must beat the best other one.

    .. math:: \ell = \max\big(0, \; m + \max_{j \ne y} s_j - s_y\big)

    Max-margin multi-class classification (a multi-class SVM) that only looks
    at the strongest wrong class, unlike :func:`multiclass_hinge` (torch's
    ``multi_margin_loss``), which sums every violation. As optax
    ``multiclass_hinge_loss`` (``margin=1``) and Keras ``categorical_hinge``
    on one-hot targets. With one class the loss is 0.

    Args:
      scores: ``(..., C, ...)`` float array; ``axis`` is the class axis.
      labels: integer array, the shape of ``scores`` without ``axis``, in ``[0, C)``.
      margin: the required gap (a float, may be traced).
      weights, where, reduction: see the conventions page.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-example loss (``"none"``).

    Raises:
      ValueError: bad ``labels`` shape, ``axis`` or ``reduction``, NaN ``margin``.
      TypeError: integer ``scores`` or float ``labels``.
      LossInputError: a counted label outside ``[0, C)`` (eager, or under ``jloss.checked``;
        under a plain ``jax.jit`` that example's loss is NaN).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> s = jnp.array([[2.0, 1.5, -1.0]])
      >>> round(float(jloss.crammer_singer_hinge(s, jnp.array([0]))), 4)
      0.5

    References:
      Crammer & Singer (2001), On the algorithmic implementation of multiclass
      kernel-based vector machines, JMLR.
    """
    scores, labels, weights, where, axis = _sparse_margin_checks(
        scores, labels, axis, weights, where, reduction)
    checks.check_range("margin", margin)
    return _best_other(scores, labels, margin, weights, where, axis=axis, reduction=reduction)


def multiclass_perceptron(scores, labels, *, axis=-1, weights=None, where=None,
                          reduction="mean"):
    r"""Multi-class perceptron loss: how far the best score is above the label's.

    .. math:: \ell = \max_j s_j - s_y

    Multi-class classification with perceptron updates: zero once the label's
    score is the largest, whatever the gap (the Crammer-Singer hinge with
    margin 0). As optax ``multiclass_perceptron_loss``.

    Args:
      scores: ``(..., C, ...)`` float array; ``axis`` is the class axis.
      labels: integer array, the shape of ``scores`` without ``axis``, in ``[0, C)``.
      weights, where, reduction: see the conventions page.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-example loss (``"none"``).

    Raises:
      ValueError: bad ``labels`` shape, ``axis`` or ``reduction``.
      TypeError: integer ``scores`` or float ``labels``.
      LossInputError: a counted label outside ``[0, C)`` (eager, or under ``jloss.checked``;
        under a plain ``jax.jit`` that example's loss is NaN).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> s = jnp.array([[2.0, 1.5, -1.0]])
      >>> round(float(jloss.multiclass_perceptron(s, jnp.array([1]))), 4)
      0.5

    References:
      Collins (2002), discriminative training methods for hidden Markov models;
      optax ``multiclass_perceptron_loss``.
    """
    scores, labels, weights, where, axis = _sparse_margin_checks(
        scores, labels, axis, weights, where, reduction)
    return _best_other(scores, labels, None, weights, where, axis=axis, reduction=reduction)

"""Margin losses: binary hinge, squared hinge and the multi-class margin loss.

Max-margin classifiers (SVM-style): the loss is zero once the right score
beats the others by ``margin``. Labels are checked like the other losses'.
"""

import functools

import jax
import jax.numpy as jnp

from jloss._core import checks
from jloss._core.dtypes import compute_dtype
from jloss._core.layout import check_class_vector, check_sparse_labels, class_axis, sparse_rows
from jloss._core.reduce import fill_masked, loss_mask, reduce_loss
from jloss.kernels.common import keep_inputs


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
        is_label = jnp.arange(num_classes)[None, :] == y[:, None]
        violation = jnp.maximum(0, jnp.where(is_label, 0, margin - own + x)) ** p
        return jnp.sum(violation, axis=-1) / num_classes

    loss = keep_inputs(margins, x, y)
    if class_weights is not None:
        loss = loss * class_weights.astype(dtype)[y]
    loss = jnp.where(valid, loss, jnp.nan).reshape(labels.shape)
    return reduce_loss(loss, mask, weights, reduction)

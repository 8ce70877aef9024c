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
    row_masks,
    sparse_rows,
    to_rows,
)
from jloss._core.reduce import fill_masked, loss_mask, reduce_loss
from jloss.kernels.common import keep_inputs, times
from jloss.kernels.sigmoid import sigmoid_bce


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


# ------------------------------------------ signed margins: y s with y = +-1


def _sign_checks(scores, labels, weights, where, reduction):
    checks.check_float(scores=scores)
    checks.check_same_shape(scores=scores, labels=labels)
    checks.check_convention(reduction, weights, where, jnp.shape(scores))
    checks.check_sign_labels(labels, loss_mask(where, jnp.shape(scores)))


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
    scores, labels, weights, where = checks.array_likes(scores, labels, weights, where)
    _sign_checks(scores, labels, weights, where, reduction)
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
    scores, labels, weights, where = checks.array_likes(scores, labels, weights, where)
    _sign_checks(scores, labels, weights, where, reduction)
    return _signed(_perceptron, scores, labels, weights, where, reduction=reduction)


# ----------------------------------------------- one label out of C classes


def _sparse_margin_checks(scores, labels, axis, weights, where, reduction):
    axis, loss_shape, num_classes = class_axis(scores, axis, reduction, weights, where, "scores")
    check_sparse_labels(labels, scores, axis, loss_shape, "scores")
    checks.check_class_labels(labels, num_classes, loss_mask(where, loss_shape))
    return axis


@functools.partial(jax.jit, static_argnames=("axis", "reduction"))
def _best_other(scores, labels, margin, weights, where, *, axis, reduction):
    """``max(0, margin + max_{j != y} s_j - s_y)`` per example; ``margin`` None: 0, the
    perceptron's ``max_j s_j - s_y`` (the label's own term is 0, so no label mask)."""
    x, y, valid, mask = sparse_rows(scores, labels, where, None, axis, 0)
    dtype = compute_dtype(x)

    def best_other(x, y):
        x = x.astype(dtype)
        own = jnp.take_along_axis(x, y[:, None], -1)[:, 0]
        if margin is None:
            return jnp.max(x, axis=-1) - own
        is_label = jnp.arange(x.shape[-1])[None, :] == y[:, None]
        other = jnp.max(jnp.where(is_label, -jnp.inf, x), axis=-1)
        return jnp.maximum(0, margin + other - own)

    loss = jnp.where(valid, keep_inputs(best_other, x, y), jnp.nan).reshape(labels.shape)
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
    scores, labels, weights, where = checks.array_likes(scores, labels, weights, where)
    axis = _sparse_margin_checks(scores, labels, axis, weights, where, reduction)
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
    scores, labels, weights, where = checks.array_likes(scores, labels, weights, where)
    axis = _sparse_margin_checks(scores, labels, axis, weights, where, reduction)
    return _best_other(scores, labels, None, weights, where, axis=axis, reduction=reduction)


# ----------------------------------------------------- several labels per example


def multilabel_margin(scores, labels, *, axis=-1, weights=None, where=None, reduction="mean"):
    r"""Multi-label hinge: every target class must beat every other class by 1.

    .. math:: \ell = \frac{1}{C} \sum_{j \in Y} \sum_{i \notin Y} \max(0, 1 - (s_j - s_i))

    Multi-label classification with a ranking margin: the set ``Y`` of target
    classes of an example is read from ``labels``, class indices padded with
    -1 (the indices up to the first -1 count, the rest is ignored). As torch
    ``multilabel_margin_loss``. Computed from sorted scores in O(C log C) per
    example (counts of margin violations), not by comparing every pair.

    Args:
      scores: ``(..., C, ...)`` float array; ``axis`` is the class axis.
      labels: integer array of the shape of ``scores``: class indices in
        ``[0, C)`` along ``axis``, then -1 padding.
      weights, where, reduction: see the conventions page.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-example loss (``"none"``).

    Raises:
      ValueError: shapes differ, bad ``axis`` or ``reduction``.
      TypeError: integer ``scores`` or float ``labels``.
      LossInputError: a counted index before the first -1 outside ``[0, C)`` (eager, or
        under ``jloss.checked``; under a plain ``jax.jit`` that example's loss is NaN).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> s = jnp.array([[0.1, 0.2, 0.4, 0.8]])
      >>> round(float(jloss.multilabel_margin(s, jnp.array([[3, 0, -1, 1]]))), 4)
      0.85

    References:
      PyTorch ``torch.nn.functional.multilabel_margin_loss``.
    """
    scores, labels, weights, where = checks.array_likes(scores, labels, weights, where)
    axis, loss_shape, num_classes = class_axis(scores, axis, reduction, weights, where, "scores")
    checks.check_same_shape(scores=scores, labels=labels)
    checks.check_integer(labels=labels)
    mask = loss_mask(where, loss_shape)

    def bad(labels, xp):  # per example: an index before the first -1 that is not a class
        rows = xp.moveaxis(labels, axis, -1)
        listed = xp.cumprod(rows != -1, axis=-1).astype(bool)
        return xp.any(listed & ((rows < 0) | (rows >= num_classes)), axis=-1)

    checks.check_values(labels, bad, f"labels must be class indices in [0, {num_classes}) padded with -1",
                        mask)
    return _multilabel_margin(scores, labels, weights, where, axis=axis, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("axis", "reduction"))
def _multilabel_margin(scores, labels, weights, where, *, axis, reduction):
    loss_shape, mask, row_mask = row_masks(scores.shape, axis, where)
    x = fill_masked(to_rows(scores, axis), row_mask, 0)
    y = fill_masked(to_rows(labels, axis), row_mask, -1)
    num_classes = x.shape[-1]
    listed = jnp.cumprod(y != -1, axis=-1).astype(bool)
    valid = ~jnp.any(listed & ((y < 0) | (y >= num_classes)), axis=-1)
    rows = jnp.arange(x.shape[0])[:, None]
    column = jnp.where(listed & valid[:, None], y, num_classes)  # unlisted: a spare column
    is_target = jnp.zeros((x.shape[0], num_classes + 1), bool).at[rows, column].set(True)[:, :num_classes]
    loss = _ranked_hinge(x, is_target) / num_classes
    loss = jnp.where(valid, loss, jnp.nan).reshape(loss_shape)
    return reduce_loss(loss, mask, weights, reduction)


def _ranked_hinge(x, is_target):
    """Per row ``sum_{j target} sum_{i other} max(0, 1 - x_j + x_i)`` in O(C log C), not O(C^2).

    With ``k_j`` the number of other classes that violate target ``j``'s
    margin (``x_i > x_j - 1``) and ``c_i`` the number of targets whose margin
    class ``i`` violates, the sum is ``sum_j k_j (1 - x_j) + sum_i c_i x_i``:
    two sorts and binary searches count the violations. The counts are
    constant almost everywhere, so the gradient is ``c_i - k_j``, as the
    pairwise sum's. Scores are taken relative to the row mean (the loss
    does not change): ``k_j x_j`` and ``c_i x_i`` then stay as small as the
    score differences, as the pairwise terms are.
    """
    dtype = compute_dtype(x)
    z = jax.lax.stop_gradient(x).astype(dtype)
    finite = jnp.isfinite(z)
    center = jnp.sum(jnp.where(finite, z, 0), axis=-1) / jnp.maximum(jnp.sum(finite, axis=-1), 1)
    z = z - center[:, None]
    key = _sort_key(z)
    last = jnp.iinfo(key.dtype).max  # after every score's key
    others = jnp.sort(jnp.where(is_target, last, key), axis=-1)
    targets = jnp.sort(jnp.where(is_target, key, last), axis=-1)
    count_below = jax.vmap(functools.partial(jnp.searchsorted, side="right"))
    count_under = jax.vmap(functools.partial(jnp.searchsorted, side="left"))
    num_others = jnp.sum(~is_target, axis=-1, keepdims=True)
    k = jnp.where(is_target, num_others - count_below(others, _sort_key(z - 1)), 0)
    c = jnp.where(is_target, 0, count_under(targets, _sort_key(z + 1)))

    def linear(x, coefficient):  # sum_j k_j (1 - x_j) + sum_i c_i x_i = sum k + sum (c - k) x
        x = x.astype(dtype) - center[:, None]
        return jnp.sum(times(coefficient.astype(dtype), x), axis=-1)

    # the integer counts and the inputs are what the backward keeps (no float32 copy of bf16 x)
    total = jnp.sum(k, axis=-1).astype(dtype) + keep_inputs(linear, x, c - k)
    return jnp.where(jnp.any(jnp.isnan(z), axis=-1), jnp.nan, total)


def _sort_key(v):
    """Integer keys that order as the floats ``v`` (sorting them is several times faster on CPU)."""
    bits = jax.lax.bitcast_convert_type(v, jnp.dtype(f"int{8 * v.dtype.itemsize}"))
    return jnp.where(bits < 0, bits ^ jnp.iinfo(bits.dtype).max, bits)


def multilabel_soft_margin(logits, labels, *, class_weights=None, axis=-1, weights=None,
                           where=None, reduction="mean"):
    r"""Multi-label soft margin: per example, the mean over classes of the binary cross-entropy.

    .. math:: \ell = -\frac{1}{C} \sum_c w_c \big(y_c \log \sigma(x_c) + (1 - y_c) \log \sigma(-x_c)\big)

    Multi-label classification (one sigmoid per class) with one loss per
    example rather than per class: ``binary_cross_entropy`` averaged over the
    class axis, with optional class weights. As torch
    ``multilabel_soft_margin_loss``. Built on the custom-VJP sigmoid kernel: no
    forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``) applied directly.

    Args:
      logits: ``(..., C, ...)`` float array; ``axis`` is the class axis.
      labels: same shape, in ``[0, 1]`` (0/1 or soft).
      class_weights: ``(C,)`` non-negative, or None for 1.
      weights, where, reduction: see the conventions page.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-example loss (``"none"``).

    Raises:
      ValueError: shapes differ, bad ``class_weights`` shape or values, ``axis`` or ``reduction``.
      TypeError: integer ``logits``.
      LossInputError: a counted label outside [0, 1] (eager, or under ``jloss.checked``).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> x = jnp.array([[0.0, 2.0]])
      >>> round(float(jloss.multilabel_soft_margin(x, jnp.array([[1.0, 0.0]]))), 4)
      1.41

    References:
      PyTorch ``torch.nn.functional.multilabel_soft_margin_loss``.
    """
    logits, labels, class_weights, weights, where = checks.array_likes(
        logits, labels, class_weights, weights, where)
    axis, loss_shape, num_classes = class_axis(logits, axis, reduction, weights, where)
    checks.check_same_shape(logits=logits, labels=labels)
    check_class_vector("class_weights", class_weights, num_classes)
    checks.check_range("class_weights", class_weights, low=0)
    checks.check_unit_interval("labels", jnp.moveaxis(jnp.asarray(labels), axis, -1),
                               loss_mask(where, loss_shape))
    return _multilabel_soft_margin(logits, labels, class_weights, weights, where, axis=axis,
                                   reduction=reduction)


@functools.partial(jax.jit, static_argnames=("axis", "reduction"))
def _multilabel_soft_margin(logits, labels, class_weights, weights, where, *, axis, reduction):
    loss_shape, mask, row_mask = row_masks(logits.shape, axis, where)
    x = fill_masked(to_rows(logits, axis), row_mask, 0)
    y = fill_masked(to_rows(jnp.asarray(labels), axis), row_mask, 0)
    dtype = compute_dtype(x)
    per_class = sigmoid_bce(x, y, jnp.ones((), dtype), jnp.zeros((), dtype))
    if class_weights is not None:
        per_class = per_class * jax.lax.stop_gradient(class_weights).astype(dtype)
    loss = jnp.mean(per_class, axis=-1).reshape(loss_shape)
    return reduce_loss(loss, mask, weights, reduction)

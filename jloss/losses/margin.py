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
    checks.check_float(scores=scores)
    checks.check_same_shape(scores=scores, labels=labels)
    checks.check_convention(reduction, weights, where, jnp.shape(scores))
    mask = loss_mask(where, jnp.shape(scores))

    def bad(labels, mask=None):
        out = (labels != -1) & (labels != 0) & (labels != 1)
        return out if mask is None else out & mask

    arrays = {"labels": labels} if mask is None else {"labels": labels, "mask": mask}
    checks.check_values(bad, "hinge labels must be -1 or +1 (0 is read as -1)", **arrays)
    checks.check_range("margin", margin)


def hinge(scores, labels, *, margin=1.0, weights=None, where=None, reduction="mean"):
    """Hinge loss ``max(0, margin - y s)`` (max-margin binary classifiers, SVMs).

    ``labels`` in {-1, +1}; 0 is read as -1 (as Keras). Elementwise, shapes
    must match. Reference: Cortes & Vapnik (1995); ``keras.losses.hinge``.
    """
    _hinge_checks(scores, labels, weights, where, reduction, margin)
    return _hinge(scores, labels, margin, weights, where, squared=False, reduction=reduction)


def squared_hinge(scores, labels, *, margin=1.0, weights=None, where=None, reduction="mean"):
    """Squared hinge ``max(0, margin - y s)^2``: smooth, penalises violations more.

    Labels and shapes as :func:`hinge`. Reference: ``keras.losses.squared_hinge``.
    """
    _hinge_checks(scores, labels, weights, where, reduction, margin)
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
    """Multi-class margin loss (Crammer-Singer style, as torch ``multi_margin_loss``).

    Per example ``w_y * sum_{j != y} max(0, margin - s_y + s_j)^p / C`` with
    ``p`` in {1, 2}; ``"mean"`` divides by the number of counted examples.

    Args: scores (..., C, ...) float, labels integer of the shape without
      ``axis``, class_weights (C,) or None.
    Reference: PyTorch ``multi_margin_loss``; Weston & Watkins (1999).
    """
    axis, loss_shape, num_classes = class_axis(scores, axis, reduction, weights, where, "scores")
    check_sparse_labels(labels, scores, axis, loss_shape, "scores")
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    checks.check_range("margin", margin)
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

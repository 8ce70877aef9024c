"""Class-axis layout shared by the losses over a class axis."""

import jax.numpy as jnp

from jloss._core import checks
from jloss._core.reduce import combine_masks, fill_masked, loss_mask


def class_axis(logits, axis, reduction, weights, where, name="logits"):
    """Validate a class-axis loss call; return (axis, loss_shape, num_classes)."""
    checks.check_float(**{name: logits})
    axis = checks.check_axis(axis, jnp.ndim(logits), name)
    shape = jnp.shape(logits)
    if shape[axis] == 0:
        raise ValueError(f"{name} has shape {shape}: its class axis {axis} is empty (no classes)")
    loss_shape = shape[:axis] + shape[axis + 1:]
    checks.check_convention(reduction, weights, where, loss_shape)
    return axis, loss_shape, shape[axis]


def to_rows(x, axis):
    """Move ``axis`` last and flatten the rest: ``(..., C, ...) -> (N, C)``."""
    x = jnp.moveaxis(x, axis, -1)
    return x.reshape(-1, x.shape[-1])


def check_class_vector(name, v, num_classes):
    """A per-class factor (class_weights, alpha): a scalar or shape (C,), non-negative and finite."""
    if v is not None and jnp.ndim(v) != 0:
        checks.check_shape(name, v, (num_classes,), f"logits with {num_classes} classes")
    checks.check_nonnegative(name, v)


def check_sparse_labels(labels, logits, axis, loss_shape, name):
    """Integer labels with the shape of ``logits`` without its class axis."""
    checks.check_integer(labels=labels)
    one_hot = jnp.shape(labels) == jnp.shape(logits)
    hint = "; labels look one-hot: use categorical_cross_entropy or argmax" if one_hot else ""
    checks.check_shape("labels", labels, loss_shape,
                        f"{name} of shape {jnp.shape(logits)} without its class axis {axis}", hint)


def label_mask(labels, ignore_index, where, loss_shape):
    """The counted positions: ``where`` and ``labels != ignore_index`` (None if all count)."""
    keep = None if ignore_index is None else jnp.asarray(labels) != ignore_index
    return combine_masks(loss_mask(where, loss_shape), keep)


def sparse_rows(logits, labels, where, ignore_index, axis, fill, num_classes=None):
    """Flatten to (N, C) rows with safe labels; returns (x, labels, valid, mask).

    ``num_classes`` defaults to ``logits.shape[axis]``; a caller whose rows are
    not logits (the hidden states of :func:`jloss.linear_cross_entropy`) passes it.
    Masked rows of ``x`` are replaced by ``fill`` and their labels by 0.
    """
    loss_shape = labels.shape
    mask = label_mask(labels, ignore_index, where, loss_shape)
    row_mask = None if mask is None else mask.reshape(-1)
    if num_classes is None:
        num_classes = logits.shape[axis]
    x = fill_masked(to_rows(logits, axis), row_mask, fill)
    y = fill_masked(labels.reshape(-1), row_mask, 0)
    valid = (y >= 0) & (y < num_classes)
    return x, jnp.clip(y, 0, num_classes - 1), valid, mask


def row_masks(shape, axis, where):
    """For inputs of ``shape`` with a class axis: (loss_shape, mask, the mask of the (N, C) rows)."""
    loss_shape = shape[:axis] + shape[axis + 1:]
    mask = loss_mask(where, loss_shape)
    return loss_shape, mask, None if mask is None else mask.reshape(-1)

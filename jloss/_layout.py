"""Class-axis layout shared by the losses over a class axis."""

import jax.numpy as jnp

from jloss import _checks


def class_axis(logits, axis, reduction, weights, where, name="logits"):
    """Validate a class-axis loss call; return (axis, loss_shape, num_classes)."""
    _checks.check_float(**{name: logits})
    axis = _checks.check_axis(axis, jnp.ndim(logits), name)
    shape = jnp.shape(logits)
    loss_shape = shape[:axis] + shape[axis + 1:]
    _checks.check_convention(reduction, weights, where, loss_shape)
    return axis, loss_shape, shape[axis]


def to_rows(x, axis):
    """Move ``axis`` last and flatten the rest: ``(..., C, ...) -> (N, C)``."""
    x = jnp.moveaxis(x, axis, -1)
    return x.reshape(-1, x.shape[-1])


def check_class_vector(name, v, num_classes):
    """A per-class vector (class_weights, alpha) must have shape (C,)."""
    if v is not None and jnp.ndim(v) != 0:
        _checks.check_shape(name, v, (num_classes,), f"logits with {num_classes} classes")

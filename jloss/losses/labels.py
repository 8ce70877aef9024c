"""Label helpers."""

import jax
import jax.numpy as jnp

from jloss._core import checks


def one_hot(labels, num_classes, *, dtype=jnp.float32):
    """One-hot encode integer ``labels`` (...,) -> (..., num_classes).

    Labels outside ``[0, num_classes)`` give an all-zero row (as ``jax.nn.one_hot``).
    """
    labels = checks.array_likes(labels)
    checks.check_integer(labels=labels)
    num_classes = checks.check_int("num_classes", num_classes, low=1)
    return jax.nn.one_hot(labels, num_classes, dtype=dtype)


def smooth_labels(one_hot, alpha, *, axis=-1):
    """Label smoothing ``t (1 - alpha) + alpha / C`` along ``axis``.

    Reference: Szegedy et al., "Rethinking the Inception Architecture" (2016).
    """
    one_hot = checks.array_likes(one_hot)
    checks.check_float(one_hot=one_hot)
    checks.check_range("alpha", alpha, low=0, high=1)
    axis = checks.check_axis(axis, jnp.ndim(one_hot), "one_hot")
    return one_hot * (1 - alpha) + alpha / jnp.shape(one_hot)[axis]

"""Label helpers."""

import jax
import jax.numpy as jnp

from jloss._core import checks


def one_hot(labels, num_classes, *, dtype=jnp.float32):
    r"""One-hot encode integer labels: ``(...)`` to ``(..., num_classes)``.

    .. math:: \mathrm{one\_hot}(y)_c = [\, y = c \,]

    Builds the ``targets`` of :func:`categorical_cross_entropy` from integer
    labels (the sparse losses take the labels directly and never build one).
    Labels outside ``[0, num_classes)`` give an all-zero row. As
    ``jax.nn.one_hot``.

    Args:
      labels: ``(...)`` integer array.
      num_classes: ``C >= 1`` (a Python or NumPy int).
      dtype: the dtype of the result.

    Returns:
      ``(..., num_classes)`` array of ``dtype``.

    Raises:
      TypeError: float ``labels``.
      ValueError: ``num_classes`` is not an integer ``>= 1``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> jloss.one_hot(jnp.array([0, 2]), 3).tolist()
      [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]

    References:
      ``jax.nn.one_hot``; Keras ``keras.ops.one_hot``.
    """
    labels = checks.array_likes(labels)
    checks.check_integer(labels=labels)
    num_classes = checks.check_int("num_classes", num_classes, low=1)
    return jax.nn.one_hot(labels, num_classes, dtype=dtype)


def smooth_labels(one_hot, alpha, *, axis=-1):
    r"""Label smoothing: move ``alpha`` of the target mass to the uniform distribution.

    .. math:: t' = t\,(1 - \alpha) + \alpha / C

    along ``axis``. Regularises a classifier against over-confidence; the
    ``label_smoothing`` option of the cross-entropy losses does the same inside
    the loss. As optax ``smooth_labels``.

    Args:
      one_hot: ``(..., C, ...)`` float targets (one-hot or probabilities).
      alpha: the smoothing ``alpha`` in [0, 1].
      axis: the class axis.

    Returns:
      The smoothed targets, of the shape of ``one_hot``.

    Raises:
      TypeError: integer ``one_hot``.
      ValueError: ``alpha`` outside [0, 1], or a bad ``axis``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> [round(v, 4) for v in jloss.smooth_labels(jnp.array([1.0, 0.0, 0.0]), 0.3).tolist()]
      [0.8, 0.1, 0.1]

    References:
      Szegedy, C. et al. (2016). Rethinking the Inception Architecture for
      Computer Vision. CVPR.
    """
    one_hot = checks.array_likes(one_hot)
    checks.check_float(one_hot=one_hot)
    checks.check_range("alpha", alpha, low=0, high=1)
    axis = checks.check_axis(axis, jnp.ndim(one_hot), "one_hot")
    return one_hot * (1 - alpha) + alpha / jnp.shape(one_hot)[axis]

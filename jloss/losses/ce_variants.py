"""Cross-entropy variants: PolyLoss and the generalized (noise-robust) cross-entropy.

``poly_cross_entropy`` adds a polynomial term to the cross-entropy of probability
targets (the dense softmax-CE kernel computes both terms); ``generalized_cross_entropy``
interpolates between cross-entropy (q -> 0) and MAE on the probability (q = 1)
for training with noisy labels.
"""

import functools

import jax
import jax.numpy as jnp

from jloss._core import checks
from jloss._core.layout import check_sparse_labels, class_axis, row_masks, sparse_rows, to_rows
from jloss._core.reduce import constant, fill_masked, loss_mask, reduce_loss
from jloss.kernels.common import keep_inputs, picked
from jloss.kernels.softmax import dense_softmax_ce


def poly_cross_entropy(logits, targets, *, epsilon=2.0, axis=-1, label_smoothing=0.0,
                       weights=None, where=None, reduction="mean"):
    r"""Poly-1 cross-entropy: softmax cross-entropy plus ``epsilon (1 - p_t)``.

    .. math:: \ell = -\sum_c t'_c \log p_c + \epsilon \sum_c t'_c (1 - p_c),
       \quad p = \operatorname{softmax}(x), \; t' = t (1 - s) + s / C

    Multi-class classification where the leading polynomial term of the
    cross-entropy should weigh more (``epsilon > 0``, e.g. ImageNet) or less
    (``epsilon < 0``, imbalanced detection); ``epsilon = 0`` is
    :func:`categorical_cross_entropy`. As optax ``poly_loss_cross_entropy``
    (which has no label smoothing; here both terms use the smoothed targets).
    Both terms come from one custom-VJP softmax kernel (one softmax, a
    one-pass backward): no forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``)
    applied directly.

    Args:
      logits: ``(..., C, ...)`` float array; ``axis`` is the class axis.
      targets: same shape, finite and non-negative (one-hot or probabilities;
        they need not sum to 1).
      epsilon: ``>= -1`` (so the loss stays non-negative); may be traced.
      label_smoothing: ``s`` in [0, 1].
      weights, where, reduction: see the conventions page.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-example loss (``"none"``).

    Raises:
      ValueError: shapes differ, ``epsilon < -1``, ``label_smoothing`` outside [0, 1],
        bad ``axis`` or ``reduction``.
      TypeError: integer ``logits``.
      LossInputError: counted targets negative or not finite (eager, or under ``jloss.checked``).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> x = jnp.array([[0.0, 0.0]])
      >>> round(float(jloss.poly_cross_entropy(x, jnp.array([[1.0, 0.0]]))), 4)
      1.6931

    References:
      Leng et al. (2022), PolyLoss: a polynomial expansion perspective of
      classification loss functions, ICLR.
    """
    logits, targets, weights, where = checks.array_likes(logits, targets, weights, where)
    axis, loss_shape, _ = class_axis(logits, axis, reduction, weights, where)
    checks.check_same_shape(logits=logits, targets=targets)
    checks.check_float(targets=targets)
    checks.check_range("epsilon", epsilon, low=-1)
    checks.check_range("label_smoothing", label_smoothing, low=0, high=1)
    checks.check_nonnegative("targets", jnp.moveaxis(jnp.asarray(targets), axis, -1),
                             loss_mask(where, loss_shape))
    return _poly(logits, targets, epsilon, label_smoothing, weights, where, axis=axis,
                 smoothing_on=not checks.is_zero(label_smoothing),
                 reduction=reduction)


@functools.partial(jax.jit, static_argnames=("axis", "smoothing_on", "reduction"))
def _poly(logits, targets, epsilon, smoothing, weights, where, *, axis, smoothing_on, reduction):
    epsilon, smoothing = constant(epsilon, smoothing)
    loss_shape, mask, row_mask = row_masks(logits.shape, axis, where)
    x = fill_masked(to_rows(logits, axis), row_mask, 0)
    t = fill_masked(to_rows(targets, axis), row_mask, 0)
    loss = dense_softmax_ce(smoothing_on, x, t, jnp.asarray(smoothing), None, None,
                            jnp.asarray(epsilon))
    return reduce_loss(loss.reshape(loss_shape), mask, weights, reduction)


def generalized_cross_entropy(logits, labels, *, q=0.5, axis=-1, weights=None, where=None,
                              reduction="mean"):
    r"""Generalized cross-entropy: ``(1 - p_y^q) / q``, robust to noisy labels.

    .. math:: \ell = \frac{1 - p_y^{\,q}}{q}, \quad p = \operatorname{softmax}(x)

    Multi-class classification with label noise: ``q -> 0`` is the
    cross-entropy, ``q = 1`` is the MAE of the probabilities ``1 - p_y``, which
    ignores confidently wrong (likely mislabelled) examples. Computed in log
    space (``p_y^q = exp(q log_softmax(x)_y)``). As Keras
    ``categorical_generalized_cross_entropy`` on ``softmax(logits)``.

    Args:
      logits: ``(..., C, ...)`` float array; ``axis`` is the class axis.
      labels: integer array, the shape of ``logits`` without ``axis``, in ``[0, C)``.
      q: in (0, 1]; may be traced.
      weights, where, reduction: see the conventions page.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-example loss (``"none"``).

    Raises:
      ValueError: bad ``labels`` shape, ``q`` outside (0, 1], bad ``axis`` or ``reduction``.
      TypeError: integer ``logits`` or float ``labels``.
      LossInputError: a counted label outside ``[0, C)`` (eager, or under ``jloss.checked``;
        under a plain ``jax.jit`` that example's loss is NaN).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> x = jnp.log(jnp.array([[0.25, 0.75]]))
      >>> round(float(jloss.generalized_cross_entropy(x, jnp.array([0]))), 4)
      1.0

    References:
      Zhang & Sabuncu (2018), Generalized cross entropy loss for training deep
      neural networks with noisy labels, NeurIPS.
    """
    logits, labels, weights, where = checks.array_likes(logits, labels, weights, where)
    axis, loss_shape, num_classes = class_axis(logits, axis, reduction, weights, where)
    check_sparse_labels(labels, logits, axis, loss_shape, "logits")
    checks.check_range("q", q, low=0, high=1, low_open=True)
    checks.check_class_labels(labels, num_classes, loss_mask(where, loss_shape))
    return _generalized_ce(logits, labels, q, weights, where, axis=axis, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("axis", "reduction"))
def _generalized_ce(logits, labels, q, weights, where, *, axis, reduction):
    q = constant(q)
    x, y, valid, mask = sparse_rows(logits, labels, where, None, axis, 0)

    def loss(x, y):
        return -jnp.expm1(q * picked(jax.nn.log_softmax(x, axis=-1), y)) / q

    loss = jnp.where(valid, keep_inputs(loss, x, y, cast=True), jnp.nan).reshape(labels.shape)
    return reduce_loss(loss, mask, weights, reduction)

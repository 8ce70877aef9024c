"""Sparsemax: a softmax whose probabilities can be exactly 0, and its losses.

``sparsemax(x)`` is the Euclidean projection of ``x`` onto the probability
simplex (Martins & Astudillo, 2016): ``p_j = max(x_j - tau, 0)`` with the
threshold ``tau`` chosen so that the ``p_j`` sum to 1. The sparsemax loss is
its Fenchel-Young loss: the gradient with respect to the logits is
``sparsemax(x) - onehot(y)``, as the softmax cross-entropy's is
``softmax(x) - onehot(y)``. Use it when the model should put exactly zero
probability on implausible classes (attention, multi-label outputs).
"""

import functools

import jax
import jax.numpy as jnp

from jloss._core import checks
from jloss._core.dtypes import compute_dtype
from jloss._core.layout import check_sparse_labels, class_axis, sparse_rows
from jloss._core.reduce import fill_masked, loss_mask, reduce_loss
from jloss.kernels.common import keep_inputs, picked


def _project(x):
    """Sparsemax of the rows of ``x`` (classes last), differentiable through the threshold.

    The support (which classes get mass) comes from a sort and is piecewise
    constant; given it, ``tau = (sum_{j in S} x_j - 1) / |S|`` is linear in
    ``x``, so autodiff gives the exact Jacobian ``diag(s) - s s^T / |S|``
    everywhere but on the boundaries of the support.
    """
    z = jax.lax.stop_gradient(x)
    ranked = -jnp.sort(-z, axis=-1)
    k = jnp.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    cumulative = jnp.cumsum(ranked, axis=-1)
    size = jnp.sum(1 + k * ranked > cumulative, axis=-1, keepdims=True)
    tau_z = (jnp.take_along_axis(cumulative, size - 1, axis=-1) - 1) / size
    support = z > tau_z
    tau = (jnp.sum(jnp.where(support, x, 0), axis=-1, keepdims=True) - 1) / size.astype(x.dtype)
    return jnp.where(support, x - tau, 0)


def sparsemax(x, *, axis=-1):
    r"""Sparsemax activation: the Euclidean projection of ``x`` onto the simplex.

    .. math:: \operatorname{sparsemax}(x) = \arg\min_{p \in \Delta} \|p - x\|^2,
       \quad p_j = \max(x_j - \tau(x), 0)

    A softmax replacement whose outputs are probabilities with exact zeros
    (sparse attention, the readout of :func:`sparsemax_loss`). Differentiable
    almost everywhere; the Jacobian is ``diag(s) - s s^T / |S|`` on the support
    ``S`` (``s`` its indicator). As optax ``projection_simplex`` / ``jax.nn.sparsemax``.

    Args:
      x: ``(..., C, ...)`` float array; ``axis`` is the class axis.

    Returns:
      Probabilities of the shape of ``x``, in float32 for half-precision input.

    Raises:
      ValueError: bad ``axis``.
      TypeError: integer ``x``.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> [round(float(v), 4) for v in jloss.sparsemax(jnp.array([1.0, 0.5, -1.0]))]
      [0.75, 0.25, 0.0]

    References:
      Martins & Astudillo (2016), From softmax to sparsemax: a sparse model of
      attention and multi-label classification, ICML.
    """
    x = checks.array_likes(x)
    checks.check_float(x=x)
    axis = checks.check_axis(axis, jnp.ndim(x), "x")
    return _sparsemax(x, axis=axis)


@functools.partial(jax.jit, static_argnames=("axis",))
def _sparsemax(x, *, axis):
    rows = jnp.moveaxis(x, axis, -1).astype(compute_dtype(x))
    return jnp.moveaxis(_project(rows), -1, axis)


def sparsemax_loss(logits, labels, *, axis=-1, weights=None, where=None, reduction="mean"):
    r"""Multi-class sparsemax loss: the Fenchel-Young loss of sparsemax.

    .. math:: \ell = \langle p, x \rangle - x_y + \tfrac12 (1 - \|p\|^2),
       \quad p = \operatorname{sparsemax}(x)

    Multi-class classification that trains a sparsemax output: the gradient is
    ``p - onehot(y)`` and the loss is exactly 0 once the label holds all the
    mass (its logit leads the others by 1). As optax ``multiclass_sparsemax_loss``.

    Args:
      logits: ``(..., C, ...)`` float array; ``axis`` is the class axis.
      labels: integer array, the shape of ``logits`` without ``axis``, in ``[0, C)``.
      weights, where, reduction: see the conventions page.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-example loss (``"none"``).

    Raises:
      ValueError: bad ``labels`` shape, ``axis`` or ``reduction``.
      TypeError: integer ``logits`` or float ``labels``.
      LossInputError: a counted label outside ``[0, C)`` (eager, or under ``jloss.checked``;
        under a plain ``jax.jit`` that example's loss is NaN).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> x = jnp.array([[1.0, 0.5, -1.0]])
      >>> round(float(jloss.sparsemax_loss(x, jnp.array([1]))), 4)
      0.5625

    References:
      Martins & Astudillo (2016), From softmax to sparsemax, ICML; Blondel,
      Martins & Niculae (2020), Learning with Fenchel-Young losses, JMLR.
    """
    logits, labels, weights, where = checks.array_likes(logits, labels, weights, where)
    axis, loss_shape, num_classes = class_axis(logits, axis, reduction, weights, where)
    check_sparse_labels(labels, logits, axis, loss_shape, "logits")
    checks.check_class_labels(labels, num_classes, loss_mask(where, loss_shape))
    return _sparsemax_loss(logits, labels, weights, where, axis=axis, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("axis", "reduction"))
def _sparsemax_loss(logits, labels, weights, where, *, axis, reduction):
    x, y, valid, mask = sparse_rows(logits, labels, where, None, axis, 0)

    def loss_of(x):
        p = _project(x)
        return jnp.sum(p * x, axis=-1) - picked(x, y) + 0.5 * (1 - jnp.sum(p * p, axis=-1))

    loss = jnp.where(valid, keep_inputs(loss_of, x, cast=True), jnp.nan).reshape(labels.shape)
    return reduce_loss(loss, mask, weights, reduction)


def binary_sparsemax_loss(logits, labels, *, weights=None, where=None, reduction="mean"):
    r"""Binary sparsemax loss: the two-class sparsemax loss on one logit.

    .. math:: \ell = \operatorname{sparseplus}(-x) \text{ if } y = 1 \text{ else }
       \operatorname{sparseplus}(x), \quad
       \operatorname{sparseplus}(z) = 0,\ \tfrac14 (z + 1)^2,\ z
       \text{ for } z \le -1,\ |z| < 1,\ z \ge 1

    Binary (or multi-label) classification with a sparse readout: the loss and
    its gradient are exactly 0 once the logit is beyond 1 on the right side
    (unlike the logistic loss, which never reaches 0). Elementwise, as optax
    ``binary_sparsemax_loss`` (``sparsemax_loss``).

    Args:
      logits: ``(...)`` float array.
      labels: same shape, 0 or 1 (any numeric dtype).
      weights, where, reduction: see the conventions page.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-element loss (``"none"``).

    Raises:
      ValueError: shapes differ or an unknown ``reduction``.
      TypeError: integer ``logits``.
      LossInputError: a counted label is not 0 or 1 (eager, or under ``jloss.checked``).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> x = jnp.array([0.0, 3.0, -3.0])
      >>> [float(v) for v in jloss.binary_sparsemax_loss(x, jnp.array([1, 1, 1]), reduction="none")]
      [0.25, 0.0, 3.0]

    References:
      Blondel, Martins & Niculae (2020), Learning with Fenchel-Young losses, JMLR (Sec. 4.4).
    """
    logits, labels, weights, where = checks.array_likes(logits, labels, weights, where)
    checks.check_float(logits=logits)
    checks.check_same_shape(logits=logits, labels=labels)
    checks.check_convention(reduction, weights, where, jnp.shape(logits))
    mask = loss_mask(where, jnp.shape(logits))

    checks.check_values(labels, lambda y, xp: (y != 0) & (y != 1), "labels must be 0 or 1", mask)
    return _binary_sparsemax(logits, labels, weights, where, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("reduction",))
def _binary_sparsemax(logits, labels, weights, where, *, reduction):
    mask = loss_mask(where, logits.shape)
    y = fill_masked(jnp.asarray(labels), mask, 0)

    def loss_of(x):
        z = jnp.where(y == 1, -x, x)
        return jnp.where(z <= -1, 0, jnp.where(z >= 1, z, (z + 1) ** 2 / 4))

    loss = keep_inputs(loss_of, fill_masked(logits, mask, 0), cast=True)
    return reduce_loss(loss, mask, weights, reduction)

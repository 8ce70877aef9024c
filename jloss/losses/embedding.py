"""Embedding losses: distances between vectors, pairs, triplets and NT-Xent.

Metric and representation learning: the model maps inputs to vectors, and
the loss pulls matching vectors together and pushes the others apart, by
cosine (``cosine_distance``, ``cosine_embedding``, ``ntxent``) or p-norm
distance (``triplet_margin``), or on given scores / distances
(``margin_ranking``, ``hinge_embedding``).

Vector losses reduce the vector ``axis`` (default last): the unreduced loss
has the shape of the inputs without it, one value per vector. Pair labels
are -1 / +1 and are checked like the other losses' labels.
"""

import functools

import jax
import jax.numpy as jnp

from jloss._core import checks
from jloss._core.layout import class_axis, row_masks, to_rows
from jloss._core.reduce import fill_masked, loss_mask, reduce_loss
from jloss.kernels.common import keep_inputs


def _inv_norm(x, eps, keepdims=False):
    """``1 / max(||x||, eps)`` along the last axis, with a finite gradient at ``x = 0``."""
    return jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=keepdims), eps * eps))


def _unit(x, eps):
    """``x / max(||x||, eps)`` along the last axis."""
    return x * _inv_norm(x, eps, keepdims=True)


def _cosine(a, b, eps):
    """``a . b / (max(||a||, eps) max(||b||, eps))`` along the last axis, from per-row sums
    (no normalised (N, D) copies in the forward or the backward)."""
    return jnp.sum(a * b, axis=-1) * _inv_norm(a, eps) * _inv_norm(b, eps)


def _per_vector(fn, where, *arrays, axis):
    """(loss_shape, mask, ``fn`` of the vector arguments as (N, D) rows in the compute dtype).

    Masked rows are 0. ``fn`` runs under :func:`~jloss.kernels.common.keep_inputs`:
    in half precision the backward keeps the input rows, not their float32 copies.
    """
    loss_shape, mask, row_mask = row_masks(arrays[0].shape, axis, where)
    rows = (fill_masked(to_rows(a, axis), row_mask, 0) for a in arrays)
    return loss_shape, mask, keep_inputs(fn, *rows, cast=True)


def _vector_checks(arrays, axis, weights, where, reduction):
    """Float vectors of one shape; returns (axis, loss_shape)."""
    (name, first), *_ = arrays.items()
    axis, loss_shape, _ = class_axis(first, axis, reduction, weights, where, name)
    checks.check_same_shape(**arrays)
    checks.check_float(**arrays)
    return axis, loss_shape


def _pair_labels(labels, loss_shape, names, where):
    checks.check_shape("labels", labels, loss_shape, f"{names} without their vector axis")
    checks.check_sign_labels(labels, loss_mask(where, loss_shape))


def cosine_distance(predictions, targets, *, axis=-1, eps=1e-8, weights=None, where=None,
                    reduction="mean"):
    r"""Cosine distance: one minus the cosine similarity of two vectors.

    .. math:: \ell = 1 - \frac{p \cdot t}{\max(\|p\|, \epsilon) \, \max(\|t\|, \epsilon)}

    Regression of directions (embeddings, normalised features) where the
    length does not matter; in [0, 2]. A zero vector has similarity 0 (loss 1).
    The norms are clamped as torch ``cosine_similarity``.

    Args:
      predictions: ``(..., D, ...)`` float array; ``axis`` is the vector axis.
      targets: same shape.
      eps: ``> 0``, the floor of each norm.
      weights, where, reduction: see the conventions page; per vector.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-vector loss (``"none"``,
      the shape without ``axis``).

    Raises:
      ValueError: shapes differ, ``eps <= 0``, bad ``axis`` or ``reduction``.
      TypeError: integer inputs.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> p = jnp.array([[1.0, 0.0], [1.0, 1.0]])
      >>> [round(float(v), 4) for v in jloss.cosine_distance(p, jnp.array([[0.0, 2.0]] * 2),
      ...                                                    reduction="none")]
      [1.0, 0.2929]

    References:
      PyTorch ``torch.nn.functional.cosine_similarity``; optax ``cosine_distance``.
    """
    predictions, targets, weights, where = checks.array_likes(predictions, targets, weights, where)
    axis, _ = _vector_checks({"predictions": predictions, "targets": targets}, axis, weights,
                             where, reduction)
    checks.check_range("eps", eps, low=0, low_open=True)
    return _cosine_distance(predictions, targets, eps, weights, where, axis=axis,
                            reduction=reduction)


@functools.partial(jax.jit, static_argnames=("axis", "reduction"))
def _cosine_distance(predictions, targets, eps, weights, where, *, axis, reduction):
    loss_shape, mask, loss = _per_vector(lambda p, t: 1 - _cosine(p, t, eps), where, predictions,
                                         targets, axis=axis)
    return reduce_loss(loss.reshape(loss_shape), mask, weights, reduction)


def cosine_embedding(x1, x2, labels, *, margin=0.0, axis=-1, eps=1e-8, weights=None, where=None,
                     reduction="mean"):
    r"""Cosine embedding loss: similar pairs toward cosine 1, dissimilar ones below ``margin``.

    .. math:: \ell = 1 - \cos(x_1, x_2) \text{ if } y = 1, \quad
       \max(0, \cos(x_1, x_2) - m) \text{ if } y = -1

    Metric learning on pairs labelled similar (+1) or dissimilar (-1). As
    torch ``cosine_embedding_loss``; the cosine is that of
    :func:`cosine_distance` (norms clamped at ``eps``; torch adds 1e-12 to the
    squared norms instead, the same to 1e-12 relative for non-zero vectors).

    Args:
      x1: ``(..., D, ...)`` float array; ``axis`` is the vector axis.
      x2: same shape.
      labels: shape of ``x1`` without ``axis``; -1 or +1 (any numeric dtype).
      margin: in [-1, 1]; may be traced.
      eps: ``> 0``, the floor of each norm.
      weights, where, reduction: see the conventions page; per pair.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-pair loss (``"none"``).

    Raises:
      ValueError: shapes differ, ``margin`` outside [-1, 1], ``eps <= 0``, bad ``axis``
        or ``reduction``.
      TypeError: integer ``x1`` or ``x2``.
      LossInputError: a counted label is not -1 or +1 (eager, or under ``jloss.checked``).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> x1 = jnp.array([[1.0, 0.0], [1.0, 0.0]])
      >>> x2 = jnp.array([[1.0, 1.0], [1.0, 1.0]])
      >>> [round(float(v), 4) for v in jloss.cosine_embedding(x1, x2, jnp.array([1, -1]),
      ...                                                     reduction="none")]
      [0.2929, 0.7071]

    References:
      PyTorch ``torch.nn.functional.cosine_embedding_loss``.
    """
    x1, x2, labels, weights, where = checks.array_likes(x1, x2, labels, weights, where)
    axis, loss_shape = _vector_checks({"x1": x1, "x2": x2}, axis, weights, where, reduction)
    _pair_labels(labels, loss_shape, "x1 and x2", where)
    checks.check_range("margin", margin, low=-1, high=1)
    checks.check_range("eps", eps, low=0, low_open=True)
    return _cosine_embedding(x1, x2, labels, margin, eps, weights, where, axis=axis,
                             reduction=reduction)


@functools.partial(jax.jit, static_argnames=("axis", "reduction"))
def _cosine_embedding(x1, x2, labels, margin, eps, weights, where, *, axis, reduction):
    loss_shape, mask, cos = _per_vector(lambda a, b: _cosine(a, b, eps), where, x1, x2, axis=axis)
    cos = cos.reshape(loss_shape)
    y = fill_masked(jnp.asarray(labels), mask, 1)
    loss = jnp.where(y == 1, 1 - cos, jnp.maximum(0, cos - margin))
    return reduce_loss(loss, mask, weights, reduction)


def triplet_margin(anchors, positives, negatives, *, margin=1.0, p=2.0, eps=1e-6, swap=False,
                   axis=-1, weights=None, where=None, reduction="mean"):
    r"""Triplet margin loss: the anchor nearer its positive than its negative by ``margin``.

    .. math:: \ell = \max\big(0, \; d(a, p) - d(a, n) + m\big), \quad
       d(x, y) = \|x - y + \epsilon\|_p

    Metric learning (face recognition, retrieval) from (anchor, positive,
    negative) triplets. ``swap=True`` replaces ``d(a, n)`` by
    ``min(d(a, n), d(p, n))`` (the distance swap of Balntas et al.). As torch
    ``triplet_margin_loss`` (whose distance adds ``eps`` to the difference).

    Args:
      anchors: ``(..., D, ...)`` float array; ``axis`` is the vector axis.
      positives, negatives: same shape.
      margin: the required gap; may be traced.
      p: ``> 0``, the norm degree.
      eps: ``>= 0``, added to each difference.
      swap: use the distance swap.
      weights, where, reduction: see the conventions page; per triplet.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-triplet loss (``"none"``).

    Raises:
      ValueError: shapes differ, ``p <= 0``, ``eps < 0``, bad ``axis`` or ``reduction``.
      TypeError: integer inputs.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> a, pos, neg = jnp.array([[0.0, 0.0]]), jnp.array([[0.0, 1.0]]), jnp.array([[1.5, 0.0]])
      >>> round(float(jloss.triplet_margin(a, pos, neg, eps=0.0)), 4)
      0.5

    References:
      Schroff et al. (2015), FaceNet, CVPR; Balntas et al. (2016), Learning local
      feature descriptors with triplets and shallow convolutional neural networks, BMVC.
    """
    anchors, positives, negatives, weights, where = checks.array_likes(
        anchors, positives, negatives, weights, where)
    axis, _ = _vector_checks({"anchors": anchors, "positives": positives,
                              "negatives": negatives}, axis, weights, where, reduction)
    checks.check_range("margin", margin)
    checks.check_range("p", p, low=0, low_open=True)
    checks.check_range("eps", eps, low=0)
    return _triplet(anchors, positives, negatives, margin, p, eps, weights, where, swap=bool(swap),
                    degree=_static_degree(p), axis=axis, reduction=reduction)


def _static_degree(p):
    """``p`` as a Python float where it is a concrete 1 or 2, else None: the powers then
    compile to ``|d|`` or ``d * d`` instead of ``exp(p log |d|)``."""
    try:
        value = float(p)
    except (TypeError, jax.errors.ConcretizationTypeError):  # traced
        return None
    return value if value in (1.0, 2.0) else None


def _root(total, p):
    """``total ** (1 / p)``, with a zero (sub)gradient at 0."""
    positive = total > 0
    return jnp.where(positive, jnp.where(positive, total, 1) ** (1 / p), 0)


@jax.custom_jvp
def _euclidean(d):
    """``||d||_2`` per row; derivative ``d / ||d||``, 0 at ``d = 0`` (where ``d`` is 0)."""
    return jnp.sqrt(jnp.sum(d * d, axis=-1))


@_euclidean.defjvp
def _euclidean_jvp(primals, tangents):
    (d,), (dd,) = primals, tangents
    norm = _euclidean(d)
    # below the smallest normal number the norm is 0 or subnormal, and |d| no larger: the
    # floor keeps 0 / 0 out at the cost of a derivative under 1 for a subnormal norm
    return norm, jnp.sum(d * dd, axis=-1) / jnp.maximum(norm, jnp.finfo(norm.dtype).tiny)


def _p_norm(d, p, degree):
    """``||d||_p`` per row; a static ``degree`` of 2 or 1 without exp and log per element."""
    if degree == 2.0:
        return _euclidean(d)
    return _root(jnp.sum(jnp.abs(d) if degree == 1.0 else jnp.abs(d) ** p, axis=-1), degree or p)


@functools.partial(jax.jit, static_argnames=("swap", "degree", "axis", "reduction"))
def _triplet(anchors, positives, negatives, margin, p, eps, weights, where, *, swap, degree, axis,
             reduction):
    def distances(a, pos, neg):
        """``||x - y + eps||_p`` per row for the pairs (a, pos), (a, neg) [and (pos, neg)]."""
        # (x + eps) - y: XLA:CPU then writes each difference once and the backward reads it,
        # where for (x - y) + eps it recomputes both from the three inputs
        pairs = ((a, pos), (a, neg), (pos, neg)) if swap else ((a, pos), (a, neg))
        return [_p_norm((x + eps) - y, p, degree) for x, y in pairs]

    # in half precision the backward recomputes the differences from the input rows, and
    # each input's cotangent is summed in float32 before its one cast
    loss_shape, mask, (d_pos, d_neg, *d_swap) = _per_vector(distances, where, anchors, positives,
                                                            negatives, axis=axis)
    if swap:
        d_neg = jnp.minimum(d_neg, d_swap[0])
    loss = jnp.maximum(0, d_pos - d_neg + margin)
    return reduce_loss(loss.reshape(loss_shape), mask, weights, reduction)


def _elementwise_pair_checks(arrays, labels, weights, where, reduction):
    first = next(iter(arrays.values()))
    checks.check_float(**arrays)
    checks.check_same_shape(**arrays, labels=labels)
    checks.check_convention(reduction, weights, where, jnp.shape(first))
    checks.check_sign_labels(labels, loss_mask(where, jnp.shape(first)))


def margin_ranking(x1, x2, labels, *, margin=0.0, weights=None, where=None, reduction="mean"):
    r"""Margin ranking loss: ``x1`` above ``x2`` (``y = 1``) or below (``y = -1``) by ``margin``.

    .. math:: \ell = \max\big(0, \; -y (x_1 - x_2) + m\big)

    Learning to rank from pairs of scores (which of two items should rank
    higher). Elementwise, as torch ``margin_ranking_loss``.

    Args:
      x1: ``(...)`` float array of scores.
      x2: same shape.
      labels: same shape, -1 or +1 (any numeric dtype).
      margin: the required gap; may be traced.
      weights, where, reduction: see the conventions page.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-pair loss (``"none"``).

    Raises:
      ValueError: shapes differ or an unknown ``reduction``.
      TypeError: integer ``x1`` or ``x2``.
      LossInputError: a counted label is not -1 or +1 (eager, or under ``jloss.checked``).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> x1, x2 = jnp.array([1.0, 0.2]), jnp.array([0.5, 0.5])
      >>> round(float(jloss.margin_ranking(x1, x2, jnp.array([1, 1]), margin=0.5)), 4)
      0.4

    References:
      PyTorch ``torch.nn.functional.margin_ranking_loss``.
    """
    x1, x2, labels, weights, where = checks.array_likes(x1, x2, labels, weights, where)
    _elementwise_pair_checks({"x1": x1, "x2": x2}, labels, weights, where, reduction)
    checks.check_range("margin", margin)
    return _margin_ranking(x1, x2, labels, margin, weights, where, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("reduction",))
def _margin_ranking(x1, x2, labels, margin, weights, where, *, reduction):
    mask = loss_mask(where, x1.shape)
    loss = keep_inputs(lambda a, b, y: jnp.maximum(0, margin - y * (a - b)),
                       fill_masked(x1, mask, 0), fill_masked(x2, mask, 0),
                       fill_masked(jnp.asarray(labels), mask, 1), cast=True)
    return reduce_loss(loss, mask, weights, reduction)


def hinge_embedding(distances, labels, *, margin=1.0, weights=None, where=None, reduction="mean"):
    r"""Hinge embedding loss: small distances for similar pairs, above ``margin`` for the others.

    .. math:: \ell = x \text{ if } y = 1, \quad \max(0, m - x) \text{ if } y = -1

    Metric learning on precomputed pair distances ``x`` (e.g. L1 distances of
    embeddings): a contrastive loss in hinge form. Elementwise, as torch
    ``hinge_embedding_loss``.

    Args:
      distances: ``(...)`` float array (usually non-negative).
      labels: same shape, -1 or +1 (any numeric dtype).
      margin: may be traced.
      weights, where, reduction: see the conventions page.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-pair loss (``"none"``).

    Raises:
      ValueError: shapes differ or an unknown ``reduction``.
      TypeError: integer ``distances``.
      LossInputError: a counted label is not -1 or +1 (eager, or under ``jloss.checked``).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> d = jnp.array([0.3, 0.3, 2.0])
      >>> [round(float(v), 4) for v in jloss.hinge_embedding(d, jnp.array([1, -1, -1]),
      ...                                                    reduction="none")]
      [0.3, 0.7, 0.0]

    References:
      PyTorch ``torch.nn.functional.hinge_embedding_loss``; Hadsell, Chopra &
      LeCun (2006), Dimensionality reduction by learning an invariant mapping, CVPR.
    """
    distances, labels, weights, where = checks.array_likes(distances, labels, weights, where)
    _elementwise_pair_checks({"distances": distances}, labels, weights, where, reduction)
    checks.check_range("margin", margin)
    return _hinge_embedding(distances, labels, margin, weights, where, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("reduction",))
def _hinge_embedding(distances, labels, margin, weights, where, *, reduction):
    mask = loss_mask(where, distances.shape)
    loss = keep_inputs(lambda x, y: jnp.where(y == 1, x, jnp.maximum(0, margin - x)),
                       fill_masked(distances, mask, 0), fill_masked(jnp.asarray(labels), mask, 1),
                       cast=True)
    return reduce_loss(loss, mask, weights, reduction)


def ntxent(embeddings, labels, *, temperature=0.07, weights=None, where=None, reduction="mean"):
    r"""NT-Xent: the normalised temperature-scaled cross-entropy of SimCLR.

    .. math:: \ell_i = -\sum_{j \in P(i)} \log \frac{e^{s_{ij}}}{e^{s_{ij}} + \sum_{k \in N(i)} e^{s_{ik}}},
       \quad s_{ij} = \frac{\cos(e_i, e_j)}{\tau}

    Self-supervised / supervised contrastive learning: embeddings with the
    same label (``P(i)``: the other vectors of ``i``'s group) are pulled
    together, the others (``N(i)``) pushed apart. Every vector of the batch is
    compared with every other one (leading axes are flattened into one batch).
    ``reduction="none"`` gives ``l_i``, summed over the positive pairs of
    anchor ``i``; ``"mean"`` divides the (weighted) sum by the (weighted)
    number of positive pairs, which is optax ``ntxent``. Vectors excluded by
    ``where`` take no part at all (as anchors, positives or negatives); an
    anchor without positives contributes 0 and counts 0.

    Args:
      embeddings: ``(..., D)`` float array.
      labels: integer array of shape ``(...)``: the group of each vector.
      temperature: ``> 0``; may be traced.
      weights, where, reduction: see the conventions page; per anchor.

    Returns:
      A float32 scalar (``"mean"``/``"sum"``) or the per-anchor loss (``"none"``).

    Raises:
      ValueError: bad ``labels`` shape, ``temperature <= 0`` or unknown ``reduction``.
      TypeError: integer ``embeddings`` or float ``labels``.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> e = jnp.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
      >>> round(float(jloss.ntxent(e, jnp.array([0, 0, 1, 1]), temperature=1.0)), 4)
      0.5978

    References:
      Chen et al. (2020), A simple framework for contrastive learning of visual
      representations (SimCLR), ICML; optax ``ntxent``.
    """
    embeddings, labels, weights, where = checks.array_likes(embeddings, labels, weights, where)
    checks.check_float(embeddings=embeddings)
    shape = jnp.shape(embeddings)
    if len(shape) < 1:
        raise ValueError("embeddings must have a vector axis (the last), got a scalar")
    checks.check_integer(labels=labels)
    if jnp.shape(labels) != shape[:-1]:
        raise ValueError(f"labels has shape {jnp.shape(labels)} but embeddings of shape {shape} "
                         f"needs labels of shape {shape[:-1]} (one per embedding)")
    checks.check_convention(reduction, weights, where, shape[:-1])
    checks.check_range("temperature", temperature, low=0, low_open=True)
    return _ntxent(embeddings, labels, temperature, weights, where, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("reduction",))
def _ntxent(embeddings, labels, temperature, weights, where, *, reduction):
    y = labels.reshape(-1)
    mask = loss_mask(where, embeddings.shape[:-1])
    counted = jnp.ones(y.shape, bool) if mask is None else mask.reshape(-1)

    def per_anchor(e):
        # the (N, N) similarities and pair masks are rebuilt from the rows and labels in the
        # backward (half precision), never kept
        u = _unit(e, jnp.sqrt(jnp.finfo(e.dtype).eps))  # optax's norm floor
        s = u @ u.T / temperature
        both = counted[:, None] & counted[None, :]
        same = (y[:, None] == y[None, :]) & both
        positive = same & ~jnp.eye(y.shape[0], dtype=bool)
        negative = ~same & both
        shift = jax.lax.stop_gradient(jnp.max(jnp.where(same | negative, s, -jnp.inf), axis=-1,
                                              initial=-jnp.inf, keepdims=True))
        shifted = s - jnp.where(jnp.isfinite(shift), shift, 0)
        others = jnp.sum(jnp.where(negative, jnp.exp(jnp.where(negative, shifted, 0)), 0), axis=-1,
                         keepdims=True)
        safe = jnp.where(positive, shifted, 0)
        terms = jnp.log(others + jnp.exp(safe)) - safe
        pairs = jnp.sum(positive, axis=-1).astype(e.dtype)
        return jnp.sum(jnp.where(positive, terms, 0), axis=-1), pairs

    loss_shape, mask, (loss, pairs) = _per_vector(per_anchor, where, embeddings,
                                                  axis=embeddings.ndim - 1)
    return reduce_loss(loss.reshape(loss_shape), mask, weights, reduction,
                       normalizer=pairs.reshape(loss_shape))

"""Contrastive losses for paired embeddings: InfoNCE / CLIP and the sigmoid (SigLIP) loss.

Task guide: two towers embed paired data (image and caption, query and
document, two views of one image); row i of one side should match row i of
the other and no other row of the batch. ``info_nce`` is a softmax over the
batch (CLIP with ``symmetric=True``); ``sigmoid_contrastive`` scores every
pair on its own (SigLIP), which needs no softmax over the whole batch and so
shards without gathering it.

The examples of a batch are each other's negatives, so both losses scale with
the devices: inside ``jax.shard_map`` or ``jax.pmap`` with ``axis_name`` set,
the negatives are the rows of every device on that axis and the loss is the
loss of the global batch. ``where`` drops an example from the batch
entirely: it is neither scored nor anyone's negative, so ``where=m`` gives
the loss of ``x[m], y[m]`` (padding rows may hold anything, NaN included).
"""

import functools
import math

import jax
import jax.numpy as jnp

from jloss._core import checks
from jloss._core.dtypes import compute_dtype
from jloss._core.layout import class_axis, to_rows
from jloss._core.reduce import fill_masked, loss_mask, reduce_loss
from jloss.kernels.common import keep_inputs
from jloss.kernels.contrastive import sigmoid_losses

_EPS = 1e-12  # as torch.nn.functional.normalize


def _normalized(x, keep):
    """Rows scaled to unit L2 norm (``x / max(|x|, eps)``), masked rows zero, in the compute dtype."""
    x = fill_masked(x, keep, 0).astype(compute_dtype(x))
    sq = jnp.sum(x * x, axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq, _EPS**2))


def _paired_checks(a_name, a, b_name, b, weights, where, reduction):
    """Two (..., D) embedding arrays of one shape; returns the loss shape."""
    checks.check_float(**{a_name: a, b_name: b})
    checks.check_same_shape(**{a_name: a, b_name: b})
    _, loss_shape, _ = class_axis(a, -1, reduction, weights, where, a_name)
    return loss_shape


def _gather(x, axis_name):
    return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True)


def _offset(n, axis_name):
    """The global index of this device's first row."""
    return 0 if axis_name is None else jax.lax.axis_index(axis_name) * n


def _cross_entropy(x, candidates, allowed, targets, temperature):
    """``logsumexp_j (x_i . c_j / T) - x_i . c_{target_i} / T`` over the allowed columns."""
    s = (x @ candidates.T) / temperature
    s = jnp.where(allowed[None, :], s, -jnp.inf)
    m = jax.lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True, initial=-jnp.inf))
    m = jnp.where(jnp.isfinite(m), m, 0)
    lse = m[:, 0] + jnp.log(jnp.sum(jnp.exp(s - m), axis=-1))
    return lse - jnp.take_along_axis(s, targets[:, None], axis=-1)[:, 0]


def info_nce(queries, keys, *, temperature=0.07, labels=None, symmetric=False, axis_name=None,
             weights=None, where=None, reduction="mean"):
    r"""InfoNCE: cross-entropy over the similarities of a query to every key (CLIP, SimCLR-style).

    .. math::

        l_i = -\log \frac{\exp(\hat q_i \cdot \hat k_{y_i} / T)}
                         {\sum_j \exp(\hat q_i \cdot \hat k_j / T)}

    over L2-normalised rows :math:`\hat q, \hat k`, with :math:`y_i` = ``labels[i]``
    (default ``i``: row i of ``queries`` and of ``keys`` are a pair) and the
    temperature ``T``. ``symmetric=True`` averages it with the same loss from
    the keys to the queries, per pair (CLIP). As the ``cross_entropy`` of the
    similarity matrix over ``T`` in the CLIP paper and ``optax`` /
    ``torch`` recipes.

    Args:
      queries: (N, D) float (or (..., D): every leading position is a query).
      keys: (M, D) float; with ``labels=None`` the shape of ``queries`` (the pairs).
      temperature: T > 0, a float or a scalar array (it may be learned: it gets
        a gradient).
      labels: (N,) int in [0, M), the matching key of each query; with
        ``axis_name``, an index into the keys of every device (device d's rows
        come after those of devices 0..d-1). None: the pairs.
      symmetric: average with the keys-to-queries loss (needs ``labels=None``).
      axis_name: inside ``shard_map`` / ``pmap``, the mesh axis the batch is
        sharded over: the keys (and for ``symmetric``, the queries) of every
        device are all-gathered as negatives, and ``"sum"`` / ``"mean"``
        reduce over the global batch (the same value on every device);
        ``"none"`` returns the local rows' losses. With float16 / bfloat16
        inputs the backward gathers them again rather than keeping float32
        copies.
      weights, where, reduction: the package convention, per query. With
        ``labels=None`` a masked pair also leaves the negatives.

    Returns:
      A scalar, or the per-query losses (N,) for ``reduction="none"``.

    Raises:
      ValueError: shapes that do not fit, ``symmetric`` with ``labels``,
        ``temperature <= 0``. TypeError: integer embeddings or float labels.
      LossInputError: (eager, or under :func:`jloss.checked`) a label outside
        [0, M); under a plain ``jax.jit`` that query's loss is NaN.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> q = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> round(float(jloss.info_nce(q, q, temperature=1.0)), 4)
      0.3133
      >>> round(float(jloss.info_nce(q, q[::-1], temperature=1.0)), 4)  # swapped pairs
      1.3133

    References:
      van den Oord et al., "Representation Learning with Contrastive Predictive
      Coding" (2018); Radford et al., "Learning Transferable Visual Models
      From Natural Language Supervision" (CLIP, 2021).
    """
    queries, keys, labels, weights, where = checks.array_likes(queries, keys, labels, weights, where)
    checks.check_float(queries=queries, keys=keys)
    if labels is None:
        loss_shape = _paired_checks("queries", queries, "keys", keys, weights, where, reduction)
    else:
        if symmetric:
            raise ValueError("symmetric=True needs labels=None (row i of queries and keys "
                             "are a pair)")
        _, loss_shape, dim = class_axis(queries, -1, reduction, weights, where, "queries")
        if jnp.ndim(keys) != 2 or jnp.shape(keys)[-1] != dim:
            raise ValueError(f"keys must be (M, {dim}) for queries of shape "
                             f"{jnp.shape(queries)}, got keys {jnp.shape(keys)}")
        checks.check_integer(labels=labels)
        checks.check_shape("labels", labels, loss_shape, f"queries of shape {jnp.shape(queries)}")
        if axis_name is None:
            checks.check_class_labels(labels, jnp.shape(keys)[0], loss_mask(where, loss_shape))
    checks.check_range("temperature", temperature, low=0, low_open=True)
    return _info_nce(queries, keys, temperature, labels, weights, where, symmetric=symmetric,
                     axis_name=axis_name, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("symmetric", "axis_name", "reduction"))
def _info_nce(queries, keys, temperature, labels, weights, where, *, symmetric, axis_name,
              reduction):
    loss_shape = queries.shape[:-1]
    mask = loss_mask(where, loss_shape)
    rows = None if mask is None else mask.reshape(-1)
    paired = labels is None
    n = math.prod(loss_shape)
    keep = jnp.ones((n,), bool) if rows is None else rows
    keys_keep = keep if paired else jnp.ones(keys.shape[:1], bool)
    all_keep = _gather(keys_keep, axis_name)
    num_keys = all_keep.shape[0]
    if paired:
        targets = _offset(n, axis_name) + jnp.arange(n)
    else:
        targets = fill_masked(labels.reshape(-1), rows, 0)
    valid = (targets >= 0) & (targets < num_keys)
    targets = jnp.clip(targets, 0, num_keys - 1)

    def per_query(queries, keys):
        # from the raw rows: in half precision the backward normalises and gathers again
        # rather than keeping float32 rows and (N, M) similarities
        q = _normalized(queries, rows)
        k = _normalized(keys, rows if paired else None)
        loss = _cross_entropy(q, _gather(k, axis_name), all_keep, targets, temperature)
        if symmetric:
            back = _cross_entropy(k, _gather(q, axis_name), _gather(keep, axis_name), targets,
                                  temperature)
            loss = (loss + back) / 2
        return loss

    loss = keep_inputs(per_query, to_rows(queries, -1), to_rows(keys, -1))
    loss = jnp.where(valid, loss, jnp.nan).reshape(loss_shape)
    return reduce_loss(loss, mask, weights, reduction, axis_name=axis_name)


def sigmoid_contrastive(x, y, *, temperature, bias, axis_name=None, weights=None, where=None,
                        reduction="mean"):
    r"""Sigmoid contrastive loss (SigLIP): every pair of the batch is a binary classification.

    .. math::

        l_i = \sum_j -\log \sigma\big(z_{ij} (t\, \hat x_i \cdot \hat y_j + b)\big),
        \qquad z_{ij} = \begin{cases} +1 & i = j \\ -1 & i \ne j \end{cases}

    over L2-normalised rows :math:`\hat x, \hat y`; ``"mean"`` divides the sum
    over the rows by the batch size, as SigLIP. ``temperature`` ``t`` multiplies
    the similarities (SigLIP's learnable scale, ``exp(t')`` initialised at 10)
    and ``bias`` ``b`` (initialised at -10) offsets them; both get gradients.

    Args:
      x, y: (N, D) float, row i of ``x`` paired with row i of ``y`` (or (..., D):
        every leading position is a pair).
      temperature: t, a float or scalar array (learnable).
      bias: b, a float or scalar array (learnable).
      axis_name: inside ``shard_map`` / ``pmap``, the mesh axis the batch is
        sharded over: the blocks of ``y`` pass round the devices of that axis
        (``jax.lax.ppermute``; a device holds at most two blocks, no
        all-gather), every row is scored against the global batch and
        ``"sum"`` / ``"mean"`` reduce over it (the same value on every
        device); ``"none"`` returns the local rows' losses. The backward pass
        runs the ring again (custom VJP: no forward-mode autodiff on this path).
      weights, where, reduction: the package convention, per pair; a masked
        pair also leaves the negatives.

    Returns:
      A scalar, or the per-row losses (N,) for ``reduction="none"``.

    Raises:
      ValueError: ``x`` and ``y`` of different shapes (naming both), bad
        ``weights`` / ``where`` / ``reduction``. TypeError: integer embeddings.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> round(float(jloss.sigmoid_contrastive(x, x, temperature=10.0, bias=-5.0)), 4)
      0.0134

    References:
      Zhai et al., "Sigmoid Loss for Language Image Pre-Training" (SigLIP, ICCV 2023).
    """
    x, y, weights, where = checks.array_likes(x, y, weights, where)
    _paired_checks("x", x, "y", y, weights, where, reduction)
    return _sigmoid_contrastive(x, y, temperature, bias, weights, where, axis_name=axis_name,
                                reduction=reduction)


@functools.partial(jax.jit, static_argnames=("axis_name", "reduction"))
def _sigmoid_contrastive(x, y, temperature, bias, weights, where, *, axis_name, reduction):
    loss_shape = x.shape[:-1]
    mask = loss_mask(where, loss_shape)
    rows = None if mask is None else mask.reshape(-1)

    def per_row(x, y):
        # from the raw rows: in half precision the backward normalises again rather than
        # keeping float32 rows (the ring's residuals) and (N, N) blocks
        a, b = _normalized(x, rows), _normalized(y, rows)
        keep = jnp.ones(a.shape[:1], a.dtype) if rows is None else rows.astype(a.dtype)
        t = jnp.asarray(temperature, a.dtype)
        return sigmoid_losses(a, b, keep, t, jnp.asarray(bias, a.dtype), axis_name)

    loss = keep_inputs(per_row, to_rows(x, -1), to_rows(y, -1))
    return reduce_loss(loss.reshape(loss_shape), mask, weights, reduction, axis_name=axis_name)

"""The multi-label hinge: every listed target's score against every other class's.

Per row of scores ``x`` (classes last) with target classes listed in
``labels`` (the first ``count`` entries of the row),

.. math:: \\ell = \\sum_{j < \\mathrm{count}} \\sum_{i \\notin Y} \\max(0, 1 - x_{y_j} + x_i),

``Y`` the set of listed classes. As torch's kernel, the loop runs over the
listed slots, one pass over the row's classes each: O(C x targets) per row,
no sort and no (C, C) comparison. A class listed twice counts twice, as in
torch. The loop runs as many times as the longest list in the batch.

The forward sums the hinges themselves (no cancellation at large scores) and
counts, per class, how often it enters the sum: ``+1`` for each target whose
margin a non-target ``i`` violates, ``-k_j`` for target ``y_j`` violated by
``k_j`` classes. The loss is piecewise linear, so these integer counts are its
derivative: a custom JVP, ``sum_i counts_i dx_i``, which JAX transposes for the
gradient (the loop itself is never differentiated). The backward keeps the
counts, not their float32 conversion (a checkpoint policy).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from jloss.kernels.common import vary_together

_COUNTS = "multilabel_hinge_counts"


def multilabel_hinge(x, labels, count):
    """Per row, the hinge sum above: ``x`` (N, C) float32 / float64, ``labels`` (N, C) int, ``count`` (N,).

    Indices in ``labels[:, :count]`` must be in ``[0, C)``; the caller checks them.
    Half-precision scores are cast by the caller: the cast's own backward
    casts the gradient back, and no float32 copy is kept.
    """
    hinge = jax.checkpoint(lambda *args: _hinge_and_counts(*args)[0],  # keeps integer counts
                           policy=jax.checkpoint_policies.save_only_these_names(_COUNTS))
    return hinge(*vary_together(x, labels, count))


@jax.custom_jvp
def _hinge_and_counts(x, labels, count):
    rows = jnp.arange(x.shape[0])
    nan_row = jnp.any(jnp.isnan(x), axis=-1)
    count = jnp.where(nan_row, 0, count)  # a NaN row's loss is NaN, its gradient 0
    longest = jnp.max(count, initial=0)

    def slot(j):  # (N,) the class listed in slot j, and whether the row lists one there
        listed = j < count
        return jnp.where(listed, labels[:, j], 0), listed

    def mark_target(j, is_target):
        column, listed = slot(j)
        return is_target.at[rows, column].max(listed)

    is_target = jax.lax.fori_loop(0, longest, mark_target, jnp.zeros_like(x, bool))

    def add_slot(j, carry):
        total, counts = carry
        column, listed = slot(j)
        hinge = 1 - x[rows, column][:, None] + x
        violates = (hinge > 0) & ~is_target & listed[:, None]  # NaN hinges (inf - inf) do not count
        total = total + jnp.sum(jnp.where(violates, hinge, 0), axis=-1)
        counts = counts + violates.astype(counts.dtype)
        return total, counts.at[rows, column].add(-jnp.sum(violates, axis=-1, dtype=counts.dtype))

    start = (jnp.zeros_like(x[:, 0]), jnp.zeros_like(x, jnp.int32))
    total, counts = jax.lax.fori_loop(0, longest, add_slot, start)
    return jnp.where(nan_row, jnp.nan, total), counts


@_hinge_and_counts.defjvp
def _jvp(primals, tangents):
    # the rule calls the function itself, so a second derivative uses the rule again
    total, counts = _hinge_and_counts(*primals)
    counts = checkpoint_name(counts, _COUNTS)  # not their float32 conversion
    no_tangent = np.zeros(counts.shape, jax.dtypes.float0)
    return (total, counts), (jnp.sum(counts * tangents[0], axis=-1), no_tangent)

"""Sequence losses: connectionist temporal classification (CTC).

Task guide: a model emits one distribution over ``K`` symbols (one of them
the blank) per frame and the target is a shorter label sequence with no
frame-level alignment (speech and handwriting recognition) -> ``ctc``.

The kernel (:mod:`jloss.kernels.ctc`) is a log-space forward-backward with a
closed-form backward pass; like every ``jax.custom_vjp`` function it does not
support forward-mode autodiff applied to it directly (``jax.jvp``,
``jax.jacfwd``).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jloss._core import checks
from jloss._core.reduce import combine_masks, fill_masked, loss_mask, reduce_loss
from jloss.kernels.ctc import ctc_nll


def _lengths(lengths, batch, full):
    # the default as NumPy: concrete under jax.jit too, so the labels stay checkable
    return np.full(batch, full, np.int32) if lengths is None else lengths


def _bad_sequences(labels, logit_lengths, label_lengths, num_frames, num_classes, blank_id, xp=jnp):
    """Per sequence: a length out of range, or a label (within its length) that is not a
    symbol or is the blank."""
    positions = xp.arange(labels.shape[-1])
    inside = positions < label_lengths[..., None]
    symbol = (labels >= 0) & (labels < num_classes) & (labels != blank_id)
    bad_label = xp.any(inside & ~symbol, axis=-1)
    bad_length = ((logit_lengths < 0) | (logit_lengths > num_frames) | (label_lengths < 0)
                  | (label_lengths > labels.shape[-1]))
    return bad_label | bad_length


def ctc(logits, labels, *, logit_lengths=None, label_lengths=None, blank_id=0,
        zero_infinity=False, weights=None, where=None, reduction="mean"):
    r"""Connectionist temporal classification loss, per sequence (speech, handwriting).

    .. math::

        l = -\log \sum_{\pi \in \mathcal{B}^{-1}(y)} \prod_{t=0}^{T-1}
            \operatorname{softmax}(x_t)_{\pi_t}

    over the alignments :math:`\pi` (one symbol per frame) that collapse to the
    labels :math:`y` once repeats are merged and blanks removed; a repeated
    label needs a blank between its copies. Computed by a log-space
    forward-backward, stable for thousands of frames and classes. As torch
    ``ctc_loss`` (on ``log_softmax`` of the logits, time-major there) and
    optax ``ctc_loss`` (paddings built from the lengths), values and gradients.

    ``reduction="mean"`` is torch's: each sequence's loss divided by its label
    length (at least 1), then the weighted mean over the counted sequences;
    ``"sum"`` and ``"none"`` use the losses as they are.

    Args:
      logits: (B, T, K) float, unnormalised scores over ``K`` symbols (the blank
        included) for each of ``T`` frames, batch first. Leading batch axes may
        be any shape (none: one sequence (T, K)).
      labels: (B, S) int, the label sequences padded to ``S``; within its length
        each label is in [0, K) and is not ``blank_id``; padding is not read.
      logit_lengths: (B,) int in [0, T], the frames of each sequence (None: T).
      label_lengths: (B,) int in [0, S] (None: S).
      blank_id: the blank symbol, an int in [0, K).
      zero_infinity: a sequence with no alignment (too few frames for its
        labels and the blanks its repeats need) has loss +inf; with
        ``zero_infinity=True`` it is 0. Its gradient is zero either way.
      weights, where, reduction: the package convention, per sequence (B,).

    Returns:
      The loss: a scalar, or (B,) for ``reduction="none"``; float32 (float64
      for float64 logits). Gradients are finite for every finite input.

    Raises:
      TypeError: float labels or lengths, integer logits.
      ValueError: shapes that do not fit (B, T, K) / (B, S) / (B,), a bad
        ``blank_id`` or ``reduction``.
      LossInputError: (eager calls, or under :func:`jloss.checked`) a label
        that is the blank or outside [0, K) within its length, or a length out
        of range; under a plain ``jax.jit`` that sequence's loss is NaN.

    Custom VJP: no forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> logits = jnp.zeros((1, 4, 3))  # 4 frames, uniform over blank, 1, 2
      >>> round(float(jloss.ctc(logits, jnp.array([[1, 2]]), reduction="sum")), 4)
      1.6864
      >>> float(jloss.ctc(logits, jnp.array([[1, 1, 1]]), reduction="sum"))  # needs 5 frames
      inf

    References:
      Graves et al., "Connectionist Temporal Classification: Labelling
      Unsegmented Sequence Data with Recurrent Neural Networks" (ICML 2006);
      PyTorch ``torch.nn.functional.ctc_loss``.
    """
    logits, labels, logit_lengths, label_lengths, weights, where = checks.array_likes(
        logits, labels, logit_lengths, label_lengths, weights, where)
    checks.check_float(logits=logits)
    checks.check_integer(labels=labels)
    if jnp.ndim(logits) < 2 or jnp.ndim(labels) != jnp.ndim(logits) - 1:
        raise ValueError(f"logits must be (B, T, K) and labels (B, S), got logits "
                         f"{jnp.shape(logits)} and labels {jnp.shape(labels)}")
    batch = tuple(jnp.shape(logits)[:-2])
    num_frames, num_classes = jnp.shape(logits)[-2:]
    if tuple(jnp.shape(labels)[:-1]) != batch:
        raise ValueError(f"logits {jnp.shape(logits)} and labels {jnp.shape(labels)} must share "
                         f"their batch axes, logits (B, T, K) and labels (B, S)")
    for name, lengths in (("logit_lengths", logit_lengths), ("label_lengths", label_lengths)):
        if lengths is not None:
            checks.check_integer(**{name: lengths})
            checks.check_shape(name, lengths, batch, f"logits of shape {jnp.shape(logits)}")
    blank_id = checks.check_int("blank_id", blank_id, low=0)
    if blank_id >= num_classes:
        raise ValueError(f"blank_id must be in [0, {num_classes}) for logits with "
                         f"{num_classes} classes, got {blank_id}")
    checks.check_convention(reduction, weights, where, batch)
    logit_lengths = _lengths(logit_lengths, batch, num_frames)
    label_lengths = _lengths(label_lengths, batch, jnp.shape(labels)[-1])
    mask = loss_mask(where, batch)
    # the labels and both lengths as one array, concrete (checked now) only when all three are
    parts = (labels, logit_lengths[..., None], label_lengths[..., None])
    xp = np if all(checks.concrete(a) is not None for a in parts) else jnp
    packed = xp.concatenate([xp.asarray(a) for a in parts], axis=-1)

    def bad(packed, xp):  # per sequence
        return _bad_sequences(packed[..., :-2], packed[..., -2], packed[..., -1], num_frames,
                              num_classes, blank_id, xp)

    checks.check_values(packed, bad, f"ctc labels must be in [0, {num_classes}) and not blank_id="
                                     f"{blank_id} within label_lengths, and lengths in range "
                                     f"(logit_lengths <= {num_frames}, label_lengths <= "
                                     f"{jnp.shape(labels)[-1]})", mask)
    return _ctc(logits, labels, logit_lengths, label_lengths, weights, where,
                blank_id=blank_id, zero_infinity=bool(zero_infinity), reduction=reduction)


@functools.partial(jax.jit, static_argnames=("blank_id", "zero_infinity", "reduction"))
def _ctc(logits, labels, logit_lengths, label_lengths, weights, where, *, blank_id,
         zero_infinity, reduction):
    batch = labels.shape[:-1]
    num_frames, num_classes = logits.shape[-2:]
    mask = loss_mask(where, batch)
    bad = _bad_sequences(labels, logit_lengths, label_lengths, num_frames, num_classes, blank_id)
    safe = combine_masks(mask, ~bad)
    n = math.prod(batch)  # explicit: reshape(-1, 0) cannot infer it for empty label sequences
    x = fill_masked(logits, safe, 0).reshape(n, num_frames, num_classes)
    y = jnp.clip(fill_masked(labels, safe, 0), 0, num_classes - 1).reshape(n, labels.shape[-1])
    frames = fill_masked(logit_lengths, safe, 0).reshape(n)
    units = fill_masked(label_lengths, safe, 0).reshape(n)
    loss = ctc_nll(x, y, frames, units, blank_id).reshape(batch)
    if zero_infinity:
        loss = jnp.where(jnp.isinf(loss), 0, loss)
    loss = jnp.where(bad, jnp.nan, loss)
    if reduction == "mean":
        loss = loss / jnp.maximum(label_lengths, 1).astype(loss.dtype)
    return reduce_loss(loss, mask, weights, reduction)

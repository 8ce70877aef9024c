r"""The CTC kernel: log-space forward-backward with a closed-form backward pass.

Labels ``l_1..l_U`` are extended with blanks to ``b l_1 b l_2 ... l_U b``
(``L = 2U + 1`` states, ``z_s`` the symbol of state ``s``). With ``e_t(s)``
the log-softmax of frame ``t`` at ``z_s``, the forward variables (log
probability of the frames ``0..t`` ending in state ``s``) and backward
variables (log probability of the frames ``t+1..T-1`` starting from state
``s`` at ``t``) follow

.. math::

    \alpha_t(s) &= e_t(s) + \operatorname{lse}\big(\alpha_{t-1}(s), \alpha_{t-1}(s-1),
                   [z_s \ne z_{s-2}]\, \alpha_{t-1}(s-2)\big) \\
    \beta_t(s) &= \operatorname{lse}\big(\hat\beta_{t+1}(s), \hat\beta_{t+1}(s+1),
                  [z_{s+2} \ne z_s]\, \hat\beta_{t+1}(s+2)\big),
                  \quad \hat\beta_t = \beta_t + e_t

(lse: log-sum-exp; the bracket drops the skip term into a blank or into a
repeated label; states outside ``0..L-1`` are unreachable) from a virtual
state before the first frame, ``\alpha_{-1}(0) = 0``, and one after the
last, ``\hat\beta_T(2U) = 0``, which puts ``\beta_{T-1} = 0`` on the two
final states ``2U`` and ``2U - 1``. A three-way lse costs two exponentials
and a log (its largest term is 1). The posterior occupation of a state is
``gamma_t(s) = exp(alpha_t(s) + beta_t(s) - log Z)`` and the gradient of
``-log Z`` with respect to the logits is ``softmax - sum_{s: z_s = k}
gamma_t(s)`` (Graves et al. 2006, eq. 16): the blank states add up in the
blank column, the label states are scattered into theirs.

Both recursions keep their values relative to the max over the states (the
maxima add up in a log scale), and the occupations of each frame are
normalised to sum to 1 (every alignment is in exactly one state per frame)
rather than divided by ``Z``: in float32 after 1,000 frames the gradient
stays within about 1e-4 of float64 (dividing by ``Z``, a number near
``exp(-5000)``, loses three more digits). The loops hold the states on the
first axis and the sequences on the last (each state a contiguous row of
sequences, which XLA:CPU vectorises), with two rows of unreachable states
on one side so that the states one and two steps back are slices. The
backward pass runs the beta recursion once; it keeps two ``(T, L, B)``
arrays from the forward (the alphas and the emissions), no per-step
residuals of a differentiated scan.
"""

import functools

import jax
import jax.numpy as jnp

from jloss.kernels.common import int_cotangent, row_max, vary_together

# log(0) of an unreachable state: finite, so that no inf - inf and no derivative of log(0)
# reaches the second derivatives; anything below NEG / 2 is impossible
NEG = -1e30


def _lse3(a, b, c):
    """``log(exp(a) + exp(b) + exp(c))``, two exponentials: the largest term is 1 (NEG stays about NEG)."""
    hi, lo = jnp.maximum(a, b), jnp.minimum(a, b)
    top, mid = jnp.maximum(hi, c), jnp.minimum(hi, c)
    return top + jnp.log(1 + jnp.exp(mid - top) + jnp.exp(lo - top))


def _skips(labels):
    """(2S + 1, B): state s may be entered from s - 2 (a label that differs from the previous
    label; never a blank)."""
    n, s = labels.shape
    previous = jnp.concatenate([labels[:, :1], labels[:, :-1]], -1)  # the first: itself
    differs = labels != previous
    skip = jnp.stack([jnp.zeros((n, s), bool), differs], -1).reshape(n, 2 * s)
    return jnp.concatenate([skip, jnp.zeros((n, 1), bool)], -1).T


def _emissions(logits, labels, blank_id, kept):
    """Log-softmax of the logits at each state's symbol, time-major and batch-last (T, L, B)
    (the label columns are gathered once, the blank column sliced), and the row stats
    ``m``, ``log sum exp(x - m)`` (B, T). Frames past a sequence's length
    (``kept`` False) are padding and may hold anything, NaN included: their
    emissions are 0 and never read."""
    n, t, k = logits.shape
    m = row_max(logits.reshape(n * t, k)).reshape(n, t)
    x = logits.astype(m.dtype)
    lse_rel = jnp.log(jnp.sum(jnp.exp(x - m[..., None]), axis=-1))
    picked = jnp.take_along_axis(x, jnp.broadcast_to(labels[:, None, :], (n, t, labels.shape[1])), 2)
    blank = jnp.broadcast_to(x[:, :, blank_id, None], picked.shape)
    ext = jnp.stack([blank, picked], -1).reshape(n, t, 2 * labels.shape[1])
    ext = jnp.concatenate([ext, x[:, :, blank_id, None]], -1)
    e = jnp.maximum(ext - m[..., None] - lse_rel[..., None], NEG)  # -inf logits: unreachable
    e = jnp.where(kept[..., None], e, 0)
    return jnp.transpose(e, (1, 2, 0)), m, lse_rel


def _final_states(label_lengths, num_states):
    """The states a complete path may end in: 2U and 2U - 1 (U > 0)."""
    s = jnp.arange(num_states)[None, :]
    u = label_lengths[:, None]
    return (s == 2 * u) | ((s == 2 * u - 1) & (u > 0))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def ctc_nll(logits, labels, logit_lengths, label_lengths, blank_id):
    """Per sequence ``-log p(labels | logits)`` (B,), +inf where no alignment exists.

    Args:
      logits: (B, T, K) unnormalised, any float dtype (computed in float32 or wider).
      labels: (B, S) int in [0, K), not ``blank_id`` within ``label_lengths``.
      logit_lengths, label_lengths: (B,) int in [0, T] and [0, S].
      blank_id: a Python int in [0, K).

    The gradient of a sequence without an alignment is zero. Custom VJP: no
    forward-mode autodiff.
    """
    return _ctc_fwd(logits, labels, logit_lengths, label_lengths, blank_id)[0]


def _rescale(x):
    """``x`` minus its max over the states (0 when every state is unreachable), and that max."""
    top = jnp.max(x, axis=0)
    top = jnp.where(top > NEG / 2, top, 0)
    return x - top, top


def _recursion(e, active, start, skip, *, reverse):
    """The alpha (``reverse``: beta) recursion over the frames, states first and
    sequences last: (L, B) per frame, each state a contiguous row of sequences.

    The carry holds two extra NEG rows (before the states for alpha, after them
    for beta), so that the predecessors ``s - 1`` and ``s - 2`` (beta: ``s + 1``,
    ``s + 2``) are slices of it. The carry after frame t includes that frame's
    emission; what is stored for each frame is the value before it (alpha_t -
    e_t, or beta_t), (T, L, B). Frames past a sequence's length leave its carry
    unchanged. The carry is kept relative to its max over the states (the
    maxima add up in the returned log scale), so the differences between states
    stay exact to round-off after thousands of frames; the stored values
    therefore carry a per-frame offset, which the per-frame normalisation of the
    occupations removes.
    """
    num_s, n = e.shape[1:]
    if reverse:  # beta_t(s) reads s + 2 when state s + 2 may be entered from s
        skip = jnp.concatenate([skip, jnp.zeros((2, n), bool)])[2:]
    no_skip = jnp.asarray(NEG, e.dtype)
    rows = jnp.full((2, n), NEG, e.dtype)
    # the rows of the states, and of the states one and two steps back along the recursion
    # (alpha: s - 1 and s - 2, beta: s + 1 and s + 2)
    states, by_1, by_2 = ((slice(0, num_s), slice(1, num_s + 1), slice(2, num_s + 2)) if reverse
                          else (slice(2, num_s + 2), slice(1, num_s + 1), slice(0, num_s)))

    def padded(x):
        return jnp.concatenate([x, rows] if reverse else [rows, x])

    start, scale = vary_together(e, start, jnp.zeros((n,), e.dtype))[1:]  # shard_map carries

    def frame(carry, inputs):
        value, scale = carry
        e_t, active_t = inputs
        current = value[states]
        pre = _lse3(current, value[by_1], jnp.where(skip, value[by_2], no_skip))
        new, top = _rescale(pre + e_t)
        value = padded(jnp.where(active_t, new, current))
        return (value, scale + jnp.where(active_t, top, 0)), pre

    (last, scale), pre = jax.lax.scan(frame, (padded(start), scale), (e, active), reverse=reverse)
    return last[states], scale, pre


def _ctc_fwd(logits, labels, logit_lengths, label_lengths, blank_id):
    kept = jnp.arange(logits.shape[1])[None, :] < logit_lengths[:, None]  # (B, T)
    e, m, lse_rel = _emissions(logits, labels, blank_id, kept)
    num_s, n = e.shape[1:]
    active = kept.T
    states = jnp.arange(num_s)[:, None]
    start = jnp.broadcast_to(jnp.where(states == 0, 0.0, NEG).astype(e.dtype), (num_s, n))
    last, scale, pre_alpha = _recursion(e, active, start, _skips(labels), reverse=False)
    ends = _final_states(label_lengths, num_s)
    log_z = scale + jax.nn.logsumexp(jnp.where(ends, last.T, NEG), axis=-1)
    res = (logits, labels, logit_lengths, label_lengths, e, pre_alpha, log_z, m, lse_rel)
    return jnp.where(log_z > NEG / 2, -log_z, jnp.inf), res


def _ctc_bwd(blank_id, res, g):
    logits, labels, logit_lengths, label_lengths, e, pre_alpha, log_z, m, lse_rel = res
    kept = jnp.arange(logits.shape[1])[None, :] < logit_lengths[:, None]
    num_s = e.shape[1]
    active = kept.T
    possible = log_z > NEG / 2
    # a virtual state after the last blank: one step back it puts 0 on 2U and 2U - 1
    end = jnp.where(jnp.arange(num_s)[:, None] == 2 * label_lengths[None, :], 0.0, NEG)
    _, _, beta = _recursion(e, active, end.astype(e.dtype), _skips(labels), reverse=True)
    # occupations: each frame's posterior over the states, normalised per frame (they sum to 1)
    joint = pre_alpha + e + beta
    top = jnp.max(joint, axis=1, keepdims=True)
    weight = jnp.exp(joint - top)
    counted = (active & possible[None, :]).astype(e.dtype) * jnp.where(possible, g, 0)[None, :]
    occupation = weight * (counted / jnp.maximum(jnp.sum(weight, axis=1), 1e-30))[:, None, :]
    x = logits.astype(e.dtype)
    probs = jnp.where(kept[..., None],
                      jnp.exp(x - m[..., None] - lse_rel[..., None]) * counted.T[..., None], 0)
    # the blank states (even) share one column; the label states (odd) are scattered, per
    # sequence its (T, S) occupations into the columns of its labels
    grad = probs.at[:, :, blank_id].add(-jnp.sum(occupation[:, 0::2], axis=1).T)
    grad = jax.vmap(lambda p, o, k: p.at[:, k].add(-o), in_axes=(0, 2, 0))(
        grad, occupation[:, 1::2], labels)
    return (grad.astype(logits.dtype), int_cotangent(labels), int_cotangent(logit_lengths),
            int_cotangent(label_lengths))


ctc_nll.defvjp(_ctc_fwd, _ctc_bwd)

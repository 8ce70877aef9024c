"""Every public loss against its peer: value-and-grad time and compiled scratch, in one run.

    python3 benchmarks/losses.py                 # N x C = 4096 x 1024, float32 and bfloat16
    python3 benchmarks/losses.py --quick         # small sizes, a smoke run
    python3 benchmarks/losses.py --only log_cosh,huber --rounds 15
    python3 benchmarks/losses.py --only sparse_categorical_cross_entropy --size 2048x32768

For each loss (a row of ``CASES``) and dtype it measures ``jax.jit(jax.value_and_grad)``
of the mean loss with respect to its first argument, for jloss and for its peer:

- peer: optax's function where optax has one, else the plain ``jax.numpy`` formula,
  jitted (written here, the same definition); where PyTorch has the loss, a PyTorch row
  (forward + backward on the same CPU) is added when torch is installed. Where PyTorch
  has the loss and optax does not, PyTorch is the peer and the jnp row a second one;
- time: the calls are interleaved (jloss, peer, peer, jloss, ...), each timing a batch of
  calls lasting about ``--window-ms`` (40 ms) or more; each round's ratio is
  jloss / peer, the table gives the median ratio over the rounds and its spread
  (lowest - highest round), in wall time and in CPU time of this process (less
  disturbed by other processes on a shared machine);
- scratch: compiled temporary memory, ``compile().memory_analysis().temp_size_in_bytes``;
- kept: bytes the backward keeps, the array leaves of the closure ``jax.vjp`` returns
  (the inputs themselves included; a float32 copy of a bfloat16 input shows here).

The peer runs on the same inputs: in bfloat16 optax then computes in bfloat16, jloss in
float32. Ratios below 1 are better for jloss.
"""

import argparse
import dataclasses
import os
import statistics
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jloss

# PyTorch's OpenMP threads spin for a while after each of its calls; that steals the CPU from the
# interleaved jloss / peer calls that follow (huber read 2.2x torch with it, 0.8x without).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:  # PyTorch rows only where torch is installed
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None


# ------------------------------------------------------------------ inputs


def _regression(k, n, c, dtype):
    k1, k2 = jax.random.split(k)
    return (jax.random.normal(k1, (n, c)).astype(dtype), jax.random.normal(k2, (n, c)).astype(dtype))


def _binary(k, n, c, dtype):
    k1, k2 = jax.random.split(k)
    return ((3 * jax.random.normal(k1, (n, c))).astype(dtype),
            jax.random.bernoulli(k2, 0.3, (n, c)).astype(dtype))


def _probabilities(k, n, c, dtype):
    x, y = _binary(k, n, c, dtype)
    return jax.nn.sigmoid(x.astype(jnp.float32)).astype(dtype), y


def _sparse(k, n, c, dtype):
    k1, k2 = jax.random.split(k)
    return (3 * jax.random.normal(k1, (n, c))).astype(dtype), jax.random.randint(k2, (n,), 0, c)


def _dense(k, n, c, dtype):
    k1, k2 = jax.random.split(k)
    targets = jax.nn.softmax(jax.random.normal(k2, (n, c)), axis=-1)
    return (3 * jax.random.normal(k1, (n, c))).astype(dtype), targets.astype(dtype)


def _signs(k, n, c, dtype):
    k1, k2 = jax.random.split(k)
    return (jax.random.normal(k1, (n, c)).astype(dtype),
            (2 * jax.random.bernoulli(k2, 0.5, (n, c)) - 1).astype(dtype))


def _gaussian(k, n, c, dtype):
    k1, k2 = jax.random.split(k)
    mean, targets = _regression(k1, n, c, dtype)
    return mean, targets, jax.random.uniform(k2, (n, c), minval=0.1, maxval=2.0).astype(dtype)


def _poisson(k, n, c, dtype):
    k1, k2 = jax.random.split(k)
    return (jax.random.normal(k1, (n, c)).astype(dtype),
            jax.random.poisson(k2, 2.0, (n, c)).astype(dtype))


def _head(k, n, c, dtype):
    k1, k2, k3 = jax.random.split(k, 3)
    d = 256
    return (jax.random.normal(k1, (n, d)).astype(dtype),
            (jax.random.normal(k2, (d, c)) / 16).astype(dtype), jax.random.randint(k3, (n,), 0, c))


def _pairs(k, n, c, dtype):
    """(N, D) partner vectors that correlate (contrastive and cosine losses)."""
    k1, k2 = jax.random.split(k)
    x = jax.random.normal(k1, (n, c))
    return x.astype(dtype), (0.7 * x + jax.random.normal(k2, (n, c))).astype(dtype)


def _cosine_pairs(k, n, c, dtype):
    k1, k2 = jax.random.split(k)
    return (*_pairs(k1, n, c, dtype), (2 * jax.random.bernoulli(k2, 0.5, (n,)) - 1).astype(jnp.int32))


def _triplets(k, n, c, dtype):
    """Anchors and two partners that correlate alike: about half the triplets count."""
    k1, k2 = jax.random.split(k)
    anchors, positives = _pairs(k1, n, c, dtype)
    return anchors, positives, (0.7 * _f32(anchors) + jax.random.normal(k2, (n, c))).astype(dtype)


def _ranking_pairs(k, n, c, dtype):
    k1, k2 = jax.random.split(k)
    return (*_pairs(k1, n, c, dtype), _signs(k2, n, c, dtype)[1])


def _distances(k, n, c, dtype):
    k1, k2 = jax.random.split(k)
    return jax.random.uniform(k1, (n, c), maxval=2.0).astype(dtype), _signs(k2, n, c, dtype)[1]


def _positive(k, n, c, dtype):
    k1, k2 = jax.random.split(k)
    return (jax.random.uniform(k1, (n, c), minval=0.05, maxval=3.0).astype(dtype),
            jax.random.uniform(k2, (n, c), minval=0.05, maxval=3.0).astype(dtype))


def _groups(k, n, c, dtype):
    """(N, D) embeddings in pairs of two views (labels 0, 0, 1, 1, ...); N is capped at 256,
    since optax's ``ntxent`` builds (N, N, N) arrays (128 GiB at N = 4096)."""
    n = min(n, 256)
    return jax.random.normal(k, (n, c)).astype(dtype), jnp.arange(n) // 2


def _measures(k, n, c, dtype):
    k1, k2 = jax.random.split(k)
    return ((0.7 * jax.random.normal(k1, (n, c))).astype(dtype),
            jax.random.uniform(k2, (n, c), minval=0.1, maxval=2.0).astype(dtype))


def _multilabel_indices(k, n, c, dtype):
    """Scores and 4 target classes per row, then -1 padding; C is capped at 128, since the
    jnp peer compares every target with every class, (N, C, C) (jloss loops over the targets)."""
    c = min(c, 128)
    k1, k2 = jax.random.split(k)
    targets = jax.vmap(lambda r: jax.random.permutation(r, c)[:4])(jax.random.split(k2, n))
    labels = jnp.full((n, c), -1, jnp.int32).at[:, :4].set(targets)
    return jax.random.normal(k1, (n, c)).astype(dtype), labels


def _segmentation(k, n, c, dtype):
    """(B, pixels, C) logits and one-hot masks, B = 8."""
    k1, k2 = jax.random.split(k)
    logits = (1.5 * jax.random.normal(k1, (8, n // 8, c))).astype(dtype)
    return logits, jax.nn.one_hot(jax.random.randint(k2, (8, n // 8), 0, c), c, dtype=dtype)


def _lists(k, n, c, dtype):
    """N lists of C items, graded relevance 0-3."""
    k1, k2 = jax.random.split(k)
    return (jax.random.normal(k1, (n, c)).astype(dtype),
            jax.random.randint(k2, (n, c), 0, 4).astype(dtype))


CTC_LABELS = 20


def _logps(k, n, c, dtype, count=2):
    """``count`` arrays of sequence log-probabilities (negative), one per element of (n, c)."""
    return tuple((-3.0 * jax.random.uniform(key, (n, c)) - 0.05).astype(dtype)
                 for key in jax.random.split(k, count))


def _preference_pairs(k, n, c, dtype):
    return _logps(k, n, c, dtype, 4)


def _kto_inputs(k, n, c, dtype):
    k1, k2 = jax.random.split(k)
    return (*_logps(k1, n, c, dtype), jax.random.bernoulli(k2, 0.5, (n, c)))


def _ctc(k, n, c, dtype):
    """(B, T, K) logits and (B, S) labels, B = N / 128, T = K = 128, S = 20 (full size);
    benchmarks/ctc.py has the dedicated CTC comparison."""
    b, t = max(n // 128, 2), min(c, 128)
    k1, k2 = jax.random.split(k)
    labels = jax.random.randint(k2, (b, CTC_LABELS), 1, t)
    return jax.random.normal(k1, (b, t, t)).astype(dtype), labels


# ------------------------------------------------------- plain jnp formulas


def _f32(x):
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _jnp_smooth_l1(p, t):
    a = jnp.abs(p - t)
    return jnp.where(a < 1.0, 0.5 * a * a, a - 0.5).mean()


def _jnp_pinball(p, t, q=0.3):
    r = t - p
    return jnp.maximum(q * r, (q - 1) * r).mean()


def _jnp_gaussian_nll(m, t, v):
    v = jnp.maximum(v, 1e-6)
    return (0.5 * (jnp.log(v) + (m - t) ** 2 / v)).mean()


def _jnp_focal(x, y, gamma=2.0):
    logp = jax.nn.log_softmax(x, axis=-1)
    logp_y = jnp.take_along_axis(logp, y[:, None], -1)[:, 0]
    return (-(1 - jnp.exp(logp_y)) ** gamma * logp_y).mean()


def _jnp_multiclass_hinge(s, y):
    own = jnp.take_along_axis(s, y[:, None], -1)
    v = jnp.maximum(0, 1 - own + s)
    return ((v.sum(-1) - 1) / s.shape[-1]).mean()  # the label column adds max(0, 1) = 1


def _jnp_bce_probabilities(p, y):
    return -(y * jnp.maximum(jnp.log(p), -100) + (1 - y) * jnp.maximum(jnp.log1p(-p), -100)).mean()


def _jnp_linear_ce(h, w, y):
    return optax.losses.softmax_cross_entropy_with_integer_labels(_f32(h @ w), y).mean()


def _unit(x):
    x = _f32(x)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def _jnp_cosine_embedding(a, b, y, margin=0.0):
    cos = jnp.sum(_unit(a) * _unit(b), axis=-1)
    return jnp.where(y == 1, 1 - cos, jnp.maximum(0, cos - margin)).mean()


def _jnp_info_nce(q, k, temperature=0.07):
    logits = _unit(q) @ _unit(k).T / temperature
    return optax.losses.softmax_cross_entropy_with_integer_labels(logits, jnp.arange(len(q))).mean()


def _jnp_sigmoid_contrastive(x, y, temperature=10.0, bias=-10.0):
    z = 2 * jnp.eye(len(x)) - 1
    return -jax.nn.log_sigmoid(z * (temperature * _unit(x) @ _unit(y).T + bias)).sum(-1).mean()


def _jnp_mape(p, t):
    return (100 * jnp.abs(p - t) / jnp.maximum(jnp.abs(t), 1e-7)).mean()


def _jnp_msle(p, t):
    return ((jnp.log1p(jnp.maximum(p, 1e-7)) - jnp.log1p(jnp.maximum(t, 1e-7))) ** 2).mean()


def _jnp_multilabel_margin(s, y):
    c = s.shape[-1]
    listed = jnp.cumprod(y != -1, axis=-1).astype(bool)
    is_target = jnp.any(listed[..., None] & (y[..., None] == jnp.arange(c)), axis=-2)
    pair = is_target[:, :, None] & ~is_target[:, None, :]
    return jnp.where(pair, jnp.maximum(0, 1 - s[:, :, None] + s[:, None, :]), 0).sum((1, 2)).mean() / c


def _jnp_multilabel_soft_margin(x, y):
    return -(y * jax.nn.log_sigmoid(x) + (1 - y) * jax.nn.log_sigmoid(-x)).mean()


def _jnp_generalized_ce(x, y, q=0.5):
    logp_y = jnp.take_along_axis(jax.nn.log_softmax(_f32(x), axis=-1), y[:, None], -1)[:, 0]
    return (-jnp.expm1(q * logp_y) / q).mean()


def _jnp_dpo(pc, pr, rc, rr, beta=0.1):
    return -jax.nn.log_sigmoid(beta * ((_f32(pc) - _f32(rc)) - (_f32(pr) - _f32(rr)))).mean()


def _log_odds(logp):
    return logp - jnp.log(-jnp.expm1(logp))


def _jnp_orpo(c, r, beta=0.1):
    return (-beta * jax.nn.log_sigmoid(_log_odds(_f32(c)) - _log_odds(_f32(r)))).mean()


def _jnp_simpo(c, r, beta=2.0, gamma=0.5):
    return -jax.nn.log_sigmoid(beta * (_f32(c) - _f32(r)) - gamma).mean()


def _jnp_cpo(c, r, beta=0.1):
    return -jax.nn.log_sigmoid(beta * (_f32(c) - _f32(r))).mean()


def _jnp_kto(p, r, desirable, beta=0.1):
    reward = _f32(p) - _f32(r)
    return jnp.where(desirable, 1 - jax.nn.sigmoid(beta * reward),
                     1 - jax.nn.sigmoid(-beta * reward)).mean()


def _optax_ctc(x, y):
    zeros = jnp.zeros(x.shape[:2]), jnp.zeros(y.shape)
    return (optax.losses.ctc_loss(x, zeros[0], y, zeros[1]) / y.shape[1]).mean()


def _torch_ctc(x, y):
    b, t, _ = x.shape
    return F.ctc_loss(x.log_softmax(-1).transpose(0, 1), y, torch.full((b,), t),
                      torch.full((b,), y.shape[1]))


# ---------------------------------------------------------------- the table


@dataclasses.dataclass(frozen=True)
class Case:
    """One row: a public loss, its inputs, its peer.

    ``ours``, ``peer`` and ``torch`` take the inputs ``make`` returns and give the
    mean loss; the gradient is taken with respect to the first input. ``peer_name``
    says what ``peer`` is ("optax" or "jnp"). ``torch`` (on torch tensors) is the
    PyTorch function, where PyTorch has the loss.
    """

    name: str
    make: Callable
    ours: Callable
    peer_name: str
    peer: Callable
    torch: Optional[Callable] = None


def _o(name):
    """The mean of optax's ``optax.losses.<name>``."""
    return lambda *a: getattr(optax.losses, name)(*a).mean()


def _t(name):
    """A PyTorch ``F.<name>`` mean loss, or None without torch."""
    return None if torch is None else (lambda *a, **kw: getattr(F, name)(*a, **kw))


CASES = [
    Case("mean_squared_error", _regression, jloss.mean_squared_error,
         "optax", lambda p, t: optax.losses.squared_error(p, t).mean(), _t("mse_loss")),
    Case("mean_absolute_error", _regression, jloss.mean_absolute_error,
         "jnp", lambda p, t: jnp.abs(p - t).mean(), _t("l1_loss")),
    Case("huber", _regression, jloss.huber,
         "optax", lambda p, t: optax.losses.huber_loss(p, t).mean(), _t("huber_loss")),
    Case("smooth_l1", _regression, jloss.smooth_l1, "jnp", _jnp_smooth_l1, _t("smooth_l1_loss")),
    Case("log_cosh", _regression, jloss.log_cosh,
         "optax", lambda p, t: optax.losses.log_cosh(p, t).mean()),
    Case("pinball", _regression, lambda p, t: jloss.pinball(p, t, quantile=0.3), "jnp", _jnp_pinball),
    Case("gaussian_nll", _gaussian, jloss.gaussian_nll, "jnp", _jnp_gaussian_nll,
         None if torch is None else lambda m, t, v: F.gaussian_nll_loss(m, t, v)),
    Case("poisson_nll", _poisson, jloss.poisson_nll,
         "jnp", lambda x, y: (jnp.exp(x) - y * x).mean(), _t("poisson_nll_loss")),
    Case("binary_cross_entropy", _binary, jloss.binary_cross_entropy,
         "optax", lambda x, y: optax.losses.sigmoid_binary_cross_entropy(x, y).mean(),
         _t("binary_cross_entropy_with_logits")),
    Case("binary_cross_entropy(probs)", _probabilities,
         lambda p, y: jloss.binary_cross_entropy(p, y, from_logits=False),
         "jnp", _jnp_bce_probabilities, _t("binary_cross_entropy")),
    Case("binary_focal_loss", _binary, jloss.binary_focal_loss,
         "optax", lambda x, y: optax.losses.sigmoid_focal_loss(x, y, alpha=0.25, gamma=2.0).mean()),
    Case("categorical_cross_entropy", _dense, jloss.categorical_cross_entropy,
         "optax", lambda x, t: optax.losses.softmax_cross_entropy(x, t).mean(),
         _t("cross_entropy")),
    Case("sparse_categorical_cross_entropy", _sparse, jloss.sparse_categorical_cross_entropy,
         "optax", lambda x, y: optax.losses.softmax_cross_entropy_with_integer_labels(x, y).mean(),
         _t("cross_entropy")),
    Case("categorical_focal_loss", _sparse, jloss.categorical_focal_loss, "jnp", _jnp_focal),
    Case("kl_divergence", _dense, jloss.kl_divergence,
         "optax", lambda x, t: optax.losses.kl_divergence(jax.nn.log_softmax(x, axis=-1), t).mean()),
    Case("hinge", _signs, jloss.hinge,
         "optax", lambda s, y: optax.losses.hinge_loss(s, y).mean()),
    Case("squared_hinge", _signs, jloss.squared_hinge,
         "jnp", lambda s, y: (jnp.maximum(0, 1 - s * y) ** 2).mean()),
    Case("multiclass_hinge", _sparse, jloss.multiclass_hinge, "jnp", _jnp_multiclass_hinge,
         _t("multi_margin_loss")),
    Case("linear_cross_entropy", _head, jloss.linear_cross_entropy, "jnp", _jnp_linear_ce),
    Case("mean_absolute_percentage_error", _regression, jloss.mean_absolute_percentage_error,
         "jnp", _jnp_mape),
    Case("mean_squared_logarithmic_error", _positive, jloss.mean_squared_logarithmic_error,
         "jnp", _jnp_msle),
    Case("cosine_distance", _pairs, jloss.cosine_distance,
         "optax", lambda p, t: optax.losses.cosine_distance(p, t, epsilon=1e-8).mean()),
    Case("cosine_embedding", _cosine_pairs, jloss.cosine_embedding, "jnp", _jnp_cosine_embedding,
         _t("cosine_embedding_loss")),
    Case("triplet_margin", _triplets, jloss.triplet_margin,
         "optax", lambda a, p, n: optax.losses.triplet_margin_loss(a, p, n).mean(),
         _t("triplet_margin_loss")),
    Case("margin_ranking", _ranking_pairs, jloss.margin_ranking,
         "jnp", lambda a, b, y: jnp.maximum(0, -y * (a - b)).mean(), _t("margin_ranking_loss")),
    Case("hinge_embedding", _distances, jloss.hinge_embedding,
         "jnp", lambda x, y: jnp.where(y == 1, x, jnp.maximum(0, 1 - x)).mean(),
         _t("hinge_embedding_loss")),
    Case("ntxent", _groups, jloss.ntxent,
         "optax", lambda e, y: optax.losses.ntxent(e, y, temperature=0.07)),
    Case("info_nce", _pairs, jloss.info_nce, "jnp", _jnp_info_nce),
    Case("sigmoid_contrastive", _pairs,
         lambda x, y: jloss.sigmoid_contrastive(x, y, temperature=10.0, bias=-10.0),
         "jnp", _jnp_sigmoid_contrastive),
    Case("soft_margin", _signs, jloss.soft_margin,
         "jnp", lambda s, y: jax.nn.softplus(-y * s).mean(), _t("soft_margin_loss")),
    Case("perceptron", _signs, jloss.perceptron, "optax", _o("perceptron_loss")),
    Case("crammer_singer_hinge", _sparse, jloss.crammer_singer_hinge, "optax", _o("multiclass_hinge_loss")),
    Case("multiclass_perceptron", _sparse, jloss.multiclass_perceptron, "optax",
         _o("multiclass_perceptron_loss")),
    Case("multilabel_margin", _multilabel_indices, jloss.multilabel_margin,
         "jnp", _jnp_multilabel_margin, _t("multilabel_margin_loss")),
    Case("multilabel_soft_margin", _binary, jloss.multilabel_soft_margin,
         "jnp", _jnp_multilabel_soft_margin, _t("multilabel_soft_margin_loss")),
    Case("sparsemax_loss", _sparse, jloss.sparsemax_loss,
         "optax", lambda x, y: optax.losses.multiclass_sparsemax_loss(_f32(x), y).mean()),  # no bf16
    Case("binary_sparsemax_loss", _binary, jloss.binary_sparsemax_loss, "optax", _o("sparsemax_loss")),
    Case("poly_cross_entropy", _dense, jloss.poly_cross_entropy, "optax", _o("poly_loss_cross_entropy")),
    Case("generalized_cross_entropy", _sparse, jloss.generalized_cross_entropy,
         "jnp", _jnp_generalized_ce),
    Case("generalized_kl_divergence", _measures, jloss.generalized_kl_divergence, "optax",
         _o("generalized_kl_divergence")),
    Case("dice", _segmentation, jloss.dice, "optax", _o("dice_loss")),
    Case("generalized_dice", _segmentation, jloss.generalized_dice, "optax",
         _o("multiclass_generalized_dice_loss")),
    Case("ranking_softmax", _lists, jloss.ranking_softmax,
         "optax", lambda s, r: optax.losses.ranking_softmax_loss(s, r)),
    Case("ctc", _ctc, jloss.ctc, "optax", _optax_ctc, None if torch is None else _torch_ctc),
    Case("dpo", _preference_pairs, jloss.dpo, "jnp", _jnp_dpo),
    Case("orpo", _logps, jloss.orpo, "jnp", _jnp_orpo),
    Case("simpo", _logps, jloss.simpo, "jnp", _jnp_simpo),
    Case("cpo", _logps, jloss.cpo, "jnp", _jnp_cpo),
    Case("kto", _kto_inputs, jloss.kto, "jnp", _jnp_kto),
]

SIZES = {"full": (4096, 1024), "quick": (64, 128)}
DTYPES = ("float32", "bfloat16")


# ------------------------------------------------------------ measurement


def _kept_bytes(loss, args):
    _, vjp_fn = jax.vjp(lambda x: loss(x, *args[1:]), args[0])
    return sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(vjp_fn) if hasattr(leaf, "nbytes"))


def _compiled(loss, args):
    fn = jax.jit(jax.value_and_grad(loss))
    scratch = fn.lower(*args).compile().memory_analysis().temp_size_in_bytes
    jax.block_until_ready(fn(*args))
    return (lambda: jax.block_until_ready(fn(*args))), scratch


def _torch_call(fn, args, dtype):
    tdtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32

    def convert(a, i):
        if not jnp.issubdtype(a.dtype, jnp.floating):
            return torch.from_numpy(np.asarray(a, np.int64))
        return torch.from_numpy(np.asarray(a, np.float32)).to(tdtype).requires_grad_(i == 0)

    targs = [convert(a, i) for i, a in enumerate(args)]

    def call():
        targs[0].grad = None
        fn(*targs).backward()

    return call


def _time(call, calls):
    """(wall, CPU) seconds per call; CPU time (all threads of this process) is less
    disturbed by other processes on a shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        call()
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def _calls_for(call, calls, window):
    """At least ``calls``, and enough calls that one timing lasts about ``window`` seconds
    (a few-millisecond timing is at the mercy of the scheduler)."""
    start = time.perf_counter()
    call()
    return max(calls, int(np.ceil(window / max(time.perf_counter() - start, 1e-6))))


def measure(case, n, c, dtype, rounds, calls, window=0.0):
    """One row: {contender: (ms, scratch, kept)} and the per-round time ratios ours / contender."""
    args = case.make(jax.random.key(0), n, c, dtype)
    contenders = {"jloss": case.ours, case.peer_name: case.peer}
    calls_by_name, mem = {}, {}
    for name, loss in contenders.items():
        calls_by_name[name], scratch = _compiled(loss, args)
        mem[name] = (scratch, _kept_bytes(loss, args))
    if case.torch is not None and torch is not None:
        call = _torch_call(case.torch, args, dtype)
        try:
            call()
        except (NotImplementedError, RuntimeError):  # e.g. no bfloat16 CPU kernel: no torch row
            call = None
        if call is not None:
            calls_by_name["torch"], mem["torch"] = call, (None, None)
    times = {name: [] for name in calls_by_name}
    order = list(calls_by_name)
    repeats = {name: _calls_for(calls_by_name[name], calls, window) for name in order}
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:  # no contender always runs first
            times[name].append(_time(calls_by_name[name], repeats[name]))
    rows = {}
    for name in calls_by_name:
        ratios = [a[0] / b[0] for a, b in zip(times["jloss"], times[name], strict=True)]
        cpu_ratios = [a[1] / b[1] for a, b in zip(times["jloss"], times[name], strict=True)]
        rows[name] = (1e3 * statistics.median(t[0] for t in times[name]), *mem[name],
                      statistics.median(ratios), min(ratios), max(ratios),
                      statistics.median(cpu_ratios))
    return rows


def _mib(b):
    return "-" if b is None else f"{b / 2**20:.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few rounds: a smoke run")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=3, help="least calls per timing in a round")
    parser.add_argument("--window-ms", type=float, default=40.0,
                        help="more calls per timing where one call is short: about this long")
    parser.add_argument("--only", default="", help="comma-separated loss names")
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--size", default="", help="N x C, e.g. 2048x32768 (default 4096x1024)")
    args = parser.parse_args()
    n, c = (tuple(int(k) for k in args.size.split("x")) if args.size
            else SIZES["quick" if args.quick else "full"])
    rounds, calls = (3, 1) if args.quick else (args.rounds, args.calls)
    window = 0.0 if args.quick else args.window_ms / 1e3
    only = set(filter(None, args.only.split(",")))
    cases = [case for case in CASES if not only or case.name in only]
    print(f"jax {jax.__version__}, optax {optax.__version__}, "
          f"torch {torch.__version__ if torch is not None else 'not installed'}, "
          f"device {jax.devices()[0].device_kind}")
    print(f"value_and_grad of the mean loss w.r.t. the first input, N x C = {n} x {c}, "
          f"median of {rounds} interleaved rounds of at least {calls} calls, each timing about "
          f"{1e3 * window:.0f} ms or more; ratios jloss / peer\n")
    print("| loss | dtype | peer | jloss ms | peer ms | time ratio (spread) | CPU-time ratio "
          "| jloss scratch MiB | peer scratch MiB | jloss kept MiB | peer kept MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for case in cases:
        for dtype in args.dtypes.split(","):
            rows = measure(case, n, c, dtype, rounds, calls, window)
            ours = rows["jloss"]
            for name, (ms, scratch, kept, ratio, low, high, cpu) in rows.items():
                if name == "jloss":
                    continue
                print(f"| {case.name} | {dtype} | {name} | {ours[0]:.2f} | {ms:.2f} | "
                      f"{ratio:.2f} ({low:.2f}-{high:.2f}) | {cpu:.2f} | {_mib(ours[1])} | "
                      f"{_mib(scratch)} | {_mib(ours[2])} | {_mib(kept)} |", flush=True)


if __name__ == "__main__":
    main()

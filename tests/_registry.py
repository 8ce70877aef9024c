"""One row per loss: the table every generic test is driven by.

Adding a loss to jloss means adding a :class:`LossCase` here: its function,
a builder of sample inputs, an independent float64 NumPy reference of the
*unreduced* loss (written from the formula in the loss's docstring / PyTorch's
documentation, never by calling jloss) and the options to sweep.

Sample inputs are kept away from kinks (``|e| = delta``, hinge margins, ...)
and zero targets, so the same inputs serve value tests and finite-difference
gradient checks. Edge cases live in the per-family test files.
"""

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

import jloss

C = 5  # classes in class-axis samples
F = 3  # trailing feature axis of elementwise samples
CLASS_WEIGHTS = np.array([0.5, 2.0, 1.0, 0.25, 3.0], np.float32)
ALPHA = np.array([0.1, 0.9, 0.5, 0.3, 0.7], np.float32)
POS_WEIGHT = np.array([0.5, 1.0, 3.0], np.float32)  # broadcasts over (..., F)


@dataclasses.dataclass(frozen=True)
class LossCase:
    """A loss, how to call it and what it must return.

    make(rng, batch, opts) -> tuple of float64 / int64 NumPy arrays, the
      positional arguments. Elementwise losses get ``batch + (F,)`` shapes,
      class-axis losses ``batch + (C,)`` logits (class axis last).
    ref(*args, **opts) -> the unreduced float64 loss (no weights, no mask).
    options: option dicts swept by the generic tests (passed to fn and ref).
    grad_options: the options of the second-order ``check_grads`` (default: all
      of ``options``): one that exercises every term of the backward pass,
      smooth enough for finite differences. First derivatives of every option
      are checked against finite differences in
      ``test_convention.py::test_reductions_weights_where``.
    class_axis: the loss reduces a class axis (last axis of ``args[0]``).
    float_args: positions of the floating-point arguments (the others are
      integer labels).
    diff_args: positions that get a gradient (labels of the focal loss are
      constants, integer labels have none).
    label_mask(args, opts): extra mask from the labels (ignore_index), or None.
    normalizer(args, opts): the per-example ``c`` of ``"mean"``, or None.
    custom_vjp: built on ``jax.custom_vjp`` (no forward-mode autodiff).
    straight_through(args, opts): {arg position: bool mask} of inputs whose
      gradient is passed straight through a clamp by design (not the finite
      difference derivative), or None.
    event_ndims: per positional argument, its trailing axes that are not axes of
      the unreduced loss (CTC: logits (B, T, K) -> 2, labels (B, S) -> 1); None:
      the class axis of ``class_axis`` float arguments, else none.
    coupled: the examples of a batch interact (contrastive losses: each other's
      negatives). ``where`` drops an example from the others' losses too, so
      ``ref`` takes the mask (``mask=``, None: every example), and a batch
      sharded over devices needs the loss's ``axis_name``.
    mean_scale(args, opts): per-example factor of the loss in ``"mean"`` only
      (CTC: 1 / label length), or None.
    example_ndim: the unreduced loss keeps only the first ``example_ndim`` axes
      of ``args[0]`` (Dice: 1, the batch axis), or None (see ``class_axis``).
    dense_labels: integer labels with the shape of ``args[0]`` (class indices
      along the class axis, ``multilabel_margin``), not one per example.
    axis_option: the loss takes an ``axis`` keyword for its class / vector axis.
    """

    name: str
    fn: Callable
    make: Callable
    ref: Callable
    options: tuple = ({},)
    grad_options: Any = None
    class_axis: bool = False
    float_args: tuple = (0, 1)
    diff_args: tuple = (0, 1)
    label_mask: Callable | None = None
    normalizer: Callable | None = None
    custom_vjp: bool = False
    straight_through: Callable | None = None
    event_ndims: tuple | None = None
    coupled: bool = False
    mean_scale: Callable | None = None
    example_ndim: int | None = None
    dense_labels: bool = False
    axis_option: bool = True

    @property
    def arg_names(self):
        """Names of the positional arguments (predictions / logits / scores, targets ...)."""
        import inspect

        params = inspect.signature(self.fn).parameters.values()
        return tuple(p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD)

    def event_dims(self, i):
        """How many trailing axes of positional argument ``i`` are not loss axes."""
        if self.event_ndims is not None:
            return self.event_ndims[i]
        return int(self.class_axis and i in self.float_args)

    def expand(self, i, mask):
        """A mask of the loss shape broadcast over the trailing axes of argument ``i``."""
        mask = np.asarray(mask)
        return mask.reshape(mask.shape + (1,) * self.event_dims(i))

    def loss_shape(self, args):
        shape = np.shape(args[0])
        if self.example_ndim is not None:
            return shape[:self.example_ndim]
        return shape[:len(shape) - self.event_dims(0)]

    def opts_for_grads(self):
        return self.options if self.grad_options is None else self.grad_options


def opt_id(opts):
    """A readable pytest id for an option dict."""
    if not opts:
        return "default"
    parts = []
    for k, v in opts.items():
        if isinstance(v, np.ndarray):
            v = "arr"
        parts.append(f"{k}={v}")
    return ",".join(parts)


def ref_kwargs(opts):
    """Options as float64 NumPy for the references."""
    return {k: (np.asarray(v, np.float64) if isinstance(v, np.ndarray) else v)
            for k, v in opts.items()}


# ----------------------------------------------------------- calling jloss


def to_jax(case, args, dtype=np.float32):
    """Float arguments as ``dtype`` jax arrays, integer labels as int32."""
    import jax.numpy as jnp

    return tuple(jnp.asarray(a, dtype) if i in case.float_args else jnp.asarray(a, jnp.int32)
                 for i, a in enumerate(args))


def as_f64(args):
    """What the jax arrays hold, as float64 / int64 NumPy (the references' inputs)."""
    return tuple(np.asarray(a, np.float64) if np.issubdtype(np.asarray(a).dtype, np.floating)
                 or str(np.asarray(a).dtype) == "bfloat16" else np.asarray(a, np.int64)
                 for a in args)


def grads_of(case, scalar_fn, args):
    """Gradients of ``scalar_fn(*args)`` w.r.t. the case's ``diff_args`` (a tuple)."""
    import jax

    def f(*diff):
        full = list(args)
        for i, d in zip(case.diff_args, diff, strict=False):
            full[i] = d
        return scalar_fn(*full)

    return jax.grad(f, argnums=tuple(range(len(case.diff_args))))(
        *[args[i] for i in case.diff_args])


def reference(case, args, opts, weights=None, where=None, reduction="mean"):
    """The float64 reference of ``case.fn(*args, **opts, weights, where, reduction)``."""
    args = as_f64(args)
    shape = case.loss_shape(args)
    mask = None if where is None else np.broadcast_to(np.asarray(where, bool), shape)
    extra = None if case.label_mask is None else case.label_mask(args, opts)
    if extra is not None:
        mask = extra if mask is None else mask & extra
    loss = case.ref(*args, **ref_kwargs(opts), **({"mask": mask} if case.coupled else {}))
    c = None if case.normalizer is None else case.normalizer(args, opts)
    if isinstance(loss, tuple):  # a coupled loss whose normalizer depends on the mask
        loss, c = loss
    if reduction == "mean" and case.mean_scale is not None:
        loss = loss * case.mean_scale(args, opts)
    return reduce_ref(loss, mask, weights, reduction, c)


# ------------------------------------------------------------ reduction ref


def reduce_ref(loss, mask, weights, reduction, normalizer=None):
    """PyTorch's weighted mean, from the formula in docs/conventions.md, float64."""
    loss = np.asarray(loss, np.float64)
    m = np.ones(loss.shape, bool) if mask is None else np.broadcast_to(mask, loss.shape)
    w = np.ones(loss.shape) if weights is None else np.broadcast_to(
        np.asarray(weights, np.float64), loss.shape)
    c = np.ones(loss.shape) if normalizer is None else np.asarray(normalizer, np.float64)
    contrib = np.where(m, w * np.where(m, loss, 0.0), 0.0)
    if reduction == "none":
        return contrib
    if reduction == "sum":
        return contrib.sum()
    denom = np.where(m, w * c, 0.0).sum()
    return 0.0 if denom == 0 else contrib.sum() / denom


# --------------------------------------------------------------- helpers


def _away(rng, shape, low, high, kinks=(), gap=0.1):
    """Uniform draws in [low, high] at least ``gap`` from every kink."""
    n = int(np.prod(shape, dtype=int))
    out = []
    while len(out) < n:
        v = rng.uniform(low, high, size=4 * n + 8)
        ok = np.all([np.abs(v - k) > gap for k in kinks], axis=0) if kinks else np.ones_like(v, bool)
        out.extend(v[ok].tolist())
    return np.array(out[:n], np.float64).reshape(shape)


def _signed_away(rng, shape, kinks, low=0.1, high=3.0):
    """Values whose magnitude is in [low, high] away from ``kinks``, random sign."""
    mag = _away(rng, shape, low, high, kinks)
    return mag * rng.choice([-1.0, 1.0], size=shape)


def log_softmax(x):
    x = np.asarray(x, np.float64)
    m = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    s = x - m
    return s - np.log(np.sum(np.exp(s), axis=-1, keepdims=True))


def logsumexp(x):
    x = np.asarray(x, np.float64)
    m = np.max(x, axis=-1)
    return m + np.log(np.sum(np.exp(x - m[..., None]), axis=-1))


def log_sigmoid(x):
    x = np.asarray(x, np.float64)
    return -np.logaddexp(0.0, -x)


def clamped_log(p):
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(np.asarray(p, np.float64)), -100.0)


def _take(a, labels):
    return np.take_along_axis(a, np.asarray(labels)[..., None], axis=-1)[..., 0]


def _safe_labels(labels, ignore_index):
    labels = np.asarray(labels)
    if ignore_index is None:
        return labels
    return np.where(labels == ignore_index, 0, labels)


# ------------------------------------------------------------ regression


def _err_inputs(kinks):
    def make(rng, batch, opts):
        shape = (*tuple(batch), F)
        targets = rng.normal(size=shape)
        return targets + _signed_away(rng, shape, kinks), targets
    return make


def ref_mse(p, t):
    return (p - t) ** 2


def ref_mae(p, t):
    return np.abs(p - t)


def ref_huber(p, t, delta=1.0):
    e = p - t
    a = np.abs(e)
    return np.where(a <= delta, 0.5 * e**2, delta * (a - 0.5 * delta))


def ref_smooth_l1(p, t, beta=1.0):
    a = np.abs(p - t)
    if beta == 0:
        return a
    return np.where(a < beta, 0.5 * a**2 / beta, a - 0.5 * beta)


def ref_log_cosh(p, t):
    return np.log(np.cosh(p - t))


def ref_pinball(p, t, quantile=0.5):
    r = t - p
    return np.maximum(quantile * r, (quantile - 1) * r)


def make_gaussian(rng, batch, opts):
    shape = (*tuple(batch), F)
    mean = rng.normal(size=shape)
    targets = rng.normal(size=shape)
    variance = rng.uniform(0.05, 2.0, size=shape)
    return mean, targets, variance


def ref_gaussian_nll(mean, targets, variance, eps=1e-6, full=False):
    var = np.maximum(np.broadcast_to(variance, np.shape(mean)), eps)
    out = 0.5 * (np.log(var) + (mean - targets) ** 2 / var)
    return out + (0.5 * math.log(2 * math.pi) if full else 0.0)


def make_poisson(rng, batch, opts):
    """Counts, never 1: the Stirling term of ``full`` jumps at y = 1 (as in torch)."""
    shape = (*tuple(batch), F)
    targets = rng.choice([0.0, 2.0, 3.0, 5.0, 2.5], size=shape)
    if opts.get("log_input", True):
        return rng.normal(scale=0.7, size=shape), targets
    return rng.uniform(0.2, 4.0, size=shape), targets


def ref_poisson_nll(x, y, log_input=True, full=False, eps=1e-8):
    loss = np.exp(x) - y * x if log_input else x - y * np.log(x + eps)
    if full:
        safe = np.where(y > 1, y, 2.0)
        loss = loss + np.where(y > 1, safe * np.log(safe) - safe + 0.5 * np.log(2 * np.pi * safe), 0)
    return loss


# ---------------------------------------------------------------- binary


def make_binary(rng, batch, opts):
    shape = (*tuple(batch), F)
    labels = rng.choice([0.0, 1.0, 0.3, 0.8], size=shape)
    if opts.get("from_logits", True):
        return rng.normal(scale=2.0, size=shape), labels
    return rng.uniform(0.05, 0.95, size=shape), labels


def ref_bce(x, y, from_logits=True, pos_weight=None, label_smoothing=0.0):
    y = y * (1 - label_smoothing) + label_smoothing / 2
    pw = 1.0 if pos_weight is None else pos_weight
    if from_logits:
        log_p, log_1mp = log_sigmoid(x), log_sigmoid(-x)
    else:
        log_p, log_1mp = clamped_log(x), clamped_log(1 - x)
    return -(pw * y * log_p + (1 - y) * log_1mp)


def ref_binary_focal(x, y, gamma=2.0, alpha=0.25, from_logits=True):
    # torchvision.ops.sigmoid_focal_loss
    if from_logits:
        p = 1 / (1 + np.exp(-x))
        ce = -(y * log_sigmoid(x) + (1 - y) * log_sigmoid(-x))
    else:
        p = x
        ce = -(y * clamped_log(p) + (1 - y) * clamped_log(1 - p))
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    return loss


def make_hinge(rng, batch, opts):
    shape = (*tuple(batch), F)
    margin = opts.get("margin", 1.0)
    labels = rng.choice([-1.0, 0.0, 1.0], size=shape)
    scores = _signed_away(rng, shape, (margin,), low=0.0, high=2.5 * margin)
    return scores, labels


def ref_hinge(s, y, margin=1.0):
    y = np.where(y == 0, -1.0, y)
    return np.maximum(0.0, margin - y * s)


def ref_squared_hinge(s, y, margin=1.0):
    return ref_hinge(s, y, margin) ** 2


# ----------------------------------------------------------- categorical


def _simplex(rng, shape, low=0.05):
    t = rng.uniform(low, 1.0, size=shape)
    return t / t.sum(-1, keepdims=True)


def make_dense(rng, batch, opts):
    shape = (*tuple(batch), C)
    targets = _simplex(rng, shape)
    if opts.get("from_logits", True):
        return rng.normal(scale=2.0, size=shape), targets
    # probabilities >= 0.1: finite differences of log p'' stay accurate
    return _simplex(rng, shape, low=0.5), targets


def ref_dense_ce(x, t, from_logits=True, label_smoothing=0.0, class_weights=None, z_loss=0.0):
    num_classes = x.shape[-1]
    logp = log_softmax(x) if from_logits else clamped_log(x)
    w = np.ones(num_classes) if class_weights is None else class_weights
    a = (t * (1 - label_smoothing) + label_smoothing / num_classes) * w
    loss = -np.sum(a * logp, axis=-1)
    if from_logits:
        loss = loss + z_loss * logsumexp(x) ** 2
    return loss


def make_sparse(rng, batch, opts):
    shape = (*tuple(batch), C)
    labels = rng.integers(0, C, size=tuple(batch))
    ignore = opts.get("ignore_index")
    if ignore is not None and labels.size:
        labels.flat[:: 3] = ignore  # every third example is ignored
    if opts.get("from_logits", True):
        return rng.normal(scale=2.0, size=shape), labels
    return _simplex(rng, shape, low=0.5), labels


def ref_sparse_ce(x, labels, from_logits=True, label_smoothing=0.0, class_weights=None,
                  ignore_index=None, z_loss=0.0):
    num_classes = x.shape[-1]
    labels = _safe_labels(labels, ignore_index)
    logp = log_softmax(x) if from_logits else clamped_log(x)
    w = np.ones(num_classes) if class_weights is None else class_weights
    s = label_smoothing
    loss = (1 - s) * w[labels] * -_take(logp, labels) + s / num_classes * np.sum(w * -logp, -1)
    if from_logits:
        loss = loss + z_loss * logsumexp(x) ** 2
    return loss


def sparse_label_mask(args, opts):
    ignore = opts.get("ignore_index")
    return None if ignore is None else np.asarray(args[1]) != ignore


def sparse_normalizer(args, opts):
    cw = opts.get("class_weights")
    if cw is None:
        return None
    return np.asarray(cw, np.float64)[_safe_labels(args[1], opts.get("ignore_index"))]


def ref_categorical_focal(x, labels, gamma=2.0, alpha=None, ignore_index=None):
    labels = _safe_labels(labels, ignore_index)
    logp_y = _take(log_softmax(x), labels)
    p_y = np.exp(logp_y)
    loss = -((1 - p_y) ** gamma) * logp_y
    if alpha is not None:
        alpha = np.asarray(alpha, np.float64)
        loss = loss * (alpha[labels] if alpha.ndim else alpha)
    return loss


def make_multiclass_hinge(rng, batch, opts):
    """Scores on a 0.37 lattice (+-0.02): margins 0.5 / 1 are never within 0.1 of a kink."""
    shape = (*tuple(batch), C)
    scores = np.argsort(rng.uniform(size=shape), axis=-1) * 0.37 - 0.7
    scores = scores + rng.uniform(-0.02, 0.02, size=shape)
    labels = rng.integers(0, C, size=tuple(batch))
    return scores, labels


def ref_multiclass_hinge(s, labels, margin=1.0, p=1, class_weights=None):
    num_classes = s.shape[-1]
    s_y = _take(s, labels)
    viol = np.maximum(0.0, margin - s_y[..., None] + s) ** p
    viol = np.where(np.arange(num_classes) == np.asarray(labels)[..., None], 0.0, viol)
    loss = viol.sum(-1) / num_classes
    if class_weights is not None:
        loss = loss * class_weights[labels]
    return loss


def make_kl(rng, batch, opts):
    shape = (*tuple(batch), C)
    targets = _simplex(rng, shape, low=0.5)  # t log t: keep finite differences accurate
    if opts.get("log_targets", False):
        targets = np.log(targets)
    if opts.get("from_logits", True):
        return rng.normal(scale=2.0, size=shape), targets
    # probabilities >= 0.1: finite differences of log p'' stay accurate
    return _simplex(rng, shape, low=0.5), targets


def ref_kl(x, t, from_logits=True, log_targets=False):
    log_q = log_softmax(x) if from_logits else clamped_log(x)
    if log_targets:
        log_t = t
        t = np.exp(t)
    else:
        with np.errstate(divide="ignore"):
            log_t = np.log(t)
    return np.sum(np.where(t > 0, t * (np.where(t > 0, log_t, 0) - log_q), 0.0), axis=-1)


# -------------------------------------------------------------- sequences

CTC_T, CTC_K, CTC_S = 6, 4, 2  # frames, classes (blank included), labels per sequence


def make_ctc(rng, batch, opts):
    """Logits (..., T, K) and labels (..., S) of the non-blank symbols; T >= 2S + 1, so every
    sequence has an alignment, and about half the label pairs repeat (they need a blank)."""
    blank = opts.get("blank_id", 0)
    symbols = np.array([k for k in range(CTC_K) if k != blank])
    labels = rng.choice(symbols, size=(*tuple(batch), CTC_S))
    repeat = rng.uniform(size=tuple(batch)) < 0.5
    labels[..., 1] = np.where(repeat, labels[..., 0], labels[..., 1])
    return rng.normal(scale=1.5, size=(*tuple(batch), CTC_T, CTC_K)), labels


def ctc_nll(logp, labels, blank_id=0):
    """-log p(labels) of one sequence from its (T, K) log-probabilities (float64, the
    forward recursion of Graves et al. 2006 over the blank-extended labels)."""
    ext = [blank_id]
    for y in labels:
        ext += [int(y), blank_id]
    alpha = np.full(len(ext), -np.inf)
    alpha[0] = logp[0, ext[0]]
    if len(ext) > 1:
        alpha[1] = logp[0, ext[1]]
    for t in range(1, len(logp)):
        prev = alpha.copy()
        for s in range(len(ext)):
            terms = [prev[s]] + ([prev[s - 1]] if s >= 1 else [])
            if s >= 2 and ext[s] != blank_id and ext[s] != ext[s - 2]:
                terms.append(prev[s - 2])
            alpha[s] = np.logaddexp.reduce(terms) + logp[t, ext[s]]
    return -np.logaddexp.reduce(alpha[-2:] if len(ext) > 1 else alpha[-1:])


def ref_ctc(logits, labels, blank_id=0, zero_infinity=False):
    batch = np.shape(labels)[:-1]
    logp = log_softmax(logits).reshape(-1, *np.shape(logits)[-2:])
    flat = np.asarray(labels).reshape(-1, np.shape(labels)[-1])
    loss = np.array([ctc_nll(lp, y, blank_id) for lp, y in zip(logp, flat, strict=True)])
    if zero_infinity:
        loss = np.where(np.isinf(loss), 0.0, loss)
    return loss.reshape(batch)


def ctc_mean_scale(args, opts):
    return 1.0 / max(np.shape(args[1])[-1], 1)


# ---------------------------------------------------------- contrastive

D = 4  # embedding size of contrastive samples


def make_pairs(rng, batch, opts):
    shape = (*tuple(batch), D)
    x = rng.normal(size=shape)
    return x, 0.7 * x + rng.normal(size=shape)  # partners correlate: the diagonal matters


def _unit_rows(x):
    x = np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1])
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _kept(x, mask):
    n = int(np.prod(np.shape(x)[:-1], dtype=int))
    return np.ones(n, bool) if mask is None else np.broadcast_to(mask, np.shape(x)[:-1]).reshape(-1)


def ref_info_nce(q, k, temperature=0.07, symmetric=False, mask=None):
    """Softmax cross-entropy of each kept row over the kept rows of the other side."""
    keep = _kept(q, mask)
    qn, kn = _unit_rows(q)[keep], _unit_rows(k)[keep]
    s = qn @ kn.T / temperature
    per = -np.diag(log_softmax(s))
    if symmetric:
        per = (per - np.diag(log_softmax(s.T))) / 2
    out = np.zeros(keep.shape)
    out[keep] = per
    return out.reshape(np.shape(q)[:-1])


def ref_sigmoid_contrastive(x, y, temperature, bias, mask=None):
    """sum_j -log sigmoid(z_ij (t x_i . y_j + b)) over the kept rows, z = +1 on the diagonal."""
    keep = _kept(x, mask)
    u = temperature * _unit_rows(x)[keep] @ _unit_rows(y)[keep].T + bias
    z = np.where(np.eye(len(u), dtype=bool), 1.0, -1.0)
    out = np.zeros(keep.shape)
    out[keep] = -log_sigmoid(z * u).sum(-1)
    return out.reshape(np.shape(x)[:-1])


# --------------------------------------------- relative / logarithmic errors


def make_percentage(rng, batch, opts):
    """Targets with |y| in [0.5, 2] (the eps floor is tested apart), errors away from 0."""
    shape = (*tuple(batch), F)
    targets = _signed_away(rng, shape, (), low=0.5, high=2.0)
    return targets + _signed_away(rng, shape, (0.0,)), targets


def ref_mape(p, t, eps=1e-7):
    # Keras: 100 * |y - yhat| / max(|y|, epsilon)
    return 100 * np.abs(t - p) / np.maximum(np.abs(t), eps)


def make_positive(rng, batch, opts):
    """Positive values, some below eps = 0.5 (clamped), none within 0.1 of it."""
    shape = (*tuple(batch), F)
    return _away(rng, shape, 0.05, 3.0, (0.5,)), _away(rng, shape, 0.05, 3.0, (0.5,))


def ref_msle(p, t, eps=1e-7):
    # Keras: (log(max(yhat, eps) + 1) - log(max(y, eps) + 1))^2
    return (np.log(np.maximum(p, eps) + 1.0) - np.log(np.maximum(t, eps) + 1.0)) ** 2


# ------------------------------------------------------------ embeddings


def _norm(x):
    return np.sqrt(np.sum(np.asarray(x, np.float64) ** 2, axis=-1))


def ref_cosine(a, b, eps):
    return np.sum(a * b, axis=-1) / (np.maximum(_norm(a), eps) * np.maximum(_norm(b), eps))


def make_vectors(rng, batch, opts):
    """Pairs of vectors with norms in [0.1, 2] away from eps = 0.5, cosines away from 0 and 0.2."""
    shape = (*tuple(batch), F)

    def vectors():
        v = rng.normal(size=shape)
        return v / np.maximum(_norm(v), 1e-3)[..., None] * _away(rng, (*shape[:-1], 1), 0.1,
                                                                   2.0, (0.5,))

    a, b = vectors(), vectors()
    for _ in range(100):
        bad = np.min([np.abs(ref_cosine(a, b, 1e-8) - k) for k in (0.0, 0.2)], axis=0) < 0.1
        if not bad.any():
            break
        b = np.where(bad[..., None], vectors(), b)
    return a, b


def ref_cosine_distance(p, t, eps=1e-8):
    return 1.0 - ref_cosine(p, t, eps)


def make_cosine_pairs(rng, batch, opts):
    x1, x2 = make_vectors(rng, batch, opts)
    return x1, x2, rng.choice([-1, 1], size=tuple(batch))


def ref_cosine_embedding(x1, x2, labels, margin=0.0, eps=1e-8):
    # torch cosine_embedding_loss (norms clamped as cosine_similarity)
    cos = ref_cosine(x1, x2, eps)
    return np.where(labels == 1, 1.0 - cos, np.maximum(0.0, cos - margin))


def ref_pairwise_distance(x, y, p, eps):
    # torch pairwise_distance: ||x - y + eps||_p
    return np.sum(np.abs(x - y + eps) ** p, axis=-1) ** (1.0 / p)


def ref_triplet(a, pos, neg, margin=1.0, p=2.0, eps=1e-6, swap=False):
    d_neg = ref_pairwise_distance(a, neg, p, eps)
    if swap:
        d_neg = np.minimum(d_neg, ref_pairwise_distance(pos, neg, p, eps))
    return np.maximum(ref_pairwise_distance(a, pos, p, eps) - d_neg + margin, 0.0)


def make_triplets(rng, batch, opts):
    """Triplets away from the hinge, the swap's tie and zero coordinate differences."""
    shape = (*tuple(batch), F)
    margin, p, eps = opts.get("margin", 1.0), opts.get("p", 2.0), opts.get("eps", 1e-6)
    a, pos, neg = (rng.normal(size=shape) for _ in range(3))
    for _ in range(200):
        d_ap, d_an = ref_pairwise_distance(a, pos, p, eps), ref_pairwise_distance(a, neg, p, eps)
        d_pn = ref_pairwise_distance(pos, neg, p, eps)
        near = np.abs(d_ap - np.minimum(d_an, d_pn) + margin) < 0.1
        near |= np.abs(d_ap - d_an + margin) < 0.1
        near |= np.abs(d_an - d_pn) < 0.1
        for x, y in ((a, pos), (a, neg), (pos, neg)):
            near |= np.any(np.abs(x - y + eps) < 0.05, axis=-1)
        if not near.any():
            break
        pos = np.where(near[..., None], rng.normal(size=shape), pos)
        neg = np.where(near[..., None], rng.normal(size=shape), neg)
    return a, pos, neg


def make_ranking_pairs(rng, batch, opts):
    """x1 - x2 = z y with z away from the margin."""
    shape = (*tuple(batch), F)
    margin = opts.get("margin", 0.0)
    labels = rng.choice([-1, 1], size=shape)
    x1 = rng.normal(size=shape)
    z = _away(rng, shape, margin - 2.5, margin + 2.5, (margin,))
    return x1, x1 - z * labels, labels


def ref_margin_ranking(x1, x2, labels, margin=0.0):
    return np.maximum(0.0, -labels * (x1 - x2) + margin)


def make_distances(rng, batch, opts):
    shape = (*tuple(batch), F)
    margin = opts.get("margin", 1.0)
    return _away(rng, shape, 0.0, 2.5 * margin, (margin,)), rng.choice([-1, 1], size=shape)


def ref_hinge_embedding(x, labels, margin=1.0):
    return np.where(labels == 1, x, np.maximum(0.0, margin - x))


def make_groups(rng, batch, opts):
    """Vectors in three groups (most anchors have positives and negatives)."""
    shape = tuple(batch)
    return rng.normal(size=(*shape, F)), rng.integers(0, 3, size=shape)


def ref_ntxent(embeddings, labels, mask=None, temperature=0.07):
    """Per anchor: -sum over positives j of log(e^s_ij / (e^s_ij + sum_negatives e^s_ik))."""
    shape = np.shape(labels)
    e = np.asarray(embeddings).reshape(-1, np.shape(embeddings)[-1])
    y = np.asarray(labels).reshape(-1)
    counted = np.ones(y.shape, bool) if mask is None else np.asarray(mask).reshape(-1)
    loss, pairs = np.zeros(y.shape), np.zeros(y.shape)
    unit = e / np.maximum(_norm(e), np.sqrt(np.finfo(np.float64).eps))[:, None]
    s = unit @ unit.T / temperature
    for i in np.flatnonzero(counted):
        neg = counted & (y != y[i])
        for j in np.flatnonzero(counted & (y == y[i])):
            if j == i:
                continue
            loss[i] += -(s[i, j] - np.log(np.exp(s[i, j]) + np.exp(s[i, neg]).sum()))
            pairs[i] += 1
    return loss.reshape(shape), pairs.reshape(shape)


# --------------------------------------------------- margin-type losses


def make_signs(rng, batch, opts):
    shape = (*tuple(batch), F)
    return _signed_away(rng, shape, (0.0,), low=0.0, high=3.0), rng.choice([-1.0, 1.0], size=shape)


def ref_soft_margin(s, y):
    return np.logaddexp(0.0, -y * s)


def ref_perceptron(s, y):
    return np.maximum(0.0, -y * s)


def ref_crammer_singer(s, labels, margin=1.0):
    s_y = _take(s, labels)
    others = np.where(np.arange(s.shape[-1]) == np.asarray(labels)[..., None], -np.inf, s)
    return np.maximum(0.0, margin + others.max(-1) - s_y)


def ref_multiclass_perceptron(s, labels):
    return s.max(-1) - _take(s, labels)


def make_multilabel_indices(rng, batch, opts):
    """Lattice scores; per example 0..C target indices, -1, then ignored leftovers."""
    scores, _ = make_multiclass_hinge(rng, batch, opts)
    labels = np.full(scores.shape, -1)
    for idx in np.ndindex(*tuple(batch)):
        k = rng.integers(0, C + 1)
        labels[idx][:k] = rng.permutation(C)[:k]
        if k < C - 1:
            labels[idx][k + 1:] = rng.integers(0, C, size=C - k - 1)  # after -1: ignored
    return scores, labels


def ref_multilabel_margin(s, labels):
    # torch multilabel_margin_loss: sum_{j in targets} sum_{i not in targets} max(0, 1 - (x_j - x_i)) / C
    num_classes = s.shape[-1]
    out = np.zeros(s.shape[:-1])
    for idx in np.ndindex(*s.shape[:-1]):
        row = list(np.asarray(labels)[idx])
        listed = row[:row.index(-1)] if -1 in row else row  # a class listed twice counts twice
        x = s[idx]
        out[idx] = sum(max(0.0, 1.0 - (x[j] - x[i])) for j in listed
                       for i in range(num_classes) if i not in listed) / num_classes
    return out


def make_multilabel(rng, batch, opts):
    shape = (*tuple(batch), C)
    return rng.normal(scale=2.0, size=shape), rng.choice([0.0, 1.0, 0.3, 0.8], size=shape)


def ref_multilabel_soft_margin(x, y, class_weights=None):
    per_class = -(y * log_sigmoid(x) + (1 - y) * log_sigmoid(-x))
    if class_weights is not None:
        per_class = per_class * class_weights
    return per_class.mean(-1)


# ------------------------------------------------------------- sparsemax


def ref_sparsemax(x):
    """Sort-based projection onto the simplex (Martins & Astudillo, Algorithm 1)."""
    x = np.asarray(x, np.float64)
    z = -np.sort(-x, axis=-1)
    k = np.arange(1, x.shape[-1] + 1)
    cumulative = np.cumsum(z, axis=-1)
    size = np.sum(1 + k * z > cumulative, axis=-1, keepdims=True)
    tau = (np.take_along_axis(cumulative, size - 1, axis=-1) - 1) / size
    return np.maximum(x - tau, 0.0), tau


def make_sparsemax(rng, batch, opts):
    """Logits whose entries are all at least 0.05 from the sparsemax threshold."""
    shape = (*tuple(batch), C)
    x = rng.normal(size=shape)
    for _ in range(200):
        near = np.any(np.abs(x - ref_sparsemax(x)[1]) < 0.05, axis=-1)
        if not near.any():
            break
        x = np.where(near[..., None], rng.normal(size=shape), x)
    return x, rng.integers(0, C, size=tuple(batch))


def ref_sparsemax_loss(x, labels):
    # -x_y + (sum_{j in S} x_j^2 - tau^2) / 2 + 1/2 (Martins & Astudillo, eq. 20)
    p, tau = ref_sparsemax(x)
    support = p > 0
    return (-_take(x, labels) + 0.5 * np.sum(np.where(support, x**2 - tau**2, 0.0), axis=-1)
            + 0.5)


def make_binary_sparse(rng, batch, opts):
    shape = (*tuple(batch), F)
    return _signed_away(rng, shape, (1.0,), low=0.0, high=2.5), rng.choice([0.0, 1.0], size=shape)


def ref_binary_sparsemax(x, y):
    z = np.where(y == 1, -x, x)
    return np.where(z <= -1, 0.0, np.where(z >= 1, z, (z + 1) ** 2 / 4))


# ------------------------------------------------------ cross-entropy variants


def ref_poly(x, t, epsilon=2.0, label_smoothing=0.0):
    t = t * (1 - label_smoothing) + label_smoothing / x.shape[-1]
    logp = log_softmax(x)
    return -np.sum(t * logp, axis=-1) + epsilon * np.sum(t * (1 - np.exp(logp)), axis=-1)


def ref_generalized_ce(x, labels, q=0.5):
    # Keras categorical_generalized_cross_entropy on softmax probabilities
    p_y = np.exp(_take(log_softmax(x), labels))
    return (1 - p_y**q) / q


def make_measures(rng, batch, opts):
    """log q and positive targets that do not sum to 1."""
    shape = (*tuple(batch), C)
    return rng.normal(scale=0.7, size=shape), rng.uniform(0.1, 2.0, size=shape)


def ref_generalized_kl(log_q, t):
    with np.errstate(divide="ignore"):
        log_t = np.log(t)
    kl = np.where(t > 0, t * (np.where(t > 0, log_t, 0.0) - log_q), 0.0)
    return np.sum(kl - t + np.exp(log_q), axis=-1)


# ---------------------------------------------------------- segmentation

PIXELS = 3  # spatial positions per example in the segmentation samples


def make_segmentation(rng, batch, opts):
    """(batch..., PIXELS, C): the first axis is the batch, the others spatial."""
    shape = (*tuple(batch), PIXELS, C)
    targets = _simplex(rng, shape, low=0.05)
    if not opts.get("from_logits", True):
        return _simplex(rng, shape, low=0.5), targets
    return rng.normal(scale=1.5, size=shape), targets


def _dice_per_class(p, t, smooth, alpha, beta):
    axes = tuple(range(1, p.ndim - 1))
    inter, pred, targ = (p * t).sum(axes), p.sum(axes), t.sum(axes)
    return 1 - (inter + smooth) / (inter + alpha * (pred - inter) + beta * (targ - inter) + smooth)


def ref_dice(x, t, from_logits=True, activation="softmax", smooth=1.0, alpha=0.5, beta=0.5,
             class_weights=None, ignore_background=False):
    if from_logits:
        p = np.exp(log_softmax(x)) if activation == "softmax" else np.exp(log_sigmoid(x))
    else:
        p = x
    per_class = _dice_per_class(p, t, smooth, alpha, beta)
    if class_weights is not None:
        per_class = per_class * class_weights
    if ignore_background and per_class.shape[-1] > 1:
        per_class = per_class[..., 1:]
    return per_class.mean(-1)


def ref_generalized_dice(x, t, mask=None, smooth=1.0, ignore_background=False):
    counted = np.ones(x.shape[:1], bool) if mask is None else np.asarray(mask)
    frequency = t[counted].reshape(-1, t.shape[-1]).sum(0)
    w = 1 / (frequency**2 + 1e-7)
    w = w / w.sum() * len(w)
    p = np.exp(log_softmax(x)) if x.shape[-1] > 1 else np.exp(log_sigmoid(x))
    per_class = _dice_per_class(p, t, smooth, 0.5, 0.5) * w
    if ignore_background and per_class.shape[-1] > 1:
        per_class = per_class[..., 1:]
    return per_class.mean(-1), None


# --------------------------------------------------------------- ranking

VALID = np.array([True, True, False, True, True])  # the third item of every list is padding


def make_lists(rng, batch, opts):
    shape = (*tuple(batch), C)
    return rng.normal(size=shape), rng.choice([0.0, 1.0, 2.0, 0.5], size=shape)


def ref_ranking_softmax(s, r, valid=None):
    if valid is None:
        return -np.sum(r * log_softmax(s), axis=-1)
    v = np.broadcast_to(np.asarray(valid, bool), s.shape)
    logp = log_softmax(np.where(v, s, -np.inf))
    return -np.sum(np.where(v, r * np.where(v, logp, 0.0), 0.0), axis=-1)


# ------------------------------------------------------------------ table

_ERR_KINKS = (0.0, 0.5, 1.0, 2.0)

# ----------------------------------------------------------- preference losses
# Sequence log-probabilities, elementwise over pairs; as TRL's DPOTrainer / ORPOTrainer /
# CPOTrainer / KTOTrainer and the SimPO paper.


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def ref_margin(u, beta, loss_type, s):
    """TRL's DPOTrainer.dpo_loss per loss_type, on the margin u."""
    if loss_type == "sigmoid":
        return -(1 - s) * log_sigmoid(beta * u) - s * log_sigmoid(-beta * u)
    if loss_type == "robust":
        return (-(1 - s) * log_sigmoid(beta * u) + s * log_sigmoid(-beta * u)) / (1 - 2 * s)
    if loss_type == "hinge":
        return np.maximum(0.0, 1 - beta * u)
    return (u - 1 / (2 * beta)) ** 2


def ref_dpo(pc, pr, rc, rr, beta=0.1, loss_type="sigmoid", label_smoothing=0.0):
    return ref_margin((pc - pr) - (rc - rr), beta, loss_type, label_smoothing)


def ref_orpo(c, r, beta=0.1, chosen_nll=None):
    log_odds = (c - np.log1p(-np.exp(c))) - (r - np.log1p(-np.exp(r)))
    return -beta * log_sigmoid(log_odds) + (0.0 if chosen_nll is None else chosen_nll)


def ref_simpo(c, r, beta=2.0, gamma=0.5, label_smoothing=0.0):
    u = beta * (c - r) - gamma
    return -(1 - label_smoothing) * log_sigmoid(u) - label_smoothing * log_sigmoid(-u)


def ref_cpo(c, r, beta=0.1, loss_type="sigmoid", label_smoothing=0.0, alpha=1.0, chosen_nll=None):
    return ref_margin(c - r, beta, loss_type, label_smoothing) + (
        0.0 if chosen_nll is None else alpha * chosen_nll)


def ref_kto(p, r, desirable, beta=0.1, policy_kl_logps=None, reference_kl_logps=None,
            desirable_weight=1.0, undesirable_weight=1.0):
    z0 = 0.0 if policy_kl_logps is None else max(np.mean(policy_kl_logps - reference_kl_logps), 0.0)
    ratio = p - r
    return np.where(desirable, desirable_weight * (1 - sigmoid(beta * (ratio - z0))),
                    undesirable_weight * (1 - sigmoid(beta * (z0 - ratio))))


def make_logps(low, high, count):
    def make(rng, batch, opts):
        return tuple(rng.uniform(low, high, (*tuple(batch), F)) for _ in range(count))
    return make


def make_kto(rng, batch, opts):
    shape = (*tuple(batch), F)
    return (rng.uniform(-12.0, -2.0, shape), rng.uniform(-12.0, -2.0, shape),
            rng.integers(0, 2, shape))


CASES = [
    LossCase("mean_squared_error", jloss.mean_squared_error, _err_inputs(_ERR_KINKS), ref_mse),
    LossCase("mean_absolute_error", jloss.mean_absolute_error, _err_inputs(_ERR_KINKS), ref_mae),
    LossCase("huber", jloss.huber, _err_inputs(_ERR_KINKS), ref_huber,
             options=({}, {"delta": 0.5}, {"delta": 2.0}), grad_options=({"delta": 0.5},)),
    LossCase("smooth_l1", jloss.smooth_l1, _err_inputs(_ERR_KINKS), ref_smooth_l1,
             options=({}, {"beta": 0.5}, {"beta": 0.0}, {"beta": 2.0}),
             grad_options=({"beta": 0.5},)),
    LossCase("log_cosh", jloss.log_cosh, _err_inputs(_ERR_KINKS), ref_log_cosh),
    LossCase("pinball", jloss.pinball, _err_inputs(_ERR_KINKS), ref_pinball,
             options=({}, {"quantile": 0.1}, {"quantile": 0.9}),
             grad_options=({"quantile": 0.1},)),
    LossCase("gaussian_nll", jloss.gaussian_nll, make_gaussian, ref_gaussian_nll,
             options=({}, {"full": True}, {"eps": 0.5}),
             # eps=0.5 clamps some variances: torch passes that gradient straight
             # through, which is not the derivative finite differences see.
             grad_options=({"full": True},),
             float_args=(0, 1, 2), diff_args=(0, 1, 2),
             straight_through=lambda args, opts: {2: np.asarray(args[2]) < opts.get("eps", 1e-6)}),
    LossCase("poisson_nll", jloss.poisson_nll, make_poisson, ref_poisson_nll,
             options=({}, {"log_input": False}, {"full": True},
                      {"log_input": False, "full": True, "eps": 1e-3}),
             grad_options=({"full": True},)),
    LossCase("binary_cross_entropy", jloss.binary_cross_entropy, make_binary, ref_bce,
             options=({}, {"label_smoothing": 0.1}, {"pos_weight": POS_WEIGHT},
                      {"from_logits": False},
                      {"from_logits": False, "label_smoothing": 0.2, "pos_weight": 2.0}),
             grad_options=({"label_smoothing": 0.1, "pos_weight": POS_WEIGHT},),
             custom_vjp=True),
    LossCase("binary_focal_loss", jloss.binary_focal_loss, make_binary, ref_binary_focal,
             options=({}, {"gamma": 0.0, "alpha": None}, {"gamma": 0.5, "alpha": 0.75},
                      {"gamma": 5.0}, {"from_logits": False},
                      {"from_logits": False, "gamma": 1.0, "alpha": None}),
             grad_options=({"gamma": 0.5, "alpha": 0.75},),
             diff_args=(0,), custom_vjp=True),
    LossCase("hinge", jloss.hinge, make_hinge, ref_hinge, options=({}, {"margin": 0.5}),
             grad_options=({"margin": 0.5},), diff_args=(0,)),
    LossCase("squared_hinge", jloss.squared_hinge, make_hinge, ref_squared_hinge,
             options=({}, {"margin": 2.0}), grad_options=({"margin": 2.0},), diff_args=(0,)),
    LossCase("categorical_cross_entropy", jloss.categorical_cross_entropy, make_dense,
             ref_dense_ce, class_axis=True, custom_vjp=True,
             options=({}, {"label_smoothing": 0.1}, {"class_weights": CLASS_WEIGHTS},
                      {"z_loss": 1e-2},
                      {"label_smoothing": 0.2, "class_weights": CLASS_WEIGHTS, "z_loss": 1e-3},
                      {"from_logits": False},
                      {"from_logits": False, "label_smoothing": 0.1,
                       "class_weights": CLASS_WEIGHTS}),
             grad_options=({"label_smoothing": 0.2, "class_weights": CLASS_WEIGHTS,
                            "z_loss": 1e-3},)),
    LossCase("sparse_categorical_cross_entropy", jloss.sparse_categorical_cross_entropy,
             make_sparse, ref_sparse_ce, class_axis=True, custom_vjp=True,
             float_args=(0,), diff_args=(0,),
             label_mask=sparse_label_mask, normalizer=sparse_normalizer,
             options=({}, {"label_smoothing": 0.1}, {"class_weights": CLASS_WEIGHTS},
                      {"ignore_index": -100}, {"z_loss": 1e-2},
                      {"label_smoothing": 0.2, "class_weights": CLASS_WEIGHTS,
                       "ignore_index": 2, "z_loss": 1e-3},
                      {"from_logits": False},
                      {"from_logits": False, "label_smoothing": 0.1,
                       "class_weights": CLASS_WEIGHTS}),
             grad_options=({"label_smoothing": 0.2, "class_weights": CLASS_WEIGHTS,
                            "ignore_index": 2, "z_loss": 1e-3},)),
    LossCase("categorical_focal_loss", jloss.categorical_focal_loss, make_sparse,
             ref_categorical_focal, class_axis=True, custom_vjp=True,
             float_args=(0,), diff_args=(0,), label_mask=sparse_label_mask,
             options=({}, {"gamma": 0.0}, {"gamma": 0.5, "alpha": 0.25},
                      {"gamma": 1.0, "alpha": ALPHA}, {"gamma": 5.0, "ignore_index": -1}),
             grad_options=({"gamma": 0.5, "alpha": ALPHA, "ignore_index": -1},)),
    LossCase("multiclass_hinge", jloss.multiclass_hinge, make_multiclass_hinge,
             ref_multiclass_hinge, class_axis=True, float_args=(0,), diff_args=(0,),
             options=({}, {"p": 2}, {"margin": 0.5, "class_weights": CLASS_WEIGHTS}),
             grad_options=({"p": 2, "margin": 0.5, "class_weights": CLASS_WEIGHTS},)),
    LossCase("kl_divergence", jloss.kl_divergence, make_kl, ref_kl, class_axis=True,
             options=({}, {"log_targets": True}, {"from_logits": False},
                      {"from_logits": False, "log_targets": True}),
             grad_options=({},)),
    LossCase("ctc", jloss.ctc, make_ctc, ref_ctc, float_args=(0,), diff_args=(0,),
             event_ndims=(2, 1), custom_vjp=True, mean_scale=ctc_mean_scale,
             options=({}, {"blank_id": 2}, {"blank_id": 3, "zero_infinity": True}),
             grad_options=({"blank_id": 2},)),
    LossCase("info_nce", jloss.info_nce, make_pairs, ref_info_nce, event_ndims=(1, 1),
             coupled=True,
             options=({}, {"temperature": 0.5}, {"temperature": 0.3, "symmetric": True}),
             grad_options=({"temperature": 0.3, "symmetric": True},)),
    # temperature and bias have no defaults: the row calls it with SigLIP's initial values
    LossCase("sigmoid_contrastive",
             functools.partial(jloss.sigmoid_contrastive, temperature=10.0, bias=-10.0),
             make_pairs, ref_sigmoid_contrastive, event_ndims=(1, 1), coupled=True,
             options=({"temperature": 10.0, "bias": -10.0}, {"temperature": 2.0, "bias": -1.0})),
    LossCase("mean_absolute_percentage_error", jloss.mean_absolute_percentage_error,
             make_percentage, ref_mape),
    LossCase("mean_squared_logarithmic_error", jloss.mean_squared_logarithmic_error,
             make_positive, ref_msle, options=({}, {"eps": 0.5}), grad_options=({"eps": 0.5},)),
    LossCase("cosine_distance", jloss.cosine_distance, make_vectors, ref_cosine_distance,
             class_axis=True, options=({}, {"eps": 0.5}), grad_options=({"eps": 0.5},)),
    LossCase("cosine_embedding", jloss.cosine_embedding, make_cosine_pairs, ref_cosine_embedding,
             class_axis=True, options=({}, {"margin": 0.2}), grad_options=({"margin": 0.2},)),
    LossCase("triplet_margin", jloss.triplet_margin, make_triplets, ref_triplet, class_axis=True,
             float_args=(0, 1, 2), diff_args=(0, 1, 2),
             options=({}, {"margin": 0.5, "p": 1.0, "swap": True})),
    LossCase("margin_ranking", jloss.margin_ranking, make_ranking_pairs, ref_margin_ranking,
             options=({}, {"margin": 0.5}), grad_options=({"margin": 0.5},)),
    LossCase("hinge_embedding", jloss.hinge_embedding, make_distances, ref_hinge_embedding,
             float_args=(0,), diff_args=(0,), options=({}, {"margin": 0.5}),
             grad_options=({"margin": 0.5},)),
    LossCase("ntxent", jloss.ntxent, make_groups, ref_ntxent, class_axis=True, float_args=(0,),
             diff_args=(0,), coupled=True, axis_option=False, options=({"temperature": 0.5},)),
    LossCase("soft_margin", jloss.soft_margin, make_signs, ref_soft_margin, diff_args=(0,)),
    LossCase("perceptron", jloss.perceptron, make_signs, ref_perceptron, diff_args=(0,)),
    LossCase("crammer_singer_hinge", jloss.crammer_singer_hinge, make_multiclass_hinge,
             ref_crammer_singer, class_axis=True, float_args=(0,), diff_args=(0,),
             options=({}, {"margin": 0.5}), grad_options=({"margin": 0.5},)),
    LossCase("multiclass_perceptron", jloss.multiclass_perceptron, make_multiclass_hinge,
             ref_multiclass_perceptron, class_axis=True, float_args=(0,), diff_args=(0,)),
    LossCase("multilabel_margin", jloss.multilabel_margin, make_multilabel_indices,
             ref_multilabel_margin, class_axis=True, float_args=(0,), diff_args=(0,),
             dense_labels=True),
    LossCase("multilabel_soft_margin", jloss.multilabel_soft_margin, make_multilabel,
             ref_multilabel_soft_margin, class_axis=True, diff_args=(0,), custom_vjp=True,
             options=({}, {"class_weights": CLASS_WEIGHTS}),
             grad_options=({"class_weights": CLASS_WEIGHTS},)),
    LossCase("sparsemax_loss", jloss.sparsemax_loss, make_sparsemax, ref_sparsemax_loss,
             class_axis=True, float_args=(0,), diff_args=(0,)),
    LossCase("binary_sparsemax_loss", jloss.binary_sparsemax_loss, make_binary_sparse,
             ref_binary_sparsemax, diff_args=(0,)),
    LossCase("poly_cross_entropy", jloss.poly_cross_entropy, make_dense, ref_poly,
             class_axis=True, custom_vjp=True,
             options=({}, {"epsilon": -0.5, "label_smoothing": 0.1}),
             grad_options=({"epsilon": -0.5, "label_smoothing": 0.1},)),
    LossCase("generalized_cross_entropy", jloss.generalized_cross_entropy, make_sparse,
             ref_generalized_ce, class_axis=True, float_args=(0,), diff_args=(0,),
             options=({}, {"q": 0.1}), grad_options=({"q": 0.1},)),
    LossCase("generalized_kl_divergence", jloss.generalized_kl_divergence, make_measures,
             ref_generalized_kl, class_axis=True),
    LossCase("dice", jloss.dice, make_segmentation, ref_dice, class_axis=True, example_ndim=1,
             options=({}, {"activation": "sigmoid", "smooth": 0.5, "alpha": 0.3, "beta": 0.7,
                           "class_weights": CLASS_WEIGHTS, "ignore_background": True},
                      {"from_logits": False}),
             grad_options=({"activation": "sigmoid", "smooth": 0.5, "alpha": 0.3, "beta": 0.7,
                            "class_weights": CLASS_WEIGHTS, "ignore_background": True},)),
    LossCase("generalized_dice", jloss.generalized_dice, make_segmentation, ref_generalized_dice,
             class_axis=True, example_ndim=1, coupled=True,
             options=({"smooth": 0.5, "ignore_background": True},)),
    LossCase("ranking_softmax", jloss.ranking_softmax, make_lists, ref_ranking_softmax,
             class_axis=True, axis_option=False, options=({}, {"valid": VALID}),
             grad_options=({"valid": VALID},)),
    LossCase("dpo", jloss.dpo, make_logps(-30.0, -2.0, 4), ref_dpo, float_args=(0, 1, 2, 3),
             diff_args=(0, 1, 2, 3),
             options=({}, {"label_smoothing": 0.1}, {"loss_type": "ipo", "beta": 0.5},
                      {"loss_type": "robust", "beta": 0.2, "label_smoothing": 0.2}),
             grad_options=({"loss_type": "robust", "beta": 0.2, "label_smoothing": 0.2},)),
    LossCase("orpo", jloss.orpo, make_logps(-3.0, -0.05, 2), ref_orpo, options=({}, {"beta": 1.0})),
    LossCase("simpo", jloss.simpo, make_logps(-3.0, -0.1, 2), ref_simpo,
             options=({}, {"gamma": 1.0, "label_smoothing": 0.1})),
    LossCase("cpo", jloss.cpo, make_logps(-12.0, -2.0, 2), ref_cpo,
             options=({}, {"loss_type": "ipo", "beta": 0.5})),
    LossCase("kto", jloss.kto, make_kto, ref_kto, options=({}, {"beta": 0.5, "desirable_weight": 1.33})),
]

BY_NAME = {c.name: c for c in CASES}


def case_options(cases=None, which="all"):
    """(case, opts) pairs with readable ids, for ``pytest.mark.parametrize``.

    which: "all" options, "grads" (``grad_options``), "edges": the default and
    the last option of each row (often the probability path), or "rich": one
    option per row, the last of ``grad_options`` (every term of the kernel),
    for tests whose subject is the convention rather than the formula.
    """
    out, ids = [], []
    for c in CASES if cases is None else cases:
        opts = c.opts_for_grads() if which in ("grads", "rich") else c.options
        if which == "edges":
            opts = opts[:1] + opts[-1:] if len(opts) > 1 else opts
        if which == "rich":
            opts = opts[-1:]
        for o in opts:
            out.append((c, o))
            ids.append(f"{c.name}[{opt_id(o)}]")
    return out, ids


def params(cases=None, which="all"):
    """``pytest.mark.parametrize("case,opts", **params(...))`` keyword arguments."""
    values, ids = case_options(cases, which)
    return {"argvalues": values, "ids": ids}


def family(*names):
    return [BY_NAME[n] for n in names]


ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error",
           "mape": "mean_absolute_percentage_error", "msle": "mean_squared_logarithmic_error"}
REGRESSION = family("mean_squared_error", "mean_absolute_error", "huber",
                    "smooth_l1", "log_cosh", "pinball", "gaussian_nll", "poisson_nll")
CLASSIFICATION = family("binary_cross_entropy", "binary_focal_loss", "hinge", "squared_hinge",
                        "categorical_cross_entropy", "sparse_categorical_cross_entropy",
                        "categorical_focal_loss", "multiclass_hinge")
DIVERGENCE = family("kl_divergence")
SEQUENCE = family("ctc")
CONTRASTIVE = family("info_nce", "sigmoid_contrastive")
MORE_REGRESSION = family("mean_absolute_percentage_error", "mean_squared_logarithmic_error")
EMBEDDING = family("cosine_distance", "cosine_embedding", "triplet_margin", "margin_ranking",
                   "hinge_embedding", "ntxent")
MORE_CLASSIFICATION = family("soft_margin", "perceptron", "crammer_singer_hinge",
                             "multiclass_perceptron", "multilabel_margin", "multilabel_soft_margin",
                             "sparsemax_loss", "binary_sparsemax_loss", "poly_cross_entropy",
                             "generalized_cross_entropy", "generalized_kl_divergence")
SEGMENTATION_RANKING = family("dice", "generalized_dice", "ranking_softmax")
PREFERENCE = family("dpo", "orpo", "simpo", "cpo", "kto")
assert sorted(c.name for c in REGRESSION + CLASSIFICATION + DIVERGENCE + SEQUENCE + CONTRASTIVE
              + MORE_REGRESSION + EMBEDDING + MORE_CLASSIFICATION + SEGMENTATION_RANKING
              + PREFERENCE) == sorted(BY_NAME)

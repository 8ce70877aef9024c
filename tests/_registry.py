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

    @property
    def arg_names(self):
        """Names of the positional arguments (predictions / logits / scores, targets ...)."""
        import inspect

        params = inspect.signature(self.fn).parameters.values()
        return tuple(p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD)

    def loss_shape(self, args):
        shape = np.shape(args[0])
        return shape[:-1] if self.class_axis else shape

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
    loss = case.ref(*args, **ref_kwargs(opts))
    mask = None if where is None else np.broadcast_to(np.asarray(where, bool), np.shape(loss))
    extra = None if case.label_mask is None else case.label_mask(args, opts)
    if extra is not None:
        mask = extra if mask is None else mask & extra
    c = None if case.normalizer is None else case.normalizer(args, opts)
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


ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}
REGRESSION = family("mean_squared_error", "mean_absolute_error", "huber",
                    "smooth_l1", "log_cosh", "pinball", "gaussian_nll", "poisson_nll")
CLASSIFICATION = family("binary_cross_entropy", "binary_focal_loss", "hinge", "squared_hinge",
                        "categorical_cross_entropy", "sparse_categorical_cross_entropy",
                        "categorical_focal_loss", "multiclass_hinge")
DIVERGENCE = family("kl_divergence")
PREFERENCE = family("dpo", "orpo", "simpo", "cpo", "kto")
assert sorted(c.name for c in REGRESSION + CLASSIFICATION + DIVERGENCE + PREFERENCE) == sorted(BY_NAME)

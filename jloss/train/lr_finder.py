"""The learning-rate range test (Smith 2017; fastai's ``lr_find``): train while the rate grows."""

import dataclasses
import math
import warnings
from collections.abc import Iterator

import jax
import numpy as np

from jloss.train.lr_state import learning_rate, learning_rate_settable, set_learning_rate
from jloss.train.optim import optimizer as make_optimizer
from jloss.train.state import TrainState
from jloss.train.step import make_train_step

__all__ = ["LRFinderResult", "lr_finder"]


@dataclasses.dataclass(frozen=True)
class LRFinderResult:
    """The curve of an LR range test and the rate it suggests.

    Attributes:
      lrs: learning rate of each step taken, increasing exponentially.
      losses: the training loss at each step (before that step's update).
      smoothed: bias-corrected exponential moving average of ``losses``.
      suggested_lr: the suggested learning rate (see ``method``).
      min_loss_lr: the rate at the minimum of the smoothed curve.
      diverged: True when the test stopped early because the loss diverged.
      method: ``"steepest"`` or ``"min/10"``: how ``suggested_lr`` was chosen.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggested_lr: float
    min_loss_lr: float
    diverged: bool
    method: str

    def plot(self, ax=None, **kwargs):
        """Plot the curve with :func:`jloss.plot.plot_lr_finder` (needs matplotlib); returns the Axes."""
        from jloss.plot import plot_lr_finder

        return plot_lr_finder(self, ax, **kwargs)


def _batch_source(batches):
    """A function ``i -> batch or None``: lists cycle, iterators are consumed, else one fixed batch."""
    if isinstance(batches, list):
        if not batches:
            raise ValueError("batches is an empty list")
        return lambda i: batches[i % len(batches)]
    if isinstance(batches, Iterator):
        return lambda i: next(batches, None)
    return lambda i: batches


def _suggest(lrs, smoothed, method):
    i_min = int(np.nanargmin(smoothed))
    min_lr = float(lrs[i_min])
    if method == "min/10":
        return min_lr / 10, min_lr, method
    # steepest descent of the smoothed curve in log(lr), before its minimum,
    # skipping the first 10% (the moving average is still warming up).
    start = max(1, len(lrs) // 10)
    if i_min - start < 3:
        return min_lr / 10, min_lr, "min/10"
    log_lr = np.log10(lrs[start:i_min + 1])
    slope = np.gradient(smoothed[start:i_min + 1], log_lr)
    return float(lrs[start + int(np.argmin(slope))]), min_lr, "steepest"


def lr_finder(loss_fn, state, batches, *, min_lr=1e-7, max_lr=10.0, num_steps=100, optimizer=None,
              smoothing=0.98, diverge_threshold=4.0, method="steepest", has_aux=False,
              **optimizer_options):
    """Learning-rate range test: train while the rate grows exponentially; suggest a rate.

    Step ``i`` (of up to ``num_steps = N``) trains with

    .. math::

        \\eta_i = \\eta_{min} (\\eta_{max} / \\eta_{min})^{i / (N - 1)}

    and records the loss before its update; the smoothed curve is the
    bias-corrected moving average :math:`s_i = a_i / (1 - \beta^{i + 1})`,
    :math:`a_i = \beta a_{i-1} + (1 - \beta) L_i` (``beta = smoothing``). The
    test stops early once the loss diverges: not finite, or :math:`s_i` above
    ``diverge_threshold`` times its minimum so far. Use it to find the order of
    magnitude of the learning rate before training, as fastai's ``lr_find``.
    The parameters passed in are not changed (JAX arrays are immutable).

    Args:
      loss_fn: ``loss_fn(params, batch) -> loss`` (``(loss, aux)`` with ``has_aux``),
        as for :func:`jloss.make_train_step`.
      state: a :class:`jloss.TrainState` or a params pytree.
      batches: a list of batches (cycled), an iterator of batches (consumed;
        the test stops when it ends) or one batch (a pytree of arrays, reused).
      min_lr, max_lr, num_steps: the ramp above, ``0 < min_lr < max_lr``, ``num_steps >= 2``.
      optimizer: None (default): a TrainState whose optimizer stores a
        constant learning rate (every :func:`jloss.optimizer` without a
        schedule does) is tested with its own optimizer and optimizer state,
        the rate overridden at each step (:func:`jloss.set_learning_rate`). A
        params pytree, or a TrainState whose rate cannot be overridden (a plain
        optax optimizer, a schedule; this warns), starts a fresh SGD. An
        optimizer name for :func:`jloss.optimizer` (``"sgd"``, ``"adam"``, ...)
        starts a fresh optimizer of that name from the params, with
        ``**optimizer_options``.
      smoothing: the factor ``beta`` of the smoothed curve, in [0, 1) (0: no smoothing).
      diverge_threshold: stop when the smoothed loss exceeds this (> 1) times its minimum.
      method: ``"steepest"``: the rate of steepest descent of the smoothed loss
        against log(lr) before its minimum, skipping the first 10% of the steps
        (falls back to ``"min/10"`` when that part of the curve is too short);
        ``"min/10"``: a tenth of the rate at the minimum.
      has_aux: ``loss_fn`` returns ``(loss, aux)``.

    Returns:
      An :class:`LRFinderResult`: ``lrs``, ``losses``, ``smoothed`` (one per step
      taken), ``suggested_lr``, ``min_loss_lr``, ``diverged`` and ``method``.

    Raises:
      ValueError: for a bad ``min_lr`` / ``max_lr``, ``num_steps``, ``smoothing``,
        ``method`` or ``diverge_threshold`` (naming it), an empty list of batches
        or an iterator that gives none, and optimizer options with
        ``optimizer=None`` and a TrainState (they configure a fresh optimizer).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> def loss_fn(params, batch):
      ...     return jnp.mean((batch["x"] * params["w"] - batch["y"]) ** 2)
      >>> batch = {"x": jnp.linspace(-1.0, 1.0, 8), "y": 3 * jnp.linspace(-1.0, 1.0, 8)}
      >>> res = jloss.lr_finder(loss_fn, {"w": jnp.zeros(())}, batch, min_lr=1e-3, max_lr=100.0,
      ...                       num_steps=40, smoothing=0.5)
      >>> len(res.lrs), res.diverged, res.method, round(res.suggested_lr, 3)
      (33, True, 'steepest', 0.273)

    References:
      L. Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017.
    """
    if not 0 < min_lr < max_lr:
        raise ValueError(f"need 0 < min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2, got {num_steps}")
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    if method not in ("steepest", "min/10"):
        raise ValueError(f"method must be 'steepest' or 'min/10', got {method!r}")
    if diverge_threshold <= 1:
        raise ValueError(f"diverge_threshold must be > 1, got {diverge_threshold}")

    own = optimizer is None and isinstance(state, TrainState)
    if own and learning_rate_settable(state.opt_state):
        if optimizer_options:
            raise ValueError(f"optimizer options {sorted(optimizer_options)} configure a fresh optimizer, "
                             "but optimizer=None tests the TrainState's own; pass optimizer='sgd' (or "
                             "another name) with them")
    else:
        if own:
            why = ("its learning rate is a schedule" if learning_rate(state.opt_state) is not None
                   else "its optimizer does not store its learning rate")
            warnings.warn(f"lr_finder cannot set the learning rate of this TrainState ({why}), so it tests a "
                          "fresh SGD from its params; build the optimizer with jloss.optimizer(name, "
                          "constant_rate), or pass optimizer='sgd' (or another name) to choose", stacklevel=2)
        params = state.params if isinstance(state, TrainState) else state
        state = TrainState.create(params=params,
                                  tx=make_optimizer(optimizer or "sgd", min_lr, **optimizer_options))

    train_step = make_train_step(loss_fn, has_aux=has_aux)

    @jax.jit
    def step(state, batch, lr):
        return train_step(state.replace(opt_state=set_learning_rate(state.opt_state, lr)), batch)

    source = _batch_source(batches)
    ratio = max_lr / min_lr
    lrs, losses, smoothed = [], [], []
    avg, best, diverged = 0.0, math.inf, False
    for i in range(num_steps):
        batch = source(i)
        if batch is None:
            break
        lr = min_lr * ratio ** (i / (num_steps - 1))
        state, metrics = step(state, batch, lr)
        loss = float(metrics["loss"])
        lrs.append(lr)
        losses.append(loss)
        if not math.isfinite(loss):
            smoothed.append(math.inf)
            diverged = True
            break
        avg = smoothing * avg + (1 - smoothing) * loss
        value = avg / (1 - smoothing ** (i + 1))
        smoothed.append(value)
        best = min(best, value)
        if value > diverge_threshold * best:
            diverged = True
            break
    if not lrs:
        raise ValueError("batches gave no batch")
    lrs, losses, smoothed = np.asarray(lrs), np.asarray(losses), np.asarray(smoothed)
    finite = np.where(np.isfinite(smoothed), smoothed, np.nan)
    suggested, min_loss_lr, used = _suggest(lrs, finite, method)
    return LRFinderResult(lrs, losses, smoothed, suggested, min_loss_lr, diverged, used)

"""Visual tools: learning-rate range test, loss landscapes, loss-curve plots.

The computations (:func:`lr_finder`, :func:`loss_landscape`) need only JAX.
The plot helpers import matplotlib lazily (``pip install "jloss[plot]"``);
each takes an optional matplotlib ``Axes`` and returns the Axes it drew on.
"""

import dataclasses
import functools
import math
import warnings
from collections.abc import Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jloss.train.loop import History
from jloss.train.optim import learning_rate as _stored_learning_rate
from jloss.train.optim import optimizer as _optimizer
from jloss.train.state import TrainState
from jloss.train.step import make_train_step

# ------------------------------------------------------------------ lr finder


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

    def plot(self, ax=None):
        """Plot the curve (see :func:`plot_lr_finder`); returns the Axes."""
        return plot_lr_finder(self, ax)


def _set_learning_rate(opt_state, lr):
    """Replace every injected ``learning_rate`` hyperparameter in ``opt_state`` by ``lr``."""
    def is_injected(node):
        hp = getattr(node, "hyperparams", None)
        return isinstance(hp, dict) and "learning_rate" in hp

    def replace(node):
        if is_injected(node):
            hp = dict(node.hyperparams)
            hp["learning_rate"] = jnp.asarray(lr, jnp.asarray(hp["learning_rate"]).dtype)
            return node._replace(hyperparams=hp)
        return node

    return jax.tree_util.tree_map(replace, opt_state, is_leaf=is_injected)


def _learning_rate_settable(opt_state):
    """Whether ``opt_state`` stores a learning rate that :func:`_set_learning_rate` can override.

    True when it holds an injected ``learning_rate`` hyperparameter (every
    :func:`jloss.optimizer` does) that is a number, not a schedule: a
    scheduled rate is recomputed from the step count at every update, so a
    value written into the state would be ignored.
    """
    found = []

    def visit(node):
        hp = getattr(node, "hyperparams", None)
        if isinstance(hp, dict) and "learning_rate" in hp:
            found.append("learning_rate" not in (getattr(node, "hyperparams_states", None) or {}))
            return True
        return False

    jax.tree_util.tree_leaves(opt_state, is_leaf=visit)
    return bool(found) and all(found)


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
    """Learning-rate range test (Smith 2017; the fastai "lr_find").

    Trains from ``state`` for up to ``num_steps`` steps while the learning rate
    grows exponentially from ``min_lr`` to ``max_lr``, recording the loss at
    each step, and stops early once the loss diverges (non-finite, or the
    smoothed loss above ``diverge_threshold`` times its minimum so far). The
    parameters passed in are not changed (JAX arrays are immutable); use the
    suggestion to train from them.

    Args:
      loss_fn: ``loss_fn(params, batch) -> loss`` (``(loss, aux)`` with ``has_aux``),
        as for :func:`jloss.make_train_step`.
      state: a :class:`jloss.TrainState` or a params pytree.
      batches: a list of batches (cycled), an iterator of batches (consumed;
        the test stops when it ends) or one batch (a pytree of arrays, reused).
      min_lr, max_lr, num_steps: the exponential ramp ``min_lr * (max_lr / min_lr) ** (i / (num_steps - 1))``.
      optimizer: None (default): a TrainState whose optimizer stores a
        constant learning rate (every :func:`jloss.optimizer` without a
        schedule does) is tested with its own optimizer and optimizer state,
        the rate overridden at each step. A params pytree, or a TrainState
        whose rate cannot be read or overridden (a plain optax optimizer, a
        schedule; this warns), starts a fresh SGD. An optimizer name for
        :func:`jloss.optimizer` (``"sgd"``, ``"adam"``, ...) starts a fresh
        optimizer of that name from the params, with ``**optimizer_options``.
      smoothing: the EMA factor of the smoothed curve (0 = no smoothing).
      diverge_threshold: stop when the smoothed loss exceeds this times its minimum.
      method: ``"steepest"``: the rate of steepest descent of the smoothed loss
        against log(lr) before its minimum (falls back to ``"min/10"`` when the
        curve is too short); ``"min/10"``: a tenth of the rate at the minimum.

    Returns:
      An ``LRFinderResult`` ``(lrs, losses, smoothed, suggested_lr, ...)``.

    Raises:
      ValueError: a bad ramp (``0 < min_lr < max_lr``, ``num_steps >= 2``),
        ``smoothing``, ``method`` or ``diverge_threshold``, or optimizer options
        with ``optimizer=None``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> def loss_fn(params, batch):
      ...     return jloss.mse(batch["x"] @ params["w"], batch["y"])
      >>> batch = {"x": jnp.array([[1.0, 1.0], [1.0, 2.0]]), "y": jnp.array([1.0, 2.0])}
      >>> result = jloss.lr_finder(loss_fn, {"w": jnp.zeros(2)}, batch, min_lr=1e-3, max_lr=10.0,
      ...                          num_steps=20)
      >>> len(result.lrs) <= 20, 1e-3 <= result.suggested_lr <= 10.0
      (True, True)

    References:
      Smith, L. N. (2017). Cyclical Learning Rates for Training Neural Networks.
      WACV; fastai ``lr_find``.
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
    if own and _learning_rate_settable(state.opt_state):
        if optimizer_options:
            raise ValueError(f"optimizer options {sorted(optimizer_options)} configure a fresh optimizer, "
                             "but optimizer=None tests the TrainState's own; pass optimizer='sgd' (or "
                             "another name) with them")
    else:
        if own:
            why = ("its learning rate is a schedule" if _stored_learning_rate(state.opt_state) is not None
                   else "its optimizer does not store its learning rate")
            warnings.warn(f"lr_finder cannot set the learning rate of this TrainState ({why}), so it tests a "
                          "fresh SGD from its params; build the optimizer with jloss.optimizer(name, "
                          "constant_rate), or pass optimizer='sgd' (or another name) to choose", stacklevel=2)
        params = state.params if isinstance(state, TrainState) else state
        state = TrainState.create(params=params,
                                  tx=_optimizer(optimizer or "sgd", min_lr, **optimizer_options))

    train_step = make_train_step(loss_fn, has_aux=has_aux)

    @jax.jit
    def step(state, batch, lr):
        return train_step(state.replace(opt_state=_set_learning_rate(state.opt_state, lr)), batch)

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


# -------------------------------------------------------------- loss landscape


@dataclasses.dataclass(frozen=True)
class LossLandscape:
    """Loss values on a grid around trained parameters.

    Attributes:
      alphas: (num,) step sizes along the first direction.
      betas: (num,) step sizes along the second direction, or None (1-D).
      losses: (num,) for 1-D; (num, num) for 2-D with ``losses[i, j]`` the loss
        at ``params + alphas[i] * d1 + betas[j] * d2``.
      directions: the filter-normalised direction pytrees (one or two).
      center_loss: the loss at the parameters themselves.
    """

    alphas: np.ndarray
    betas: np.ndarray | None
    losses: np.ndarray
    directions: tuple
    center_loss: float

    def plot(self, ax=None, **kwargs):
        """Plot the landscape (see :func:`plot_landscape`); returns the Axes."""
        return plot_landscape(self, ax, **kwargs)


def _numpy_rng(key):
    """A NumPy Generator from an int seed or a JAX PRNG key (host-side: nothing to compile)."""
    if key is None:
        return np.random.default_rng(0)
    if isinstance(key, (int, np.integer)):
        return np.random.default_rng(int(key))
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.random.default_rng(np.asarray(data, dtype=np.uint32).ravel().tolist())


def filter_normalized_direction(key, params, *, filter_axis=-1, ignore_bias=True):
    """A random direction with the shapes of ``params``, filter-normalised (Li et al. 2018).

    Each leaf of two or more dimensions gets Gaussian noise whose every
    filter (the slice at one index of ``filter_axis``: an output unit of a
    Dense kernel ``(in, out)`` or a Conv kernel ``(h, w, in, out)``) is rescaled
    to the norm of the same filter of the parameters. Leaves of 0 or 1
    dimensions (biases, norm scales) get a zero direction with ``ignore_bias``,
    else noise scaled to the leaf's norm.

    ``key`` is an int seed or a JAX PRNG key; the noise is drawn on the host
    with NumPy (no random-number kernel to compile).
    """
    rng = _numpy_rng(key)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    out = []
    for p in leaves:
        p = np.asarray(p)
        d = rng.standard_normal(p.shape).astype(p.dtype)
        if p.ndim <= 1:
            if ignore_bias:
                d = np.zeros_like(p)
            else:
                d = d / (np.linalg.norm(d) + 1e-10) * np.linalg.norm(p)
        else:
            axis = filter_axis % p.ndim
            others = tuple(a for a in range(p.ndim) if a != axis)
            d_norm = np.sqrt(np.sum(d * d, axis=others, keepdims=True))
            p_norm = np.sqrt(np.sum(p * p, axis=others, keepdims=True))
            d = d / (d_norm + 1e-10) * p_norm
        out.append(jnp.asarray(d))
    return jax.tree_util.tree_unflatten(treedef, out)


def _loss_at(loss_fn, has_aux, params, batch, coords, directions):
    moved = params
    for c, d in zip(coords, directions, strict=True):
        moved = jax.tree.map(lambda p, v, c=c: p + c.astype(p.dtype) * v, moved, d)
    out = loss_fn(moved, batch)
    return out[0] if has_aux else out


@functools.partial(jax.jit, static_argnames=("loss_fn", "has_aux", "batch_size"))
def _landscape_values(params, batch, directions, coords, *, loss_fn, has_aux, batch_size):
    """Losses at every grid point (one compilation per loss_fn and shapes) and at the centre."""
    values = jax.lax.map(lambda c: _loss_at(loss_fn, has_aux, params, batch, c, directions), coords,
                         batch_size=batch_size)
    center = _loss_at(loss_fn, has_aux, params, batch, jnp.zeros(coords.shape[-1:], coords.dtype), directions)
    return values, center


def loss_landscape(loss_fn, params, batch, *, key=None, dims=1, span=1.0, num=21, filter_axis=-1,
                   ignore_bias=True, has_aux=False, batch_size=None):
    """The loss along one or two filter-normalised random directions around ``params``.

    Evaluates ``loss_fn(params + a d1 [+ b d2], batch)`` for ``a`` (and ``b``) on
    ``linspace(-span, span, num)``. With filter normalisation the directions
    have the scale of the weights, so landscapes of different networks (or of
    one network trained two ways) can be compared (Li et al. 2018).

    Args:
      loss_fn: ``loss_fn(params, batch) -> loss`` (``(loss, aux)`` with ``has_aux``).
      params: the trained parameters (a pytree), or a :class:`jloss.TrainState`.
      batch: the data the loss is evaluated on (a pytree of arrays).
      key: an int seed or a JAX PRNG key for the directions (default 0); drawn with NumPy.
      dims: 1 (a curve) or 2 (a surface).
      span, num: the grid ``linspace(-span, span, num)`` along each direction.
      filter_axis, ignore_bias: see :func:`filter_normalized_direction`.
      batch_size: grid points evaluated at once (``jax.lax.map`` batches; None: one at a time,
        the quickest to compile).

    Returns:
      A ``LossLandscape`` ``(alphas, betas, losses, directions, center_loss)``.

    Raises:
      ValueError: ``dims`` not 1 or 2, or a bad grid.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> def loss_fn(params, batch):
      ...     return jloss.mse(batch["x"] @ params["w"], batch["y"])
      >>> batch = {"x": jnp.array([[1.0, 1.0], [1.0, 2.0]]), "y": jnp.array([[1.0], [2.0]])}
      >>> landscape = jloss.loss_landscape(loss_fn, {"w": jnp.zeros((2, 1))}, batch, num=5)
      >>> landscape.losses.shape, round(float(landscape.center_loss), 4)
      ((5,), 2.5)

    References:
      Li, H. et al. (2018). Visualizing the Loss Landscape of Neural Nets. NeurIPS.
    """
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims!r}")
    if num < 2:
        raise ValueError(f"num must be >= 2, got {num}")
    if span <= 0:
        raise ValueError(f"span must be > 0, got {span}")
    if isinstance(params, TrainState):
        params = params.params

    grid = np.linspace(-span, span, num, dtype=np.float32)
    if dims == 1:
        coords = grid[:, None]
    else:
        a, b = np.meshgrid(grid, grid, indexing="ij")
        coords = np.stack([a.ravel(), b.ravel()], axis=-1)

    rng = _numpy_rng(key)
    directions = tuple(filter_normalized_direction(int(rng.integers(2**31)), params, filter_axis=filter_axis,
                                                   ignore_bias=ignore_bias) for _ in range(dims))
    values, center = _landscape_values(params, batch, directions, jnp.asarray(coords), loss_fn=loss_fn,
                                       has_aux=has_aux, batch_size=batch_size)
    losses = np.asarray(values, dtype=np.float64).reshape((num,) * dims)
    center = float(center)
    return LossLandscape(grid, grid if dims == 2 else None, losses, directions, center)


# ------------------------------------------------------------------- plotting


def _axes(ax):
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError('plotting needs matplotlib: pip install "jloss[plot]"') from e
    _, ax = plt.subplots()
    return ax


def _as_curves(curves):
    """``{name: curve}``: a History stays one, anything else becomes a float64 array."""
    def convert(v):
        return v if isinstance(v, History) else np.asarray(v, dtype=np.float64)

    if isinstance(curves, Mapping):
        return {str(k): convert(v) for k, v in curves.items()}
    return {"": convert(curves)}


def _history_curves(history, name):
    """A History's per-step loss ``(steps, losses)`` and its ``val_loss`` at each epoch's last step.

    The second is ``(steps, val_losses)``, or None when no epoch recorded ``val_loss``.
    """
    records = [r for r in history.steps if "loss" in r]
    if not records:
        raise ValueError(f"History {name!r} has no per-step loss to plot" if name else
                         "the History has no per-step loss to plot")
    train = (np.array([r["step"] for r in records], np.float64),
             np.array([r["loss"] for r in records], np.float64))
    epochs = [r for r in history.epochs if "val_loss" in r]
    val = (np.array([r["step"] for r in epochs], np.float64),
           np.array([r["val_loss"] for r in epochs], np.float64)) if epochs else None
    return train, val


def _ema(y, smooth):
    if not smooth:
        return y
    out, avg = np.empty_like(y), 0.0
    for i, v in enumerate(y):
        avg = smooth * avg + (1 - smooth) * v
        out[i] = avg / (1 - smooth ** (i + 1))
    return out


def plot_loss_curves(curves, ax=None, *, log_y=True, smooth=0.0, xlabel="step", ylabel="loss",
                     title=None, band=True):
    """Plot loss curves against the step.

    Args:
      curves: one curve (a 1-D sequence), a :class:`jloss.History` from
        :func:`jloss.fit`, or a mapping ``name -> curve or History``. A 2-D
        curve ``(runs, steps)`` is drawn as its mean with a min-max band. A
        History is drawn as its per-step loss against its recorded step
        count, and, when it has one, the per-epoch ``val_loss`` as markers at
        each epoch's last step (labelled ``loss`` and ``val_loss``, prefixed
        with the name in a mapping).
      ax: matplotlib Axes to draw on (default: a new figure's).
      log_y: log scale on the loss axis (only when every value is positive).
      smooth: EMA factor in [0, 1) applied before plotting (0: raw); not to ``val_loss``.
      band: draw the min-max band of 2-D curves.

    Returns: the Axes.
    """
    ax = _axes(ax)
    data = _as_curves(curves)
    positive = True
    for name, y in data.items():
        if isinstance(y, History):
            (steps, y), val = _history_curves(y, name)
            y = _ema(np.where(np.isfinite(y), y, np.nan), smooth)
            (line,) = ax.plot(steps, y, label=name or "loss")
            values = [y]
            if val is not None:
                ax.plot(*val, "o--", color=line.get_color(), label=f"{name} val_loss" if name else "val_loss")
                values.append(val[1])
            finite = np.concatenate(values)
            finite = finite[np.isfinite(finite)]
            positive = positive and finite.size > 0 and bool(np.all(finite > 0))
            continue
        if y.ndim == 1:
            y = y[None]
        if y.ndim != 2:
            raise ValueError(f"curve {name!r} must be 1-D (steps,) or 2-D (runs, steps), got shape {y.shape}")
        y = np.where(np.isfinite(y), y, np.nan)  # diverged runs end where they stop being finite
        y = np.stack([_ema(r, smooth) for r in y])
        steps = np.arange(1, y.shape[1] + 1)
        with warnings.catch_warnings():  # all-NaN columns (every run diverged) are expected
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(y, axis=0) if y.shape[0] > 1 else y[0]
            low, high = np.nanmin(y, axis=0), np.nanmax(y, axis=0)
        (line,) = ax.plot(steps, mean, label=name or None)
        if band and y.shape[0] > 1:
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        finite = y[np.isfinite(y)]
        positive = positive and finite.size > 0 and bool(np.all(finite > 0))
    if log_y and positive:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if any(data) or any(isinstance(y, History) for y in data.values()):
        ax.legend(fontsize="small")
    return ax


def plot_lr_finder(result, ax=None, *, title="LR range test"):
    """Plot an :class:`LRFinderResult`: loss against learning rate (log x), with the suggestion."""
    ax = _axes(ax)
    ax.plot(result.lrs, result.losses, color="0.75", linewidth=0.8, label="loss")
    ax.plot(result.lrs, result.smoothed, label="smoothed")
    ax.axvline(result.suggested_lr, color="C3", linestyle="--",
               label=f"suggested {result.suggested_lr:.2g} ({result.method})")
    ax.set_xscale("log")
    finite = result.smoothed[np.isfinite(result.smoothed)]
    if finite.size:
        low, high = float(np.min(finite)), float(finite[0])
        ax.set_ylim(low - 0.1 * abs(high - low) - 1e-6, max(high, low) + 0.5 * abs(high - low) + 1e-6)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    return ax


def plot_landscape(landscape, ax=None, *, title=None, levels=20, log=False, label=None):
    """Plot a :class:`LossLandscape`: a curve (1-D) or filled contours (2-D)."""
    ax = _axes(ax)
    z = np.log10(np.maximum(landscape.losses, 1e-12)) if log else landscape.losses
    zlabel = "log10 loss" if log else "loss"
    if landscape.betas is None:
        ax.plot(landscape.alphas, z, label=label)
        ax.set_xlabel("alpha (direction 1)")
        ax.set_ylabel(zlabel)
        if label:
            ax.legend(fontsize="small")
    else:
        cs = ax.contourf(landscape.alphas, landscape.betas, z.T, levels=levels, cmap="viridis")
        ax.contour(landscape.alphas, landscape.betas, z.T, levels=levels, colors="k", linewidths=0.3)
        ax.figure.colorbar(cs, ax=ax, label=zlabel)
        ax.plot([0], [0], "r+", markersize=10)
        ax.set_xlabel("alpha (direction 1)")
        ax.set_ylabel("beta (direction 2)")
    if title:
        ax.set_title(title)
    return ax

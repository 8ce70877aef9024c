"""Plots (matplotlib, the ``plot`` extra): training histories, loss curves, LR range tests, landscapes.

Every matplotlib function of jloss lives here. matplotlib is imported on the
first plot, not with jloss; each function draws on an optional ``Axes``
(default: a new figure's) and returns the Axes it drew on. The plots only read
their inputs' public attributes: a :class:`jloss.History` from :func:`jloss.fit`,
an :class:`jloss.train.lr_finder.LRFinderResult`, an :class:`jloss.analysis.LossLandscape`.
"""

import warnings
from collections.abc import Mapping

import numpy as np

from jloss.train.loop import History

__all__ = ["plot_history", "plot_landscape", "plot_loss_curves", "plot_lr_finder"]


def _axes(ax):
    """``ax``, or the Axes of a new pyplot figure (matplotlib imported here, on the first plot)."""
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install 'jloss[plot]'") from e
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


def plot_history(history, ax=None, metric="loss"):
    """Plot ``metric`` per step, its epoch mean and its ``val_`` counterpart against the step.

    Needs matplotlib (the ``plot`` extra), imported on first use. Draws on
    ``ax`` (default: a new figure's axes) and returns it. The best epoch by
    ``history.monitor`` is marked with a dotted vertical line.

    Args:
      history: a :class:`History` from :func:`fit`.
      ax: a matplotlib ``Axes``, or None for a new figure.
      metric: the metric to plot (``"loss"``, ``"accuracy"``, ...).

    Returns:
      The matplotlib ``Axes`` drawn on.

    Raises:
      ImportError: matplotlib is not installed (``pip install "jloss[plot]"``).

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> def loss_fn(params, batch):
      ...     return jloss.mse(batch["x"] @ params["w"], batch["y"])
      >>> batch = {"x": jnp.array([[1.0, 1.0], [1.0, 2.0]]), "y": jnp.array([1.0, 2.0])}
      >>> data = {"x": jnp.array([[1.0, 1.0], [1.0, 2.0], [2.0, 1.0], [0.0, 1.0]]),
      ...         "y": jnp.array([1.0, 2.0, 1.0, 1.0])}
      >>> state = jloss.TrainState.create(params={"w": jnp.zeros(2)}, tx=jloss.optimizer("sgd", 0.1))
      >>> state, history = jloss.fit(state, jloss.make_train_step(loss_fn), data, epochs=3,
      ...                            batch_size=2, progress=False)
      >>> import matplotlib
      >>> matplotlib.use("Agg")
      >>> jloss.plot_history(history).get_xlabel()
      'step'

    References:
      Keras ``History`` plots; matplotlib ``Axes.plot``.
    """
    ax = _axes(ax)
    steps = [r for r in history.steps if metric in r]
    if steps:
        ax.plot([r["step"] for r in steps], [r[metric] for r in steps], lw=0.8, alpha=0.4,
                label=f"{metric} (step)")
    for key, style in ((metric, "o-"), (f"val_{metric}", "s-")):
        epochs = [r for r in history.epochs if key in r]
        if epochs:
            label = f"{key} (epoch mean)" if key == metric else key
            ax.plot([r["step"] for r in epochs], [r[key] for r in epochs], style, ms=4, label=label)
    if history.best_epoch is not None:
        best = next(r for r in history.epochs if r["epoch"] == history.best_epoch)
        ax.axvline(best["step"], color="gray", ls=":", lw=1,
                   label=f"best {history.monitor} (epoch {history.best_epoch})")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return ax

"""Tool: loss landscapes (:func:`jloss.loss_landscape`) around digits MLPs, with and without smoothing."""

import dataclasses

import jax
import numpy as np

import jloss
from jloss.analysis import LossLandscape
from jloss.demo import runs
from jloss.demo.data import digits
from jloss.demo.model import mlp
from jloss.demo.result import FIGURE_ONLY, ClaimResult

SMOOTHING = (0.0, 0.1)


@dataclasses.dataclass(kw_only=True)
class LandscapeResult(ClaimResult):
    """Loss landscapes (Li et al. 2018).

    Attributes:
      center: per label smoothing the model was trained with, the test cross-entropy at its parameters.
      surface_min, surface_max: the extremes of the 2-D landscape (no smoothing).
      landscapes, surface: the 1-D landscapes per smoothing and the 2-D one, for the figure.
    """

    center: dict[float, float]
    surface_min: float
    surface_max: float
    landscapes: dict[float, LossLandscape] = dataclasses.field(repr=False, metadata=FIGURE_ONLY)
    surface: LossLandscape = dataclasses.field(repr=False, metadata=FIGURE_ONLY)

    def draw(self, axes):
        for s, landscape in self.landscapes.items():
            jloss.plot.plot_landscape(landscape, axes[0], label=f"label smoothing {s:g}")
        axes[0].set_title("1-D (test cross-entropy)")
        jloss.plot.plot_landscape(self.surface, axes[1], title="2-D, no smoothing (log10 test CE)", log=True)


def _edge(landscape):
    """The mean loss at the two ends of a 1-D landscape (``|alpha| = span``)."""
    return float(np.mean([landscape.losses[0], landscape.losses[-1]]))


def measure(cfg):
    """Train the digits MLP with each smoothing of ``SMOOTHING``; the test loss around each, 1-D and 2-D."""
    data = digits(dataclasses.replace(cfg, repeats=1), hidden=64)

    def loss_fn(params, batch):
        return jloss.sparse_categorical_cross_entropy(mlp(params, batch["x"]), batch["y"],
                                                      label_smoothing=batch["s"])

    bar = runs.progress_bar(cfg, "loss landscape", cfg.landscape_steps + 3)
    k = len(SMOOTHING)
    params, _, _ = runs.train(loss_fn, jloss.optimizer("adam", 1e-3), runs.tile(data["params"], k),
                              runs.tile({"x": data["x"], "y": data["y"]}, k), cfg.landscape_steps,
                              batch_size=cfg.batch_size, hparams={"s": np.array(SMOOTHING, np.float32)},
                              bar=bar, seed=cfg.seed)

    def eval_loss(params, batch):  # plain cross-entropy on the test set for both models
        return jloss.sparse_categorical_cross_entropy(mlp(params, batch["x"]), batch["y"])

    test = {"x": data["test"]["x"][0], "y": data["test"]["y"][0]}
    scapes = {}
    for i, s in enumerate(SMOOTHING):
        scapes[s] = jloss.loss_landscape(eval_loss, jax.tree.map(lambda a, i=i: a[i], params), test,
                                         key=cfg.seed, dims=1, span=1.0, num=2 * cfg.landscape_num - 1)
        bar.update(1)
    surface = jloss.loss_landscape(eval_loss, jax.tree.map(lambda a: a[0], params), test, key=cfg.seed,
                                   dims=2, span=1.0, num=cfg.landscape_num)
    bar.update(1)
    bar.close()
    rows = []
    for s, sc in scapes.items():
        mid = len(sc.alphas) // 2
        half = float(np.mean([sc.losses[mid // 2], sc.losses[mid + (len(sc.alphas) - mid) // 2]]))
        rows.append((f"{s:g}", f"{sc.center_loss:.3f}", f"{half:.3f}", f"{_edge(sc):.3f}"))
    return LandscapeResult(
        key="landscape", letter="",
        statement="Loss landscape along filter-normalised random directions (Li et al. 2018).",
        setup=f"digits MLP trained {cfg.landscape_steps} Adam steps; test cross-entropy along 1 direction "
              f"({2 * cfg.landscape_num - 1} points) and on a {cfg.landscape_num}x{cfg.landscape_num} grid "
              "of 2.",
        holds=None,
        summary=f"test loss at the minimum {scapes[0.0].center_loss:.3f} (no smoothing), "
                f"{scapes[0.1].center_loss:.3f} (smoothing 0.1); the table gives the loss 0.5 and 1 "
                "filter-norms away",
        short="test CE at the minimum / 1 filter-norm away: " + ", ".join(
            f"smoothing {s:g}: {sc.center_loss:.2f} / {_edge(sc):.2f}" for s, sc in scapes.items()),
        headers=["trained with smoothing", "test CE at params", "at |alpha| = 0.5", "at |alpha| = 1"],
        rows=rows,
        center={s: sc.center_loss for s, sc in scapes.items()}, surface_min=float(surface.losses.min()),
        surface_max=float(surface.losses.max()), landscapes=scapes, surface=surface)

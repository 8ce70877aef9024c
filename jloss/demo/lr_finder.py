"""Tool: the LR range test (:func:`jloss.lr_finder`) on the digits MLP."""

import dataclasses

import jax
import numpy as np

import jloss
from jloss.demo import runs
from jloss.demo.data import digits
from jloss.demo.model import mlp
from jloss.demo.result import FIGURE_ONLY, ClaimResult
from jloss.train.lr_finder import LRFinderResult


@dataclasses.dataclass(kw_only=True)
class LRFinderDemoResult(ClaimResult):
    """The LR range test.

    Attributes:
      suggested_lr, min_loss_lr, diverged: as in :class:`jloss.train.lr_finder.LRFinderResult`.
      steps: the steps the test took.
      result: the whole :class:`~jloss.train.lr_finder.LRFinderResult` (curves), for the figure.
    """

    columns = 1

    suggested_lr: float
    min_loss_lr: float
    diverged: bool
    steps: int
    result: LRFinderResult = dataclasses.field(repr=False, metadata=FIGURE_ONLY)

    def draw(self, axes):
        jloss.plot.plot_lr_finder(self.result, axes[0], title="LR range test: SGD, digits MLP")


def measure(cfg):
    """Run :func:`jloss.lr_finder` with SGD from 1e-4 to 100 on minibatches of digits."""
    data = digits(dataclasses.replace(cfg, repeats=1), hidden=64)
    x, y = data["x"][0], data["y"][0]
    params = jax.tree.map(lambda a: a[0], data["params"])
    idx = runs.batch_indices(np.random.default_rng(cfg.seed), len(x), cfg.batch_size, cfg.finder_steps)
    batches = [{"x": x[i], "y": y[i]} for i in idx]

    def loss_fn(params, batch):
        return jloss.sparse_categorical_cross_entropy(mlp(params, batch["x"]), batch["y"])

    bar = runs.progress_bar(cfg, "lr finder", 1)
    result = jloss.lr_finder(loss_fn, params, batches, min_lr=1e-4, max_lr=100.0, num_steps=cfg.finder_steps,
                             optimizer="sgd", smoothing=0.9)
    bar.update(1)
    bar.close()
    return LRFinderDemoResult(
        key="lr-finder", letter="",
        statement="LR range test (SGD, digits MLP): exponentially increasing rate, suggested rate.",
        setup=f"jloss.lr_finder from 1e-4 to 100 over {cfg.finder_steps} SGD steps, minibatch "
              f"{cfg.batch_size}, smoothing 0.9.",
        holds=None,
        summary=f"suggested lr {result.suggested_lr:.3g} ({result.method}); loss minimum at lr "
                f"{result.min_loss_lr:.3g}; "
                f"{'stopped at divergence' if result.diverged else 'did not diverge'} "
                f"after {len(result.lrs)} steps",
        short=f"suggested lr {result.suggested_lr:.2g} ({result.method}), min at {result.min_loss_lr:.2g}",
        headers=["suggested lr", "method", "lr at min loss", "diverged", "steps"],
        rows=[(f"{result.suggested_lr:.3g}", result.method, f"{result.min_loss_lr:.3g}", str(result.diverged),
               str(len(result.lrs)))],
        suggested_lr=result.suggested_lr, min_loss_lr=result.min_loss_lr, diverged=result.diverged,
        steps=len(result.lrs), result=result)

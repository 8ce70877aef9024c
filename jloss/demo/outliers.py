"""Claim (a): with 10% of regression targets corrupted by large outliers, MAE and Huber beat MSE."""

import dataclasses

import numpy as np

import jloss
from jloss.demo import runs
from jloss.demo.data import load, split, stack, standardize
from jloss.demo.model import init_mlp, mlp, predict
from jloss.demo.result import FIGURE_ONLY, ClaimResult

REFERENCE = "MSE (clean targets, reference)"
HUBER = "Huber (delta=1)"


@dataclasses.dataclass(kw_only=True)
class OutliersResult(ClaimResult):
    """Claim (a). Per loss (``REFERENCE``, ``"MSE"``, ``"MAE"``, ``HUBER``), over the splits.

    Attributes:
      rmse, mae: the mean clean-test RMSE and MAE, in the target's units.
      rmse_std: the standard deviation of the RMSE over the splits.
      curves: the training loss of every run, ``(splits, steps)`` per loss.
    """

    rmse: dict[str, float]
    mae: dict[str, float]
    rmse_std: dict[str, float]
    curves: dict[str, np.ndarray] = dataclasses.field(repr=False, metadata=FIGURE_ONLY)

    def draw(self, axes):
        jloss.plot.plot_loss_curves(self.curves, axes[0], title="training loss (each its own loss)")
        names = list(self.rmse)
        axes[1].bar(range(len(names)), [self.rmse[k] for k in names], yerr=[self.rmse_std[k] for k in names],
                    color=["C0", "C1", "C2", "C3"])
        axes[1].set_xticks(range(len(names)), ["MSE\n(clean)", "MSE", "MAE", "Huber"])
        axes[1].set_ylabel("clean test RMSE")
        axes[1].set_title("10% outliers in training targets")


def measure(cfg, fraction=0.10):
    """Train MSE, MAE and Huber on diabetes targets with ``fraction`` outliers; compare on clean targets."""
    x_all, y_all = load("diabetes")
    splits = []
    for r in range(cfg.small_repeats):
        rng = np.random.default_rng(cfg.seed + r)
        xtr, xte, ytr, yte = split(x_all, y_all, cfg.seed + r, 0.2, stratify=False)
        xtr, xte = standardize(xtr, xte)
        mu, sd = ytr.mean(), ytr.std()
        ytr_s = ((ytr - mu) / sd).astype(np.float32)
        bad = rng.choice(len(ytr_s), size=round(fraction * len(ytr_s)), replace=False)
        corrupt = ytr_s.copy()
        corrupt[bad] += (rng.choice([-1.0, 1.0], size=len(bad)) * rng.uniform(5, 10, size=len(bad))).astype(
            np.float32)
        splits.append({"x": xtr, "clean": ytr_s, "noisy": corrupt, "xte": xte, "yte": yte.astype(np.float32),
                       "mu": np.float32(mu), "sd": np.float32(sd),
                       "params": init_mlp(rng, (xtr.shape[1], 16, 1))})
    data = stack(splits)
    # (name, targets trained on, one-hot over (MSE, MAE, Huber))
    variants = [(REFERENCE, "clean", (1, 0, 0)), ("MSE", "noisy", (1, 0, 0)), ("MAE", "noisy", (0, 1, 0)),
                (HUBER, "noisy", (0, 0, 1))]
    k, rep = len(variants), cfg.small_repeats

    def loss_fn(params, batch):
        pred, y, c = mlp(params, batch["x"])[:, 0], batch["y"], batch["c"]
        return (c[0] * jloss.mean_squared_error(pred, y) + c[1] * jloss.mean_absolute_error(pred, y)
                + c[2] * jloss.huber(pred, y, delta=1.0))

    bar = runs.progress_bar(cfg, "(a) outliers", cfg.outlier_steps)
    train = {"x": runs.tile(data["x"], k), "y": np.concatenate([data[t] for _, t, _ in variants])}
    params, curves, _ = runs.train(loss_fn, jloss.optimizer("adam", 3e-3), runs.tile(data["params"], k),
                                   train, cfg.outlier_steps,
                                   hparams={"c": runs.per_variant([v[2] for v in variants], rep)},
                                   bar=bar, seed=cfg.seed)
    bar.close()
    pred = np.asarray(predict(params, runs.tile(data["xte"], k)))[..., 0]
    pred = pred * runs.tile(data["sd"], k)[:, None] + runs.tile(data["mu"], k)[:, None]
    err = pred - runs.tile(data["yte"], k)
    per_split = {name: err[runs.variant_runs(g, rep)] for g, (name, _, _) in enumerate(variants)}
    rmse_runs = {name: np.sqrt(np.mean(e**2, axis=1)) for name, e in per_split.items()}
    rmse = {name: float(v.mean()) for name, v in rmse_runs.items()}
    rmse_std = {name: float(v.std()) for name, v in rmse_runs.items()}
    mae = {name: float(np.mean(np.abs(e), axis=1).mean()) for name, e in per_split.items()}
    return OutliersResult(
        key="outliers", letter="a",
        statement="With 10% of regression targets corrupted by large outliers, MAE and Huber fit the clean "
                  "test set better than MSE.",
        setup=f"diabetes (442 patients, 10 features), {cfg.small_repeats} splits; 10% of the training "
              "targets get +-U(5, 10) standard deviations added; MLP 10-16-1, Adam 3e-3, "
              f"{cfg.outlier_steps} full-batch steps; errors in the target's units on the clean test set.",
        holds=rmse["MAE"] < rmse["MSE"] and rmse[HUBER] < rmse["MSE"],
        summary=f"clean-test RMSE: MSE {rmse['MSE']:.1f}, MAE {rmse['MAE']:.1f}, Huber {rmse[HUBER]:.1f} "
                f"(MSE on clean targets {rmse[REFERENCE]:.1f})",
        short=f"test RMSE: MSE {rmse['MSE']:.0f}, MAE {rmse['MAE']:.0f}, Huber {rmse[HUBER]:.0f} "
              f"(clean MSE {rmse[REFERENCE]:.0f})",
        headers=["loss (trained on)", "test RMSE", "+-", "test MAE"],
        rows=[(k_, f"{rmse[k_]:.1f}", f"{rmse_std[k_]:.1f}", f"{mae[k_]:.1f}") for k_ in rmse],
        rmse=rmse, mae=mae, rmse_std=rmse_std,
        curves={name: curves[runs.variant_runs(g, rep)] for g, (name, _, _) in enumerate(variants)})

"""Claim (d): on ~5% positives, focal loss or class-weighted BCE gives higher minority recall than BCE."""

import dataclasses

import jax
import numpy as np

import jloss
from jloss.demo import runs
from jloss.demo.data import load, split, stack, standardize
from jloss.demo.model import init_mlp, mlp, predict
from jloss.demo.result import FIGURE_ONLY, ClaimResult


@dataclasses.dataclass(kw_only=True)
class ImbalanceResult(ClaimResult):
    """Claim (d). Per loss variant (``"BCE"`` first), means over the splits of the test set:

    Attributes:
      recall, specificity: the recall of the minority (malignant) and of the majority class.
      recall_gain, recall_gain_se: the mean paired difference in recall against BCE, and its
        standard error.
      pos_weight: BCE's ``pos_weight`` (negatives / positives of the training set).
      train_positives, train_size: the subsampled training set.
      better_than_bce: the variants whose recall beats BCE's by more than two standard errors.
      recall_std, short_names: the spread of the recall over the splits; short names for the figure.
    """

    recall: dict[str, float]
    specificity: dict[str, float]
    recall_gain: dict[str, float]
    recall_gain_se: dict[str, float]
    pos_weight: float
    train_positives: int
    train_size: int
    better_than_bce: list[str]
    recall_std: dict[str, float] = dataclasses.field(repr=False, metadata=FIGURE_ONLY)
    short_names: dict[str, str] = dataclasses.field(repr=False, metadata=FIGURE_ONLY)

    def draw(self, axes):
        names = list(self.recall)
        labels = [self.short_names[n].replace(" ", "\n") for n in names]
        colors = ["C3", "C0", "C1", "C2", "C4"]
        axes[0].bar(range(len(names)), [self.recall[n] for n in names],
                    yerr=[self.recall_std[n] for n in names], color=colors)
        axes[0].set_title("minority-class recall")
        axes[0].set_ylabel("recall of the 5% class (test)")
        axes[1].bar(range(len(names)), [self.specificity[n] for n in names], color=colors)
        axes[1].set_title("majority-class recall")
        axes[1].set_ylabel("specificity (test)")
        for ax in axes:
            ax.set_xticks(range(len(names)), labels)
            ax.set_ylim(0, 1.05)


def _recall(predicted, actual):
    """``jloss.metrics.binary_recall`` of boolean predictions, one per run (leading axis)."""
    return np.asarray(jax.vmap(jloss.metrics.binary_recall)(predicted, actual), np.float64)


def measure(cfg, positive_fraction=0.05):
    """Train BCE, weighted BCE and focal variants on breast cancer subsampled to ``positive_fraction``."""
    x_all, y_all = load("breast_cancer")
    y_all = 1 - y_all  # malignant = 1, the minority class we subsample
    splits = []
    for r in range(cfg.small_repeats):
        rng = np.random.default_rng(cfg.seed + r)
        xtr, xte, ytr, yte = split(x_all, y_all, cfg.seed + r, 0.3)
        neg, pos = np.flatnonzero(ytr == 0), np.flatnonzero(ytr == 1)
        n_pos = round(positive_fraction / (1 - positive_fraction) * len(neg))
        keep = np.concatenate([neg, rng.choice(pos, size=n_pos, replace=False)])
        xtr, ytr = xtr[keep], ytr[keep]
        xtr, xte = standardize(xtr, xte)
        splits.append({"x": xtr, "y": ytr.astype(np.float32), "xte": xte, "yte": yte,
                       "params": init_mlp(rng, (30, 16, 1))})
    data = stack(splits)
    n_pos, n = int(data["y"][0].sum()), data["y"].shape[1]
    pos_weight = (n - n_pos) / n_pos
    rep = cfg.small_repeats

    def loss_fn(params, batch):
        z, y, c = mlp(params, batch["x"])[:, 0], batch["y"], batch["c"]
        return (c[0] * jloss.binary_cross_entropy(z, y, pos_weight=batch["w"])
                + c[1] * jloss.binary_focal_loss(z, y, gamma=2.0, alpha=batch["a"])
                + c[2] * jloss.binary_focal_loss(z, y, gamma=2.0, alpha=None))

    a_inv = 1 - positive_fraction
    # (name, short name, one-hot (BCE, focal, focal without alpha), pos_weight, focal alpha)
    variants = [
        ("BCE", "BCE", (1, 0, 0), 1.0, 0.25),
        (f"BCE, pos_weight={pos_weight:.0f} (negatives/positives)", "weighted BCE", (1, 0, 0), pos_weight,
         0.25),
        ("focal (gamma=2, alpha=0.25, torchvision default)", "focal a=0.25", (0, 1, 0), 1.0, 0.25),
        (f"focal (gamma=2, alpha={a_inv:.2f}, inverse frequency)", f"focal a={a_inv:.2f}", (0, 1, 0), 1.0,
         a_inv),
        ("focal (gamma=2, alpha=None)", "focal no alpha", (0, 0, 1), 1.0, 0.25),
    ]
    short = {v[0]: v[1] for v in variants}
    k = len(variants)
    bar = runs.progress_bar(cfg, "(d) imbalance", cfg.imbalance_steps)
    hp = {"c": runs.per_variant([v[2] for v in variants], rep),
          "w": runs.per_variant([v[3] for v in variants], rep),
          "a": runs.per_variant([v[4] for v in variants], rep)}
    params, _, _ = runs.train(loss_fn, jloss.optimizer("adam", 1e-3), runs.tile(data["params"], k),
                              runs.tile({"x": data["x"], "y": data["y"]}, k), cfg.imbalance_steps, hparams=hp,
                              bar=bar)
    bar.close()
    predicted = np.asarray(predict(params, runs.tile(data["xte"], k)))[..., 0] > 0  # logit 0: p = 0.5
    actual = runs.tile(data["yte"], k) == 1
    recall_runs = _recall(predicted, actual)
    # specificity is the recall of the negative class: recall of the flipped predictions and labels
    specificity_runs = _recall(~predicted, ~actual)
    by = {name: runs.variant_runs(g, rep) for g, (name, *_) in enumerate(variants)}
    recall = {name: float(recall_runs[sl].mean()) for name, sl in by.items()}
    specificity = {name: float(specificity_runs[sl].mean()) for name, sl in by.items()}
    # Each variant against BCE on the same splits: the mean paired difference in recall and its
    # standard error; "higher" means more than two standard errors above BCE.
    gain, se = {}, {}
    for name, sl in by.items():
        d = recall_runs[sl] - recall_runs[by["BCE"]]
        gain[name], se[name] = float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    better = [name for name in recall if name != "BCE" and gain[name] > 2 * se[name]]
    recall_std = {name: float(recall_runs[sl].std()) for name, sl in by.items()}
    return ImbalanceResult(
        key="imbalance", letter="d",
        statement=f"On imbalanced binary data (about {positive_fraction:.0%} positives), focal loss or "
                  "class-weighted BCE gives higher minority-class recall than plain BCE.",
        setup=f"breast cancer with malignant = positive, training set subsampled to {n_pos} positives of {n} "
              f"({n_pos / n:.1%}); test set ({data['yte'].shape[1]} patients) at the natural rate; "
              f"{cfg.small_repeats} splits; MLP 30-16-1, Adam 1e-3, {cfg.imbalance_steps} full-batch steps; "
              "threshold 0.5. Holds if a variant's recall beats BCE's by more than two standard errors of "
              "the paired difference.",
        holds=bool(better),
        summary="minority recall: " + ", ".join(f"{short[k_]} {v:.3f}" for k_, v in recall.items())
                + (f"; clearly higher than BCE: {', '.join(short[k_] for k_ in better)}" if better else
                   "; none clearly higher than BCE"),
        short="recall: " + ", ".join(f"{short[k_]} {recall[k_]:.2f}" for k_ in recall),
        headers=["loss", "recall (malignant)", "+-", "vs BCE (paired)", "specificity", "balanced acc"],
        rows=[(k_, f"{recall[k_]:.3f}", f"{recall_std[k_]:.3f}",
               "-" if k_ == "BCE" else f"{gain[k_]:+.3f} +- {se[k_]:.3f}", f"{specificity[k_]:.3f}",
               f"{(recall[k_] + specificity[k_]) / 2:.3f}") for k_ in recall],
        recall=recall, specificity=specificity, recall_gain=gain, recall_gain_se=se, pos_weight=pos_weight,
        train_positives=n_pos, train_size=n, better_than_bce=better, recall_std=recall_std, short_names=short)

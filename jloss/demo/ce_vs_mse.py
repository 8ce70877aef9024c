"""Claim (b): cross-entropy reaches a given accuracy in fewer steps than MSE on softmax outputs."""

import dataclasses

import jax
import numpy as np

import jloss
from jloss.demo import runs
from jloss.demo.data import digits
from jloss.demo.model import mlp
from jloss.demo.result import FIGURE_ONLY, ClaimResult

LOSSES = {"cross-entropy": (1, 0), "MSE on softmax": (0, 1)}  # one-hot over the two losses
# MSE averages over the 10 classes (as Keras and PyTorch do), so its gradient is 10x smaller than a
# sum's; the extra SGD run at 10x the rate separates that scale from the shape of the loss.
GROUPS = {"sgd": [("SGD lr=0.1", "cross-entropy", 0.1), ("SGD lr=0.1", "MSE on softmax", 0.1),
                  ("SGD lr=1.0", "MSE on softmax", 1.0)],
          "adam": [("Adam lr=1e-3", "cross-entropy", 1e-3), ("Adam lr=1e-3", "MSE on softmax", 1e-3)]}
COMPARED = ("SGD lr=0.1", "Adam lr=1e-3")  # the optimizers whose two losses are compared


@dataclasses.dataclass
class StepsToAccuracy:
    """How fast one optimizer / loss pair reached the accuracy threshold.

    Attributes:
      steps: per split, the first step at the threshold (None: not within the budget).
      median_steps: their median, counting "never" as budget + 1 (None: the median never got there).
      final_accuracy: the mean test accuracy after the last step.
    """

    steps: list
    median_steps: float | None
    final_accuracy: float


@dataclasses.dataclass(kw_only=True)
class CeVsMseResult(ClaimResult):
    """Claim (b).

    Attributes:
      steps: per ``"<optimizer> / <loss>"``, a :class:`StepsToAccuracy`.
      verdicts: per compared optimizer, ``"CE faster"``, ``"MSE faster"`` or ``"tie (within 10%)"``.
      threshold: the test accuracy to reach.
      curves: the test accuracy after every step, ``(splits, steps)`` per ``(optimizer, loss)``.
    """

    steps: dict[str, StepsToAccuracy]
    verdicts: dict[str, str]
    threshold: float = dataclasses.field(repr=False, metadata=FIGURE_ONLY)
    curves: dict[tuple, np.ndarray] = dataclasses.field(repr=False, metadata=FIGURE_ONLY)

    @property
    def verdict(self):
        if self.holds:
            return super().verdict
        return "PARTLY: " + ", ".join(f"{o.split()[0]}: {v}" for o, v in self.verdicts.items())

    def draw(self, axes):
        for ax, opt in zip(axes, ("SGD", "Adam"), strict=True):
            jloss.plot.plot_loss_curves({f"{ln}, {o}": v for (o, ln), v in self.curves.items()
                                         if o.startswith(opt)}, ax, log_y=False, ylabel="test accuracy",
                                        title=f"digits, {opt}")
            ax.axhline(self.threshold, color="0.5", linestyle=":", linewidth=1)
            ax.set_ylim(0, 1)


def measure(cfg, threshold=0.9):
    """Train cross-entropy and MSE on softmax with SGD and Adam on digits; count steps to ``threshold``."""
    data = digits(cfg, hidden=64)
    rep, budget = cfg.repeats, cfg.classify_steps

    def loss_fn(params, batch):
        logits, c = mlp(params, batch["x"]), batch["c"]
        ce = jloss.sparse_categorical_cross_entropy(logits, batch["y"])
        mse = jloss.mean_squared_error(jax.nn.softmax(logits), jax.nn.one_hot(batch["y"], 10))
        return c[0] * ce + c[1] * mse

    def accuracy(params, test):
        return jloss.metrics.accuracy(mlp(params, test["x"]), test["y"])  # argmax of the logits

    bar = runs.progress_bar(cfg, "(b) CE vs MSE", len(GROUPS) * budget)
    rows, numbers, curves = [], {}, {}
    for opt, group in GROUPS.items():
        k = len(group)
        _, _, scores = runs.train(loss_fn, jloss.optimizer(opt, group[0][2]), runs.tile(data["params"], k),
                                  runs.tile({"x": data["x"], "y": data["y"]}, k), budget,
                                  batch_size=cfg.batch_size,
                                  hparams={"c": runs.per_variant([LOSSES[v[1]] for v in group], rep)},
                                  lrs=runs.per_variant([v[2] for v in group], rep), evaluate=accuracy,
                                  test=runs.tile(data["test"], k), bar=bar, seed=cfg.seed)
        for g, (opt_name, loss_name, _) in enumerate(group):
            sc = scores[runs.variant_runs(g, rep)]
            steps = [runs.first_step_at(s, threshold) for s in sc]
            med = runs.median_steps(steps, budget)
            numbers[f"{opt_name} / {loss_name}"] = StepsToAccuracy(steps, med, float(sc[:, -1].mean()))
            curves[(opt_name, loss_name)] = sc
            rows.append((opt_name, loss_name, runs.steps_label(med and round(med), budget),
                         ", ".join(runs.steps_label(s, budget) for s in steps), f"{sc[:, -1].mean():.3f}"))
    bar.close()

    def compare(opt):
        ce_steps, mse_steps = (numbers[f"{opt} / {ln}"].median_steps for ln in LOSSES)
        ce_steps, mse_steps = (budget + 1 if v is None else v for v in (ce_steps, mse_steps))
        if ce_steps <= 0.9 * mse_steps:
            return "CE faster"
        return "MSE faster" if mse_steps <= 0.9 * ce_steps else "tie (within 10%)"

    def label(opt, loss):
        return runs.steps_label(numbers[f"{opt} / {loss}"].median_steps, budget)

    verdicts = {o: compare(o) for o in COMPARED}
    summary = "; ".join(f"{o}: CE {label(o, 'cross-entropy')} vs MSE {label(o, 'MSE on softmax')} steps "
                        f"({verdicts[o]})" for o in verdicts)
    return CeVsMseResult(
        key="ce-vs-mse", letter="b",
        statement=f"For classification, cross-entropy reaches {threshold:.0%} test accuracy in fewer steps "
                  "than MSE on softmax outputs.",
        setup=f"digits (1797 8x8 images, 10 classes), {cfg.repeats} splits; MLP 64-64-10, minibatch "
              f"{cfg.batch_size}, {budget} steps, same optimizer and rate for both losses; "
              "MSE = mean over classes of (softmax - one_hot)^2; 'CE faster' needs at most 90% of MSE's "
              "steps; the claim holds if CE is faster with both optimizers.",
        holds=all(v == "CE faster" for v in verdicts.values()),
        summary=summary + f"; MSE with SGD lr=1.0: {label('SGD lr=1.0', 'MSE on softmax')} steps",
        short="steps to 90%: " + "; ".join(
            f"{o.split()[0]} CE {label(o, 'cross-entropy')} vs MSE {label(o, 'MSE on softmax')}"
            for o in verdicts),
        headers=["optimizer", "loss", f"steps to {threshold:.0%} (median)", "per seed", "final test acc"],
        rows=rows, steps=numbers, verdicts=verdicts, threshold=threshold, curves=curves)

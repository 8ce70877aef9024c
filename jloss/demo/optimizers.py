"""Claim (e): too high a learning rate diverges, too low crawls; SGD vs momentum vs Adam vs RMSprop."""

import dataclasses
import math

import jax
import numpy as np

import jloss
from jloss.demo import runs
from jloss.demo.data import digits
from jloss.demo.model import mlp
from jloss.demo.result import FIGURE_ONLY, ClaimResult

LEARNING_RATES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
OPTIMIZERS = (("sgd", 0.1, {}), ("momentum", 0.1, {"momentum": 0.9}), ("adam", 1e-3, {}),
              ("rmsprop", 1e-3, {}))  # plain SGD at 0.1 is a run of the learning-rate sweep


@dataclasses.dataclass
class LearningRateRun:
    """SGD at one learning rate, means over the splits.

    Attributes:
      initial_loss, final_loss: the loss on the whole training set before and after training (inf when
        a split diverged).
      test_accuracy: after the last step.
      verdict: ``"diverged"`` (final loss not finite or above the initial), ``"crawled"`` (less than 10%
        below it) or ``"learned"``.
    """

    initial_loss: float
    final_loss: float
    test_accuracy: float
    verdict: str


@dataclasses.dataclass
class OptimizerRun:
    """One optimizer at its customary rate, means over the splits.

    Attributes:
      final_loss: the loss on the whole training set after training.
      test_accuracy: after the last step.
      steps_to_threshold: the median first step at the test-accuracy threshold (None: not reached).
    """

    final_loss: float
    test_accuracy: float
    steps_to_threshold: float | None


@dataclasses.dataclass(kw_only=True)
class OptimizersResult(ClaimResult):
    """Claim (e).

    Attributes:
      learning_rates: per SGD learning rate, a :class:`LearningRateRun`.
      optimizers: per optimizer label, an :class:`OptimizerRun`.
      ranking: the optimizer labels from the lowest final loss up.
      lr_curves, opt_curves, initial_loss: the training loss of every run for the figure.
    """

    learning_rates: dict[float, LearningRateRun]
    optimizers: dict[str, OptimizerRun]
    ranking: list[str]
    lr_curves: dict[str, np.ndarray] = dataclasses.field(repr=False, metadata=FIGURE_ONLY)
    opt_curves: dict[str, np.ndarray] = dataclasses.field(repr=False, metadata=FIGURE_ONLY)
    initial_loss: float = dataclasses.field(repr=False, metadata=FIGURE_ONLY)

    def draw(self, axes):
        jloss.plot.plot_loss_curves(self.lr_curves, axes[0], title="SGD: learning-rate sweep", smooth=0.9)
        sweep = np.concatenate(list(self.lr_curves.values()))
        finite = sweep[np.isfinite(sweep) & (sweep > 0)]
        axes[0].set_ylim(0.5 * finite.min(), 10 * self.initial_loss)  # diverging runs leave the top
        jloss.plot.plot_loss_curves(self.opt_curves, axes[1], title="optimizers (digits MLP)", smooth=0.9)


def _mean_or_inf(values):
    return float(np.mean(values)) if np.all(np.isfinite(values)) else math.inf


def _lr_verdict(final, initial):
    if not math.isfinite(final) or final > initial:
        return "diverged"
    if final > 0.9 * initial:
        return "crawled"
    return "learned"


def _fmt_loss(v):
    if not math.isfinite(v):
        return "nan/inf"
    return f"{v:.3g}" if v < 1e4 else f"{v:.2e}"


def measure(cfg, threshold=0.9):
    """Sweep SGD's learning rate on the digits MLP, then compare four optimizers at customary rates."""
    data = digits(cfg, hidden=64)

    def loss_fn(params, batch):
        return jloss.sparse_categorical_cross_entropy(mlp(params, batch["x"]), batch["y"])

    def accuracy(params, test):
        return jloss.metrics.accuracy(mlp(params, test["x"]), test["y"])  # argmax of the logits

    k, steps, rep = len(LEARNING_RATES), cfg.optimizer_steps, cfg.repeats
    train = {"x": data["x"], "y": data["y"]}
    full_loss = jax.jit(jax.vmap(loss_fn))  # on the whole training set, free of minibatch noise
    initial = float(np.asarray(full_loss(data["params"], train), np.float64).mean())
    bar = runs.progress_bar(cfg, "(e) learning rates, optimizers", len(OPTIMIZERS) * steps)
    # The sweep: every rate x every split in one program; the rate is set per run in the optimizer state.
    sweep_params, sweep, sweep_acc = runs.train(
        loss_fn, jloss.optimizer("sgd", 0.1), runs.tile(data["params"], k), runs.tile(train, k), steps,
        batch_size=cfg.batch_size, lrs=runs.per_variant(LEARNING_RATES, rep), evaluate=accuracy,
        test=runs.tile(data["test"], k), bar=bar, seed=cfg.seed)
    finals = np.asarray(full_loss(sweep_params, runs.tile(train, k)), np.float64)
    lr_rows, lr_stats, lr_curves = [], {}, {}
    for i, lr in enumerate(LEARNING_RATES):
        sl = runs.variant_runs(i, rep)
        final = _mean_or_inf(finals[sl])
        run = LearningRateRun(initial, final, float(sweep_acc[sl, -1].mean()), _lr_verdict(final, initial))
        lr_stats[lr] = run
        lr_curves[f"lr={lr:g}" + ("" if run.verdict == "learned" else f" ({run.verdict})")] = sweep[sl]
        lr_rows.append((f"{lr:g}", _fmt_loss(initial), _fmt_loss(final), f"{run.test_accuracy:.3f}",
                        run.verdict))
    opt_rows, opt_stats, opt_curves = [], {}, {}
    for name, lr, options in OPTIMIZERS:
        if name == "sgd" and not options and lr in LEARNING_RATES:
            sl = runs.variant_runs(LEARNING_RATES.index(lr), rep)
            curve, scores, final = sweep[sl], sweep_acc[sl], _mean_or_inf(finals[sl])
        else:
            params, curve, scores = runs.train(loss_fn, jloss.optimizer(name, lr, **options), data["params"],
                                               train, steps, batch_size=cfg.batch_size, evaluate=accuracy,
                                               test=data["test"], bar=bar, seed=cfg.seed)
            final = _mean_or_inf(np.asarray(full_loss(params, train), np.float64))
        med = runs.median_steps([runs.first_step_at(s, threshold) for s in scores], steps)
        label = f"{name} lr={lr:g}" + (f" (beta {options['momentum']})" if "momentum" in options else "")
        opt_stats[label] = OptimizerRun(final, float(scores[:, -1].mean()), med)
        opt_curves[label] = curve
        opt_rows.append((label, _fmt_loss(final), f"{scores[:, -1].mean():.3f}",
                         runs.steps_label(med and round(med), steps)))
    bar.close()
    highest, lowest = lr_stats[LEARNING_RATES[-1]], lr_stats[LEARNING_RATES[0]]
    ranking = sorted(opt_stats, key=lambda k_: opt_stats[k_].final_loss)
    return OptimizersResult(
        key="optimizers", letter="e",
        statement="A learning rate too high diverges and one too low crawls (SGD); SGD vs momentum vs Adam "
                  "vs RMSprop on the same model.",
        setup=f"digits, MLP 64-64-10, cross-entropy, minibatch {cfg.batch_size}, {steps} steps, "
              f"{cfg.repeats} splits; losses on the whole training set. 'diverged': final loss not finite or "
              "above the initial loss; 'crawled': less than 10% below the initial loss after all steps. "
              "Optimizers at "
              "customary rates (SGD / momentum 0.1, Adam / RMSprop 1e-3).",
        holds=highest.verdict == "diverged" and lowest.verdict == "crawled",
        summary=f"SGD lr={LEARNING_RATES[-1]:g}: {highest.verdict} (loss {_fmt_loss(highest.final_loss)}), "
                f"lr={LEARNING_RATES[0]:g}: {lowest.verdict} (loss {_fmt_loss(lowest.final_loss)}); "
                f"lowest final loss: {ranking[0]}",
        short=f"SGD lr {LEARNING_RATES[-1]:g} {highest.verdict}, lr {LEARNING_RATES[0]:g} "
              f"{lowest.verdict}; lowest loss: {ranking[0].split(' (')[0]}",
        headers=["SGD learning rate", "initial loss", "final train loss", "test acc", "verdict"],
        rows=lr_rows,
        tables=[(["optimizer", "final train loss", "test acc", f"steps to {threshold:.0%} test acc"],
                 opt_rows)],
        learning_rates=lr_stats, optimizers=opt_stats, ranking=ranking, lr_curves=lr_curves,
        opt_curves=opt_curves, initial_loss=initial)

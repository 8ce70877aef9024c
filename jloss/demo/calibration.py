"""Claim (f): label smoothing lowers the expected calibration error."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

import jloss
from jloss.demo import runs
from jloss.demo.data import digits
from jloss.demo.model import mlp, predict
from jloss.demo.result import FIGURE_ONLY, ClaimResult

SMOOTHING = (0.0, 0.05, 0.1, 0.2)
ECE_BINS = 15  # equal-width confidence bins of the expected calibration error


@dataclasses.dataclass
class SmoothingStats:
    """The test-set calibration of the models trained with one label smoothing, over the splits.

    Attributes:
      ece, ece_std: the mean expected calibration error and its standard deviation.
      accuracy, confidence, nll: the mean accuracy, top-class probability and negative log-likelihood.
    """

    ece: float
    ece_std: float
    accuracy: float
    confidence: float
    nll: float


@dataclasses.dataclass(kw_only=True)
class CalibrationResult(ClaimResult):
    """Claim (f).

    Attributes:
      by_smoothing: per label smoothing (``SMOOTHING``), a :class:`SmoothingStats`.
      reliability: per smoothing, the accuracy in each of 10 confidence bins (first split; NaN where
        empty), and ``curves``, the training loss of every run, for the figure.
    """

    by_smoothing: dict[float, SmoothingStats]
    reliability: dict[float, np.ndarray] = dataclasses.field(repr=False, metadata=FIGURE_ONLY)
    curves: dict[str, np.ndarray] = dataclasses.field(repr=False, metadata=FIGURE_ONLY)

    def draw(self, axes):
        edges = np.linspace(0.0, 1.0, 11)
        centers = (edges[:-1] + edges[1:]) / 2
        for s, acc in self.reliability.items():
            axes[0].plot(centers, acc, "o-", label=f"smoothing {s:g} (ECE {self.by_smoothing[s].ece:.3f})")
        axes[0].plot([0, 1], [0, 1], color="0.5", linestyle=":")
        axes[0].set_xlabel("confidence")
        axes[0].set_ylabel("accuracy")
        axes[0].set_title("reliability (test, first split)")
        axes[0].legend(fontsize="small")
        jloss.plot.plot_loss_curves(self.curves, axes[1], smooth=0.95, title="training loss")


@functools.partial(jax.jit, static_argnames="bins")
def _bin_counts(probs, labels, bins):
    """Number of examples and of correct ones in each confidence bin (one compiled program)."""
    _, correct, in_bin = jloss.metrics.reliability_bins(probs, labels, from_logits=False, num_bins=bins)
    return jnp.sum(in_bin, axis=0), jnp.sum(in_bin * correct[:, None], axis=0)


def reliability(probs, labels, bins=10):
    """Bin centres and the accuracy of each equal-width confidence bin (NaN where empty).

    The bins are those of :func:`jloss.metrics.expected_calibration_error`
    (``(b / M, (b + 1) / M]``, the first also holding 0), from
    :func:`jloss.metrics.reliability_bins`: one binning for both.
    """
    count, hits = (np.asarray(a, np.float64) for a in _bin_counts(probs, labels, bins))
    acc = np.where(count > 0, hits / np.maximum(count, 1.0), np.nan)
    edges = np.linspace(0.0, 1.0, bins + 1)
    return (edges[:-1] + edges[1:]) / 2, acc


@jax.jit
def _ece_and_accuracy(logits, labels):
    """Expected calibration error (``ECE_BINS`` bins) and accuracy of each run (leading axis)."""
    def one(z, y):
        # the ECE takes probabilities
        ece = jloss.metrics.expected_calibration_error(z, y, num_bins=ECE_BINS)
        return ece, jloss.metrics.accuracy(z, y)  # argmax of the logits

    return jax.vmap(one)(logits, labels)


def measure(cfg):
    """Train the digits MLP with each label smoothing of ``SMOOTHING``; measure the test ECE."""
    data = digits(cfg, hidden=64)

    def loss_fn(params, batch):
        return jloss.sparse_categorical_cross_entropy(mlp(params, batch["x"]), batch["y"],
                                                      label_smoothing=batch["s"])

    k = len(SMOOTHING)
    bar = runs.progress_bar(cfg, "(f) calibration", cfg.calibration_steps)
    # the label smoothing is an argument of the loss, per run: one program for every value
    params, curves, _ = runs.train(loss_fn, jloss.optimizer("adam", 1e-3), runs.tile(data["params"], k),
                                   runs.tile({"x": data["x"], "y": data["y"]}, k), cfg.calibration_steps,
                                   batch_size=cfg.batch_size,
                                   hparams={"s": runs.per_variant(SMOOTHING, cfg.repeats)}, bar=bar,
                                   seed=cfg.seed)
    bar.close()
    logits = np.asarray(predict(params, runs.tile(data["test"]["x"], k)), np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    labels = runs.tile(data["test"]["y"], k)
    ece_runs, acc_runs = (np.asarray(a, np.float64)
                          for a in _ece_and_accuracy(logits.astype(np.float32), labels))
    stats, rows = {}, []
    for i, s in enumerate(SMOOTHING):
        sl = runs.variant_runs(i, cfg.repeats)
        picked = probs[sl][np.arange(cfg.repeats)[:, None], np.arange(labels.shape[1]), labels[sl]]
        nll = -np.mean(np.log(np.maximum(picked, 1e-300)), axis=1)
        stats[s] = SmoothingStats(ece=float(ece_runs[sl].mean()), ece_std=float(ece_runs[sl].std()),
                                  accuracy=float(acc_runs[sl].mean()),
                                  confidence=float(probs[sl].max(-1).mean()), nll=float(nll.mean()))
        rows.append((f"{s:g}", f"{stats[s].ece:.4f}", f"{stats[s].ece_std:.4f}", f"{stats[s].accuracy:.3f}",
                     f"{stats[s].confidence:.3f}", f"{stats[s].nll:.3f}"))
    plain, smoothed = stats[0.0], stats[0.1]
    gap, gap_s = plain.confidence - plain.accuracy, smoothed.confidence - smoothed.accuracy
    return CalibrationResult(
        key="calibration", letter="f", statement="Label smoothing lowers the expected calibration error.",
        setup=f"digits, MLP 64-64-10, Adam 1e-3, minibatch {cfg.batch_size}, {cfg.calibration_steps} steps "
              f"(about {cfg.calibration_steps * cfg.batch_size // data['x'].shape[1]} epochs), "
              f"{cfg.repeats} splits; ECE with {ECE_BINS} equal-width confidence bins on the test set; "
              "the claim is judged at smoothing 0.1.",
        holds=smoothed.ece < plain.ece,
        summary=f"test ECE: no smoothing {plain.ece:.4f}, smoothing 0.1 {smoothed.ece:.4f} "
                f"(accuracy {plain.accuracy:.3f} vs {smoothed.accuracy:.3f}, mean confidence "
                f"{plain.confidence:.3f} vs {smoothed.confidence:.3f}); mean confidence - accuracy: "
                f"{gap:+.3f} without smoothing, {gap_s:+.3f} with 0.1 "
                f"({'over' if gap_s > 0 else 'under'}confident)",
        short=f"test ECE {plain.ece:.3f} without smoothing, {smoothed.ece:.3f} with 0.1 "
              f"(confidence - accuracy {gap:+.3f} / {gap_s:+.3f})",
        headers=["label smoothing", "test ECE", "+-", "test acc", "mean confidence", "test NLL"], rows=rows,
        by_smoothing=stats,
        reliability={s: reliability(probs[i * cfg.repeats], labels[i * cfg.repeats])[1]
                     for i, s in enumerate(SMOOTHING)},
        curves={f"smoothing {s:g}": curves[runs.variant_runs(i, cfg.repeats)]
                for i, s in enumerate(SMOOTHING)})

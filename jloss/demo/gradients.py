"""Claim (c): confidently wrong, BCE with a sigmoid has a far larger gradient than MSE with a sigmoid."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jloss
from jloss.demo import runs
from jloss.demo.data import load, split, stack, standardize
from jloss.demo.model import init_mlp, mlp, predict
from jloss.demo.result import FIGURE_ONLY, ClaimResult

BCE_TABLE = {0.01: 4.61, 0.10: 2.30, 0.50: 0.69, 0.90: 0.11, 0.99: 0.01}  # the material's values
LOSSES = ("BCE + sigmoid", "MSE + sigmoid")


@dataclasses.dataclass(kw_only=True)
class GradientsResult(ClaimResult):
    """Claim (c). At p = each key of ``BCE_TABLE`` for a positive label (logit z = logit(p)):

    Attributes:
      bce, grad_bce: BCE with logits and dBCE/dz.
      mse, grad_mse: MSE of sigmoid(z) and dMSE/dz.
      table_matches: whether ``bce`` rounds to the material's table.
      ratio_at_p001: |dBCE/dz| / |dMSE/dz| at p = 0.01.
      data_grad_ratio: on breast cancer from a confidently wrong start, the mean ratio of the
        gradient norms (BCE over MSE).
      recovery_accuracy: per loss, the test accuracy after the SGD steps from that start.
      start_accuracy: the test accuracy of the confidently wrong start.
      median_p_true_at_start: the median probability of the true class at the start.
      wrong_steps: the SGD steps from the start.
    """

    bce: list[float]
    grad_bce: list[float]
    mse: list[float]
    grad_mse: list[float]
    table_matches: bool
    ratio_at_p001: float
    data_grad_ratio: float
    recovery_accuracy: dict[str, float]
    start_accuracy: float
    median_p_true_at_start: float
    wrong_steps: int = dataclasses.field(repr=False, metadata=FIGURE_ONLY)

    def draw(self, axes):
        p = np.linspace(0.005, 0.995, 200)
        axes[0].plot(p, np.abs(p - 1), label="BCE + sigmoid: |p - 1|")
        axes[0].plot(p, np.abs(2 * (p - 1) * p * (1 - p)), label="MSE + sigmoid: |2(p-1)p(1-p)|")
        axes[0].set_yscale("log")
        axes[0].set_xlabel("predicted p for a positive example")
        axes[0].set_ylabel("|dL/dlogit|")
        axes[0].set_title("gradient: confidently wrong on the left")
        axes[0].legend(fontsize="small")
        axes[1].bar([0, 1, 2], [self.start_accuracy, *self.recovery_accuracy.values()],
                    color=["0.6", "C0", "C1"])
        axes[1].set_xticks([0, 1, 2], ["start", "BCE", "MSE"])
        axes[1].set_ylabel("test accuracy")
        axes[1].set_title(f"after {self.wrong_steps} SGD steps from confidently wrong")


def _loss_table(probs):
    """Rows ``(BCE, dBCE/dz, MSE, dMSE/dz)`` at the logits of ``probs`` for a positive label (float64)."""
    logits = np.log(probs / (1 - probs)).astype(np.float32)

    def bce(z):
        return jloss.binary_cross_entropy(z, jnp.ones_like(z))  # takes logits

    def mse_sigmoid(z):
        return jloss.mean_squared_error(jax.nn.sigmoid(z), jnp.ones_like(z))

    @jax.jit
    def table(z):
        return jax.vmap(lambda z: jnp.stack([bce(z), jax.grad(bce)(z), mse_sigmoid(z),
                                             jax.grad(mse_sigmoid)(z)]))(z)

    return np.asarray(table(logits), np.float64)


def _binary_accuracy(logits, labels):
    """Whether each logit is on the side of its 0/1 label (a positive prediction: logit > 0)."""
    return (np.asarray(logits) > 0) == (np.asarray(labels) == 1)


def measure(cfg):
    """The gradients at the table's probabilities, then a confidently wrong logistic model (breast cancer)."""
    probs = np.array(list(BCE_TABLE), np.float32)
    vals = _loss_table(probs)
    rows = []
    for p, (b, gb, m, gm) in zip(probs, vals, strict=True):
        rows.append((f"{p:.2f}", f"{b:.2f}", f"{BCE_TABLE[round(float(p), 2)]:.2f}", f"{gb:+.4f}", f"{m:.4f}",
                     f"{gm:+.4f}", f"{abs(gb) / max(abs(gm), 1e-30):.1f}x"))
    table_ok = all(abs(round(b, 2) - BCE_TABLE[round(float(p), 2)]) < 1e-9
                   for p, b in zip(probs, vals[:, 0], strict=True))
    ratio_001 = abs(vals[0, 1]) / abs(vals[0, 3])

    # Real data: a logistic model on breast cancer, started confidently wrong.
    x_all, y_all = load("breast_cancer")
    splits = []
    for r in range(cfg.small_repeats):
        xtr, xte, ytr, yte = split(x_all, y_all, cfg.seed + r, 0.25)
        xtr, xte = standardize(xtr, xte)
        splits.append({"x": xtr, "y": (1 - ytr).astype(np.float32), "test": {"x": xte, "y": (1 - yte)},
                       "params": init_mlp(np.random.default_rng(cfg.seed + r), (30, 1))})
    data = stack(splits)
    rep = cfg.small_repeats

    def loss_fn(params, batch):
        z, y, c = mlp(params, batch["x"])[:, 0], batch["y"], batch["c"]
        return (c[0] * jloss.binary_cross_entropy(z, y)
                + c[1] * jloss.mean_squared_error(jax.nn.sigmoid(z), y))

    batch = {"x": data["x"], "y": data["y"]}
    bar = runs.progress_bar(cfg, "(c) gradients", 2 * cfg.wrong_steps)
    fitted, _, _ = runs.train(loss_fn, jloss.optimizer("adam", 1e-2), data["params"], batch, cfg.wrong_steps,
                              hparams={"c": runs.per_variant([(1, 0)], rep)}, bar=bar)
    # Flip the fitted model and scale it so that the mean |logit| on the training set is 5:
    # most examples then get p(true class) of about sigmoid(-5) = 0.007.
    z = np.asarray(predict(fitted, data["x"]))[..., 0]
    scale = 5.0 / np.abs(z).mean(axis=1)
    wrong = jax.tree.map(lambda a: -a * scale.reshape((-1,) + (1,) * (a.ndim - 1)).astype(np.float32), fitted)
    p_true = 1 / (1 + np.exp(np.abs(z) * scale[:, None]))
    mix = runs.per_variant([(1, 0), (0, 1)], rep)
    grads = jax.jit(jax.vmap(lambda p, b: optax.tree.norm(jax.grad(loss_fn)(p, b))))(
        runs.tile(wrong, 2), {**runs.tile(batch, 2), "c": mix})
    grads = np.asarray(grads).reshape(2, rep)
    data_ratio = float(np.mean(grads[0] / grads[1]))
    params, _, _ = runs.train(loss_fn, jloss.optimizer("sgd", 0.1), runs.tile(wrong, 2), runs.tile(batch, 2),
                              cfg.wrong_steps, hparams={"c": mix}, bar=bar)
    bar.close()
    correct = _binary_accuracy(np.asarray(predict(params, runs.tile(data["test"]["x"], 2)))[..., 0],
                               runs.tile(data["test"]["y"], 2))
    recovery = {name: float(correct[runs.variant_runs(g, rep)].mean()) for g, name in enumerate(LOSSES)}
    start_acc = float(_binary_accuracy(np.asarray(predict(wrong, data["test"]["x"]))[..., 0],
                                       data["test"]["y"]).mean())
    return GradientsResult(
        key="gradients", letter="c",
        statement="When confidently wrong, BCE with a sigmoid output gives a far (>= 10x) larger gradient "
                  "than MSE with a sigmoid; BCE at p = 0.01, 0.10, 0.50, 0.90, 0.99 for a positive label is "
                  "4.61, 2.30, 0.69, 0.11, 0.01.",
        setup="z = logit(p); MSE = (sigmoid(z) - 1)^2. Real data: logistic regression on breast cancer "
              f"(malignant = 1), {cfg.small_repeats} splits, fitted with BCE then negated and scaled to mean "
              f"|logit| 5 (median p(true class) {np.median(p_true):.4f}); then {cfg.wrong_steps} full-batch "
              "SGD steps at lr 0.1.",
        holds=bool(table_ok and ratio_001 >= 10 and data_ratio >= 10),
        summary=f"|dL/dz| at p=0.01: BCE {abs(vals[0, 1]):.3f} vs MSE {abs(vals[0, 3]):.4f} "
                f"({ratio_001:.0f}x); breast cancer, confidently wrong start: gradient norm "
                f"{data_ratio:.0f}x larger; test accuracy after {cfg.wrong_steps} SGD steps BCE "
                f"{recovery[LOSSES[0]]:.3f} vs MSE {recovery[LOSSES[1]]:.3f}",
        short=f"|grad| at p=0.01: {ratio_001:.0f}x; real data {data_ratio:.0f}x; acc after "
              f"{cfg.wrong_steps} steps {recovery[LOSSES[0]]:.2f} vs {recovery[LOSSES[1]]:.2f}",
        headers=["p (label 1)", "BCE", "expected", "dBCE/dz", "MSE", "dMSE/dz", "ratio"], rows=rows,
        tables=[(["start: logistic model on breast cancer", "gradient norm", "test accuracy after"],
                 [("start (confidently wrong)", "-", f"{start_acc:.3f}"),
                  (LOSSES[0], f"{grads[0].mean():.3f}", f"{recovery[LOSSES[0]]:.3f}"),
                  (LOSSES[1], f"{grads[1].mean():.4f}", f"{recovery[LOSSES[1]]:.3f}")])],
        bce=vals[:, 0].tolist(), grad_bce=vals[:, 1].tolist(), mse=vals[:, 2].tolist(),
        grad_mse=vals[:, 3].tolist(), table_matches=table_ok, ratio_at_p001=float(ratio_001),
        data_grad_ratio=data_ratio, recovery_accuracy=recovery, start_accuracy=start_acc,
        median_p_true_at_start=float(np.median(p_true)), wrong_steps=cfg.wrong_steps)

"""``jloss demo``: measure the claims of the learning material on real data.

Small models are trained on data sets bundled with scikit-learn (no
download): digits (10 classes), breast cancer (binary) and diabetes
(regression). Each claim is a function returning a result dict with the
measured numbers, a table and ``holds`` (True / False: the demo reports what
the data says, also when a claim does not hold). :func:`run` runs them all,
prints the tables and writes PNG plots.

Everything is pure JAX on top of :class:`jloss.TrainState`,
:func:`jloss.optimizer` and :func:`jloss.make_train_step`. To stay fast on a
2-core CPU, each experiment trains all its repeats (seeds, and hyperparameter
values such as the label smoothing or the learning rate) as one ``jax.vmap``-ed,
``lax.scan``-ned program, compiled once.

Metrics come from :mod:`jloss.metrics`. Training goes through :func:`_train`
rather than :func:`jloss.fit`, which trains one state: ``_train`` trains all the
runs of an experiment (seeds and settings) together in one compiled program.
"""

import dataclasses
import functools
import itertools
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jloss import metrics, viz
from jloss.losses import classification, regression
from jloss.recommend import guide_rows
from jloss.train.optim import optimizer
from jloss.train.state import TrainState
from jloss.train.step import make_train_step

# ----------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes of the experiments. ``quick`` is the small version used by the tests."""

    quick: bool = False
    seed: int = 0
    repeats: int = 3            # independent seeds (data split + init) per setting (digits)
    small_repeats: int = 10     # the same for the small data sets (diabetes, breast cancer)
    outlier_steps: int = 300
    classify_steps: int = 600   # ce-vs-mse
    wrong_steps: int = 300      # gradients: recovery from a confidently wrong start
    imbalance_steps: int = 1000
    optimizer_steps: int = 400
    calibration_steps: int = 2000
    finder_steps: int = 120
    landscape_steps: int = 600
    landscape_num: int = 25
    batch_size: int = 128
    progress: bool = True


def config(quick=False, seed=0, progress=True):
    """The full (``quick=False``) or quick configuration."""
    if quick:
        return Config(quick=True, seed=seed, repeats=2, small_repeats=4, outlier_steps=300,
                      classify_steps=200, wrong_steps=150, imbalance_steps=400, optimizer_steps=150,
                      calibration_steps=600, finder_steps=60, landscape_steps=200, landscape_num=11,
                      progress=progress)
    return Config(seed=seed, progress=progress)


# --------------------------------------------------------------------------- data


def _load(name):
    from sklearn import datasets

    loader = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer,
              "diabetes": datasets.load_diabetes}[name]
    data = loader()
    return np.asarray(data.data, np.float64), np.asarray(data.target)


def _standardize(train, test):
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 0, std, 1.0)
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def _split(x, y, seed, test_size, stratify=True):
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=test_size, random_state=seed,
                            stratify=y if stratify else None)


def _stack(trees):
    return jax.tree.map(lambda *xs: np.stack(xs), *trees)


# ------------------------------------------------------------------------- models


def _init_mlp(rng, sizes):
    """He-normal weights, zero biases (NumPy: nothing to compile)."""
    return [(rng.standard_normal((a, b)).astype(np.float32) * np.float32(math.sqrt(2.0 / a)),
             np.zeros((b,), np.float32)) for a, b in itertools.pairwise(sizes)]


def _mlp(params, x):
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return x @ w + b


# ------------------------------------------------------------------------ metrics

ECE_BINS = 15  # equal-width confidence bins of the expected calibration error


def _reliability(probs, labels, bins=10):
    """Bin centres and the accuracy of each equal-width confidence bin (NaN where empty).

    The bins are those of :func:`jloss.metrics.expected_calibration_error`
    (``(b / M, (b + 1) / M]``, the first also holding 0): one binning for both.
    """
    count, hits = (np.asarray(a, np.float64) for a in _bin_counts(probs, labels, bins))
    acc = np.where(count > 0, hits / np.maximum(count, 1.0), np.nan)
    edges = np.linspace(0.0, 1.0, bins + 1)
    return (edges[:-1] + edges[1:]) / 2, acc


@functools.partial(jax.jit, static_argnames="bins")
def _bin_counts(probs, labels, bins):
    """Number of examples and of correct ones in each confidence bin (one compiled program)."""
    _, correct, in_bin = metrics._calibration_bins(probs, labels, bins)
    return jnp.sum(in_bin, axis=0), jnp.sum(in_bin * correct[:, None], axis=0)


@jax.jit
def _ece_and_accuracy(probs, labels):
    """Expected calibration error (``ECE_BINS`` bins) and accuracy of each run (leading axis)."""
    def one(p, y):
        return metrics.expected_calibration_error(p, y, num_bins=ECE_BINS), metrics.accuracy(p, y)

    return jax.vmap(one)(probs, labels)


# ----------------------------------------------------------------------- training


def _batch_indices(rng, n, batch_size, steps):
    """(steps, batch_size) example indices: shuffled epochs, concatenated."""
    epochs = -(-steps * batch_size // n)
    order = np.concatenate([rng.permutation(n) for _ in range(epochs)])
    return order[: steps * batch_size].reshape(steps, batch_size).astype(np.int32)


def _train(loss_fn, tx, params, data, steps, *, batch_size=None, hparams=None, lrs=None, evaluate=None,
           test=None, bar=None, seed=0, chunks=10):
    """Train R runs at once (a leading axis of length R on every input) with ``make_train_step``.

    The demo's experiments train many small models: every seed, and every
    value of a setting (label smoothing, pos_weight, learning rate, even the
    loss, chosen per run by a one-hot in the batch). Here they are one
    program, ``jax.vmap`` over the runs of a ``lax.scan`` over the steps,
    compiled once for all of them (on a 2-core CPU compiling costs more than
    training these models). :func:`jloss.fit` is the loop for one model: it
    trains one state, one dispatched step at a time.

    ``data`` (R, N, ...) arrays are sampled in minibatches of ``batch_size``
    (whole batch when None); ``hparams`` (R,) values are added to every batch
    unchanged (a per-run label smoothing, pos_weight, ...); ``lrs`` (R,)
    overrides the optimizer's learning rate per run. ``evaluate(params, test)``
    runs after every step. Steps run in ``chunks`` jitted ``lax.scan`` calls
    (one compilation), updating the progress ``bar`` after each.

    Returns ``(params, losses (R, steps), evals (R, steps) or None)``.
    """
    hparams = {} if hparams is None else hparams
    runs = len(jax.tree_util.tree_leaves(params)[0])
    n = len(jax.tree_util.tree_leaves(data)[0][0])
    rng = np.random.default_rng(seed)
    full = batch_size is None or batch_size >= n
    # xs of the scan: minibatch indices (R, steps, B), or just the step number for full batches
    idx = (np.zeros((runs, steps), np.int32) if full else
           np.stack([_batch_indices(rng, n, batch_size, steps) for _ in range(runs)]))
    step = make_train_step(loss_fn)
    chunks = chunks if steps % chunks == 0 else 1

    def one_run(state, data, hp, test, idx):
        def body(state, i):
            batch = {**(data if full else jax.tree.map(lambda a: a[i], data)), **hp}
            state, metrics = step(state, batch)
            score = evaluate(state.params, test) if evaluate is not None else jnp.zeros(())
            return state, (metrics["loss"], score)

        return jax.lax.scan(body, state, idx)

    run_chunk = jax.jit(jax.vmap(one_run))

    def create(p, lr):
        state = TrainState.create(params=p, tx=tx)
        if lr is not None:
            state = state.replace(opt_state=viz._set_learning_rate(state.opt_state, lr))
        return state

    state = jax.jit(jax.vmap(create))(params, None if lrs is None else jnp.asarray(lrs, jnp.float32))
    losses, scores = [], []
    per = steps // chunks
    for c in range(chunks):
        state, (loss, score) = run_chunk(state, data, hparams, test, idx[:, c * per:(c + 1) * per])
        losses.append(np.asarray(loss))
        scores.append(np.asarray(score))
        if bar is not None:
            bar.update(per)
    losses = np.concatenate(losses, axis=1)
    scores = np.concatenate(scores, axis=1) if evaluate is not None else None
    return state.params, losses, scores


def _bar(cfg, desc, total):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=not cfg.progress, leave=False,
                dynamic_ncols=True)


def _first_step_at(scores, threshold):
    """1-based step at which ``scores`` first reaches ``threshold``, or None."""
    hit = np.flatnonzero(scores >= threshold)
    return int(hit[0]) + 1 if hit.size else None


def _steps_label(steps, budget):
    return f">{budget}" if steps is None else f"{steps:g}"


def _median_steps(steps_list, budget):
    """Median over repeats, counting "never" as budget + 1 (so a median of them reads ">budget")."""
    values = [budget + 1 if s is None else s for s in steps_list]
    med = float(np.median(values))
    return None if med > budget else med


# Several losses, one program: a run trains on sum_i c_i * loss_i with a one-hot c from its batch,
# i.e. on exactly one of the losses, so runs with different losses share one compiled program
# (on a 2-core CPU compiling costs more than training these small models).


def _tile(tree, k):
    """k copies of every run, stacked along the run axis (variant-major)."""
    return jax.tree.map(lambda a: np.concatenate([a] * k), tree)


def _per_variant(values, repeats, dtype=np.float32):
    """One value (or row) per variant -> one per run, matching :func:`_tile`."""
    return np.repeat(np.asarray(values, dtype), repeats, axis=0)


def _variant_runs(g, repeats):
    return slice(g * repeats, (g + 1) * repeats)


_predict = jax.jit(jax.vmap(_mlp))


# -------------------------------------------------------------------- claim (a)


def claim_outliers(cfg, out=None):
    """(a) With 10% of regression targets corrupted by large outliers, MAE and Huber beat MSE."""
    x_all, y_all = _load("diabetes")
    frac = 0.10
    runs = []
    for r in range(cfg.small_repeats):
        rng = np.random.default_rng(cfg.seed + r)
        xtr, xte, ytr, yte = _split(x_all, y_all, cfg.seed + r, 0.2, stratify=False)
        xtr, xte = _standardize(xtr, xte)
        mu, sd = ytr.mean(), ytr.std()
        ytr_s = ((ytr - mu) / sd).astype(np.float32)
        bad = rng.choice(len(ytr_s), size=round(frac * len(ytr_s)), replace=False)
        corrupt = ytr_s.copy()
        corrupt[bad] += (rng.choice([-1.0, 1.0], size=len(bad)) * rng.uniform(5, 10, size=len(bad))).astype(
            np.float32)
        runs.append({"x": xtr, "clean": ytr_s, "noisy": corrupt, "xte": xte, "yte": yte.astype(np.float32),
                     "mu": np.float32(mu), "sd": np.float32(sd),
                     "params": _init_mlp(rng, (xtr.shape[1], 16, 1))})
    data = _stack(runs)
    # (name, targets trained on, one-hot over (MSE, MAE, Huber))
    variants = [("MSE (clean targets, reference)", "clean", (1, 0, 0)), ("MSE", "noisy", (1, 0, 0)),
                ("MAE", "noisy", (0, 1, 0)), ("Huber (delta=1)", "noisy", (0, 0, 1))]
    k, rep = len(variants), cfg.small_repeats

    def loss_fn(params, batch):
        pred, y, c = _mlp(params, batch["x"])[:, 0], batch["y"], batch["c"]
        return (c[0] * regression.mean_squared_error(pred, y) + c[1] * regression.mean_absolute_error(pred, y)
                + c[2] * regression.huber(pred, y, delta=1.0))

    bar = _bar(cfg, "(a) outliers", cfg.outlier_steps)
    train = {"x": _tile(data["x"], k), "y": np.concatenate([data[t] for _, t, _ in variants])}
    params, curves, _ = _train(loss_fn, optimizer("adam", 3e-3), _tile(data["params"], k), train,
                               cfg.outlier_steps, hparams={"c": _per_variant([v[2] for v in variants], rep)},
                               bar=bar, seed=cfg.seed)
    bar.close()
    pred = np.asarray(_predict(params, _tile(data["xte"], k)))[..., 0]
    pred = pred * _tile(data["sd"], k)[:, None] + _tile(data["mu"], k)[:, None]
    err = pred - _tile(data["yte"], k)
    results = {}
    for g, (name, _, _) in enumerate(variants):
        e = err[_variant_runs(g, rep)]
        results[name] = {"rmse": np.sqrt(np.mean(e**2, axis=1)), "mae": np.mean(np.abs(e), axis=1)}
    rmse = {k: float(v["rmse"].mean()) for k, v in results.items()}
    mae = {k: float(v["mae"].mean()) for k, v in results.items()}
    holds = rmse["MAE"] < rmse["MSE"] and rmse["Huber (delta=1)"] < rmse["MSE"]
    rows = [(k, f"{rmse[k]:.1f}", f"{results[k]['rmse'].std():.1f}", f"{mae[k]:.1f}") for k in results]
    res = _result(
        "outliers", "a",
        "With 10% of regression targets corrupted by large outliers, MAE and Huber fit the clean "
        "test set better than MSE.",
        holds,
        f"clean-test RMSE: MSE {rmse['MSE']:.1f}, MAE {rmse['MAE']:.1f}, Huber {rmse['Huber (delta=1)']:.1f} "
        f"(MSE on clean targets {rmse['MSE (clean targets, reference)']:.1f})",
        ["loss (trained on)", "test RMSE", "+-", "test MAE"], rows,
        {"rmse": rmse, "mae": mae},
        f"diabetes (442 patients, 10 features), {cfg.small_repeats} splits; 10% of the training targets get "
        "+-U(5, 10) standard deviations added; MLP 10-16-1, Adam 3e-3, "
        f"{cfg.outlier_steps} full-batch steps; errors in the target's units on the clean test set.")
    res["short"] = (f"test RMSE: MSE {rmse['MSE']:.0f}, MAE {rmse['MAE']:.0f}, Huber "
                    f"{rmse['Huber (delta=1)']:.0f} (clean MSE {rmse['MSE (clean targets, reference)']:.0f})")
    if out:
        fig, axes = _figure(2)
        viz.plot_loss_curves({name: curves[_variant_runs(g, rep)] for g, (name, _, _) in enumerate(variants)},
                             axes[0], title="training loss (each its own loss)")
        names = list(results)
        axes[1].bar(range(len(names)), [rmse[k] for k in names],
                    yerr=[results[k]["rmse"].std() for k in names], color=["C0", "C1", "C2", "C3"])
        axes[1].set_xticks(range(len(names)), ["MSE\n(clean)", "MSE", "MAE", "Huber"])
        axes[1].set_ylabel("clean test RMSE")
        axes[1].set_title("10% outliers in training targets")
        res["plot"] = _save(fig, out, "demo-outliers.png")
    return res


# -------------------------------------------------------------------- claim (b)


def claim_ce_vs_mse(cfg, out=None, threshold=0.9):
    """(b) Cross-entropy reaches a given accuracy in fewer steps than MSE on softmax outputs."""
    data = _digits(cfg, hidden=64)
    rep, budget = cfg.repeats, cfg.classify_steps

    def loss_fn(params, batch):
        logits, c = _mlp(params, batch["x"]), batch["c"]
        ce = classification.sparse_categorical_cross_entropy(logits, batch["y"])
        mse = regression.mean_squared_error(jax.nn.softmax(logits), jax.nn.one_hot(batch["y"], 10))
        return c[0] * ce + c[1] * mse

    def acc(params, test):
        return jnp.mean(jnp.argmax(_mlp(params, test["x"]), -1) == test["y"])

    losses = {"cross-entropy": (1, 0), "MSE on softmax": (0, 1)}
    # MSE averages over the 10 classes (as Keras and PyTorch do), so its gradient is 10x smaller than
    # a sum's; the extra SGD run at 10x the rate separates that scale from the shape of the loss.
    groups = {"sgd": [("SGD lr=0.1", "cross-entropy", 0.1), ("SGD lr=0.1", "MSE on softmax", 0.1),
                      ("SGD lr=1.0", "MSE on softmax", 1.0)],
              "adam": [("Adam lr=1e-3", "cross-entropy", 1e-3), ("Adam lr=1e-3", "MSE on softmax", 1e-3)]}
    bar = _bar(cfg, "(b) CE vs MSE", len(groups) * budget)
    rows, numbers, curves = [], {}, {}
    for opt, group in groups.items():
        k = len(group)
        _, _, scores = _train(loss_fn, optimizer(opt, group[0][2]), _tile(data["params"], k),
                              _tile({"x": data["x"], "y": data["y"]}, k), budget, batch_size=cfg.batch_size,
                              hparams={"c": _per_variant([losses[v[1]] for v in group], rep)},
                              lrs=_per_variant([v[2] for v in group], rep), evaluate=acc,
                              test=_tile(data["test"], k), bar=bar, seed=cfg.seed)
        for g, (opt_name, loss_name, _) in enumerate(group):
            sc = scores[_variant_runs(g, rep)]
            steps = [_first_step_at(s, threshold) for s in sc]
            med = _median_steps(steps, budget)
            final = float(sc[:, -1].mean())
            numbers[f"{opt_name} / {loss_name}"] = {"steps": steps, "median_steps": med,
                                                    "final_accuracy": final}
            curves[(opt_name, loss_name)] = sc
            rows.append((opt_name, loss_name, _steps_label(med and round(med), budget),
                         ", ".join(_steps_label(s, budget) for s in steps), f"{final:.3f}"))
    bar.close()

    def compare(opt):
        ce_steps, mse_steps = (numbers[f"{opt} / {ln}"]["median_steps"] for ln in losses)
        ce_steps, mse_steps = (budget + 1 if v is None else v for v in (ce_steps, mse_steps))
        if ce_steps <= 0.9 * mse_steps:
            return "CE faster"
        return "MSE faster" if mse_steps <= 0.9 * ce_steps else "tie (within 10%)"

    verdicts = {o: compare(o) for o in ("SGD lr=0.1", "Adam lr=1e-3")}
    holds = all(v == "CE faster" for v in verdicts.values())
    fmt = lambda o, ln: _steps_label(numbers[f"{o} / {ln}"]["median_steps"], budget)  # noqa: E731
    summary = "; ".join(f"{o}: CE {fmt(o, 'cross-entropy')} vs MSE {fmt(o, 'MSE on softmax')} steps "
                        f"({verdicts[o]})" for o in verdicts)
    summary += f"; MSE with SGD lr=1.0: {fmt('SGD lr=1.0', 'MSE on softmax')} steps"
    res = _result(
        "ce-vs-mse", "b",
        f"For classification, cross-entropy reaches {threshold:.0%} test accuracy in fewer steps than MSE "
        "on softmax outputs.",
        holds, summary,
        ["optimizer", "loss", f"steps to {threshold:.0%} (median)", "per seed", "final test acc"], rows,
        {"steps": numbers, "verdicts": verdicts},
        f"digits (1797 8x8 images, 10 classes), {cfg.repeats} splits; MLP 64-64-10, minibatch "
        f"{cfg.batch_size}, {budget} steps, same optimizer and rate for both losses; "
        "MSE = mean over classes of (softmax - one_hot)^2; 'CE faster' needs at most 90% of MSE's steps; "
        "the claim holds if CE is faster with both optimizers.")
    res["short"] = "steps to 90%: " + "; ".join(
        f"{o.split()[0]} CE {fmt(o, 'cross-entropy')} vs MSE {fmt(o, 'MSE on softmax')}" for o in verdicts)
    if not holds:
        res["verdict"] = "PARTLY: " + ", ".join(f"{o.split()[0]}: {v}" for o, v in verdicts.items())
    if out:
        fig, axes = _figure(2)
        for ax, opt in zip(axes, ("SGD", "Adam"), strict=True):
            viz.plot_loss_curves({f"{ln}, {o}": v for (o, ln), v in curves.items() if o.startswith(opt)}, ax,
                                 log_y=False, ylabel="test accuracy", title=f"digits, {opt}")
            ax.axhline(threshold, color="0.5", linestyle=":", linewidth=1)
            ax.set_ylim(0, 1)
        res["plot"] = _save(fig, out, "demo-ce-vs-mse.png")
    return res


def _digits(cfg, hidden=64):
    x_all, y_all = _load("digits")
    runs = []
    for r in range(cfg.repeats):
        xtr, xte, ytr, yte = _split(x_all, y_all, cfg.seed + r, 0.2)
        xtr, xte = _standardize(xtr, xte)
        rng = np.random.default_rng(cfg.seed + r)
        runs.append({"x": xtr, "y": ytr.astype(np.int32),
                     "test": {"x": xte, "y": yte.astype(np.int32)},
                     "params": _init_mlp(rng, (64, hidden, 10))})
    return _stack(runs)


# -------------------------------------------------------------------- claim (c)

BCE_TABLE = {0.01: 4.61, 0.10: 2.30, 0.50: 0.69, 0.90: 0.11, 0.99: 0.01}


def claim_gradients(cfg, out=None):
    """(c) Confidently wrong, BCE with a sigmoid has a far larger gradient than MSE with a sigmoid."""
    probs = np.array(list(BCE_TABLE), np.float32)
    logits = np.log(probs / (1 - probs)).astype(np.float32)

    def bce(z):
        return classification.binary_cross_entropy(z, jnp.ones_like(z))

    def mse_sigmoid(z):
        return regression.mean_squared_error(jax.nn.sigmoid(z), jnp.ones_like(z))

    @jax.jit
    def table(z):
        one = jax.vmap(lambda z: jnp.stack([bce(z), jax.grad(bce)(z), mse_sigmoid(z),
                                            jax.grad(mse_sigmoid)(z)]))
        return one(z)

    vals = np.asarray(table(logits), np.float64)
    rows = []
    for p, (b, gb, m, gm) in zip(probs, vals, strict=True):
        rows.append((f"{p:.2f}", f"{b:.2f}", f"{BCE_TABLE[round(float(p), 2)]:.2f}", f"{gb:+.4f}", f"{m:.4f}",
                     f"{gm:+.4f}", f"{abs(gb) / max(abs(gm), 1e-30):.1f}x"))
    table_ok = all(abs(round(b, 2) - BCE_TABLE[round(float(p), 2)]) < 1e-9
                   for p, b in zip(probs, vals[:, 0], strict=True))
    ratio_001 = abs(vals[0, 1]) / abs(vals[0, 3])

    # Real data: a logistic model on breast cancer, started confidently wrong.
    x_all, y_all = _load("breast_cancer")
    runs = []
    for r in range(cfg.small_repeats):
        xtr, xte, ytr, yte = _split(x_all, y_all, cfg.seed + r, 0.25)
        xtr, xte = _standardize(xtr, xte)
        runs.append({"x": xtr, "y": (1 - ytr).astype(np.float32), "test": {"x": xte, "y": (1 - yte)},
                     "params": _init_mlp(np.random.default_rng(cfg.seed + r), (30, 1))})
    data = _stack(runs)
    rep = cfg.small_repeats

    def loss_fn(params, batch):
        z, y, c = _mlp(params, batch["x"])[:, 0], batch["y"], batch["c"]
        return (c[0] * classification.binary_cross_entropy(z, y)
                + c[1] * regression.mean_squared_error(jax.nn.sigmoid(z), y))

    batch = {"x": data["x"], "y": data["y"]}
    bar = _bar(cfg, "(c) gradients", 2 * cfg.wrong_steps)
    fitted, _, _ = _train(loss_fn, optimizer("adam", 1e-2), data["params"], batch, cfg.wrong_steps,
                          hparams={"c": _per_variant([(1, 0)], rep)}, bar=bar)
    # Flip the fitted model and scale it so that the mean |logit| on the training set is 5:
    # most examples then get p(true class) of about sigmoid(-5) = 0.007.
    z = np.asarray(_predict(fitted, data["x"]))[..., 0]
    scale = 5.0 / np.abs(z).mean(axis=1)
    wrong = jax.tree.map(lambda a: -a * scale.reshape((-1,) + (1,) * (a.ndim - 1)).astype(np.float32), fitted)
    p_true = _sigmoid(-np.abs(z) * scale[:, None])
    mix = _per_variant([(1, 0), (0, 1)], rep)
    grads = jax.jit(jax.vmap(lambda p, b: _global_norm(jax.grad(loss_fn)(p, b))))(
        _tile(wrong, 2), {**_tile(batch, 2), "c": mix})
    grads = np.asarray(grads).reshape(2, rep)
    data_ratio = float(np.mean(grads[0] / grads[1]))
    params, _, _ = _train(loss_fn, optimizer("sgd", 0.1), _tile(wrong, 2), _tile(batch, 2), cfg.wrong_steps,
                          hparams={"c": mix}, bar=bar)
    bar.close()
    correct = np.asarray(_predict(params, _tile(data["test"]["x"], 2)))[..., 0] > 0
    correct = correct == (_tile(data["test"]["y"], 2) == 1)
    recovery = {name: float(correct[_variant_runs(g, rep)].mean())
                for g, name in enumerate(("BCE + sigmoid", "MSE + sigmoid"))}
    start_acc = float(np.mean((np.asarray(_predict(wrong, data["test"]["x"]))[..., 0] > 0)
                              == (data["test"]["y"] == 1)))
    holds = bool(table_ok and ratio_001 >= 10 and data_ratio >= 10)
    rows2 = [("start (confidently wrong)", "-", f"{start_acc:.3f}"),
             ("BCE + sigmoid", f"{grads[0].mean():.3f}", f"{recovery['BCE + sigmoid']:.3f}"),
             ("MSE + sigmoid", f"{grads[1].mean():.4f}", f"{recovery['MSE + sigmoid']:.3f}")]
    res = _result(
        "gradients", "c",
        "When confidently wrong, BCE with a sigmoid output gives a far (>= 10x) larger gradient than MSE "
        "with a sigmoid; BCE at p = 0.01, 0.10, 0.50, 0.90, 0.99 for a positive label is "
        "4.61, 2.30, 0.69, 0.11, 0.01.",
        holds,
        f"|dL/dz| at p=0.01: BCE {abs(vals[0, 1]):.3f} vs MSE {abs(vals[0, 3]):.4f} ({ratio_001:.0f}x); "
        f"breast cancer, confidently wrong start: gradient norm {data_ratio:.0f}x larger; test accuracy "
        f"after {cfg.wrong_steps} SGD steps BCE {recovery['BCE + sigmoid']:.3f} vs MSE "
        f"{recovery['MSE + sigmoid']:.3f}",
        ["p (label 1)", "BCE", "expected", "dBCE/dz", "MSE", "dMSE/dz", "ratio"], rows,
        {"bce": vals[:, 0].tolist(), "grad_bce": vals[:, 1].tolist(), "mse": vals[:, 2].tolist(),
         "grad_mse": vals[:, 3].tolist(), "table_matches": table_ok, "ratio_at_0.01": ratio_001,
         "data_grad_ratio": data_ratio, "recovery_accuracy": recovery, "start_accuracy": start_acc,
         "median_p_true_at_start": float(np.median(p_true))},
        f"z = logit(p); MSE = (sigmoid(z) - 1)^2. Real data: logistic regression on breast cancer "
        f"(malignant = 1), {cfg.small_repeats} splits, fitted with BCE then negated and scaled to mean "
        "|logit| 5 "
        f"(median p(true class) {np.median(p_true):.4f}); then {cfg.wrong_steps} full-batch SGD steps at "
        "lr 0.1.")
    res["short"] = (f"|grad| at p=0.01: {ratio_001:.0f}x; real data {data_ratio:.0f}x; acc after "
                    f"{cfg.wrong_steps} steps {recovery['BCE + sigmoid']:.2f} vs "
                    f"{recovery['MSE + sigmoid']:.2f}")
    res["tables"] = [(["start: logistic model on breast cancer", "gradient norm", "test accuracy after"],
                      rows2)]
    if out:
        fig, axes = _figure(2)
        p = np.linspace(0.005, 0.995, 200)
        axes[0].plot(p, np.abs(p - 1), label="BCE + sigmoid: |p - 1|")
        axes[0].plot(p, np.abs(2 * (p - 1) * p * (1 - p)), label="MSE + sigmoid: |2(p-1)p(1-p)|")
        axes[0].set_yscale("log")
        axes[0].set_xlabel("predicted p for a positive example")
        axes[0].set_ylabel("|dL/dlogit|")
        axes[0].set_title("gradient: confidently wrong on the left")
        axes[0].legend(fontsize="small")
        axes[1].bar([0, 1, 2], [start_acc, *recovery.values()], color=["0.6", "C0", "C1"])
        axes[1].set_xticks([0, 1, 2], ["start", "BCE", "MSE"])
        axes[1].set_ylabel("test accuracy")
        axes[1].set_title(f"after {cfg.wrong_steps} SGD steps from confidently wrong")
        res["plot"] = _save(fig, out, "demo-gradients.png")
    return res


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _global_norm(tree):
    return jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(tree)))


# -------------------------------------------------------------------- claim (d)


def claim_imbalance(cfg, out=None, positive_fraction=0.05):
    """(d) On ~5% positives, focal loss or class-weighted BCE gives higher minority recall than BCE."""
    x_all, y_all = _load("breast_cancer")
    y_all = 1 - y_all  # malignant = 1, the minority class we subsample
    runs = []
    for r in range(cfg.small_repeats):
        rng = np.random.default_rng(cfg.seed + r)
        xtr, xte, ytr, yte = _split(x_all, y_all, cfg.seed + r, 0.3)
        neg, pos = np.flatnonzero(ytr == 0), np.flatnonzero(ytr == 1)
        n_pos = round(positive_fraction / (1 - positive_fraction) * len(neg))
        keep = np.concatenate([neg, rng.choice(pos, size=n_pos, replace=False)])
        xtr, ytr = xtr[keep], ytr[keep]
        xtr, xte = _standardize(xtr, xte)
        runs.append({"x": xtr, "y": ytr.astype(np.float32), "xte": xte, "yte": yte,
                     "params": _init_mlp(rng, (30, 16, 1))})
    data = _stack(runs)
    n_pos, n = int(data["y"][0].sum()), data["y"].shape[1]
    pos_weight = (n - n_pos) / n_pos
    rep = cfg.small_repeats

    def loss_fn(params, batch):
        z, y, c = _mlp(params, batch["x"])[:, 0], batch["y"], batch["c"]
        return (c[0] * classification.binary_cross_entropy(z, y, pos_weight=batch["w"])
                + c[1] * classification.binary_focal_loss(z, y, gamma=2.0, alpha=batch["a"])
                + c[2] * classification.binary_focal_loss(z, y, gamma=2.0, alpha=None))

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
    bar = _bar(cfg, "(d) imbalance", cfg.imbalance_steps)
    hp = {"c": _per_variant([v[2] for v in variants], rep), "w": _per_variant([v[3] for v in variants], rep),
          "a": _per_variant([v[4] for v in variants], rep)}
    params, _, _ = _train(loss_fn, optimizer("adam", 1e-3), _tile(data["params"], k),
                          _tile({"x": data["x"], "y": data["y"]}, k), cfg.imbalance_steps, hparams=hp,
                          bar=bar)
    bar.close()
    preds = np.asarray(_predict(params, _tile(data["xte"], k)))[..., 0] > 0
    labels = _tile(data["yte"], k) == 1
    recall = np.asarray(jax.vmap(metrics.binary_recall)(preds, labels), np.float64)
    # specificity is the recall of the negative class: recall of the flipped predictions and labels
    specificity = np.asarray(jax.vmap(metrics.binary_recall)(~preds, ~labels), np.float64)
    stats = {}
    for g, (name, *_) in enumerate(variants):
        sl = _variant_runs(g, rep)
        stats[name] = {"recall": recall[sl], "specificity": specificity[sl]}
    rec = {k: float(v["recall"].mean()) for k, v in stats.items()}
    spec = {k: float(v["specificity"].mean()) for k, v in stats.items()}
    # Each variant against BCE on the same splits: the mean paired difference in recall and its
    # standard error; "higher" means more than two standard errors above BCE.
    diff, se = {}, {}
    for name in stats:
        d = stats[name]["recall"] - stats["BCE"]["recall"]
        diff[name], se[name] = float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    better = [k for k in rec if k != "BCE" and diff[k] > 2 * se[k]]
    holds = bool(better)
    rows = [(k, f"{rec[k]:.3f}", f"{stats[k]['recall'].std():.3f}",
             "-" if k == "BCE" else f"{diff[k]:+.3f} +- {se[k]:.3f}", f"{spec[k]:.3f}",
             f"{(rec[k] + spec[k]) / 2:.3f}") for k in stats]
    res = _result(
        "imbalance", "d",
        f"On imbalanced binary data (about {positive_fraction:.0%} positives), focal loss or class-weighted "
        "BCE gives higher minority-class recall than plain BCE.",
        holds,
        "minority recall: " + ", ".join(f"{short[k]} {v:.3f}" for k, v in rec.items())
        + (f"; clearly higher than BCE: {', '.join(short[k] for k in better)}" if better else
           "; none clearly higher than BCE"),
        ["loss", "recall (malignant)", "+-", "vs BCE (paired)", "specificity", "balanced acc"], rows,
        {"recall": rec, "specificity": spec, "recall_gain": diff, "recall_gain_se": se,
         "pos_weight": pos_weight, "train_positives": n_pos, "train_size": n, "better_than_bce": better},
        f"breast cancer with malignant = positive, training set subsampled to {n_pos} positives of {n} "
        f"({n_pos / n:.1%}); test set ({data['yte'].shape[1]} patients) at the natural rate; "
        f"{cfg.small_repeats} splits; MLP 30-16-1, Adam 1e-3, {cfg.imbalance_steps} full-batch steps; "
        "threshold 0.5. Holds if a variant's recall beats BCE's by more than two standard errors of the "
        "paired difference.")
    names = list(stats)
    res["short"] = "recall: " + ", ".join(f"{short[n_]} {rec[n_]:.2f}" for n_ in names)
    if out:
        fig, axes = _figure(2)
        labels_ = [short[n_].replace(" ", "\n") for n_ in names]
        colors = ["C3", "C0", "C1", "C2", "C4"]
        axes[0].bar(range(k), [rec[n_] for n_ in names], yerr=[stats[n_]["recall"].std() for n_ in names],
                    color=colors)
        axes[0].set_title("minority-class recall")
        axes[0].set_ylabel("recall of the 5% class (test)")
        axes[1].bar(range(k), [spec[n_] for n_ in names], color=colors)
        axes[1].set_title("majority-class recall")
        axes[1].set_ylabel("specificity (test)")
        for ax in axes:
            ax.set_xticks(range(k), labels_)
            ax.set_ylim(0, 1.05)
        res["plot"] = _save(fig, out, "demo-imbalance.png")
    return res


# -------------------------------------------------------------------- claim (e)

LEARNING_RATES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
OPTIMIZERS = (("sgd", 0.1, {}), ("momentum", 0.1, {"momentum": 0.9}), ("adam", 1e-3, {}),
              ("rmsprop", 1e-3, {}))  # plain SGD at 0.1 is a run of the learning-rate sweep


def claim_optimizers(cfg, out=None, threshold=0.9):
    """(e) Too high a learning rate diverges, too low crawls; SGD vs momentum vs Adam vs RMSprop."""
    data = _digits(cfg, hidden=64)

    def loss_fn(params, batch):
        return classification.sparse_categorical_cross_entropy(_mlp(params, batch["x"]), batch["y"])

    def acc(params, test):
        return jnp.mean(jnp.argmax(_mlp(params, test["x"]), -1) == test["y"])

    k, steps, rep = len(LEARNING_RATES), cfg.optimizer_steps, cfg.repeats
    train = {"x": data["x"], "y": data["y"]}
    full_loss = jax.jit(jax.vmap(loss_fn))  # on the whole training set, free of minibatch noise
    initial = np.asarray(full_loss(data["params"], train), np.float64)
    bar = _bar(cfg, "(e) learning rates, optimizers", len(OPTIMIZERS) * steps)
    # The sweep: every rate x every split in one program; the rate is set per run in the optimizer state.
    sweep_params, sweep, sweep_acc = _train(loss_fn, optimizer("sgd", 0.1), _tile(data["params"], k),
                                 _tile({"x": data["x"], "y": data["y"]}, k), steps, batch_size=cfg.batch_size,
                                 lrs=_per_variant(LEARNING_RATES, rep), evaluate=acc,
                                 test=_tile(data["test"], k), bar=bar, seed=cfg.seed)
    finals = np.asarray(full_loss(sweep_params, _tile(train, k)), np.float64)
    lr_rows, lr_stats, lr_curves = [], {}, {}
    for i, lr in enumerate(LEARNING_RATES):
        sl = _variant_runs(i, rep)
        curve = sweep[sl]
        start = float(initial.mean())
        final = _mean_or_inf(finals[sl])
        test_acc = float(sweep_acc[sl, -1].mean())
        verdict = _lr_verdict(final, start)
        lr_stats[lr] = {"initial_loss": start, "final_loss": final, "test_accuracy": test_acc,
                        "verdict": verdict}
        lr_curves[f"lr={lr:g}" + ("" if verdict == "learned" else f" ({verdict})")] = curve
        lr_rows.append((f"{lr:g}", _fmt_loss(start), _fmt_loss(final), f"{test_acc:.3f}", verdict))
    opt_rows, opt_stats, opt_curves = [], {}, {}
    for name, lr, options in OPTIMIZERS:
        if name == "sgd" and not options and lr in LEARNING_RATES:
            sl = _variant_runs(LEARNING_RATES.index(lr), rep)
            curve, scores, final = sweep[sl], sweep_acc[sl], _mean_or_inf(finals[sl])
        else:
            params, curve, scores = _train(loss_fn, optimizer(name, lr, **options), data["params"], train,
                                           steps, batch_size=cfg.batch_size, evaluate=acc, test=data["test"],
                                           bar=bar, seed=cfg.seed)
            final = _mean_or_inf(np.asarray(full_loss(params, train), np.float64))
        reach = [_first_step_at(s, threshold) for s in scores]
        med = _median_steps(reach, steps)
        label = f"{name} lr={lr:g}" + (f" (beta {options['momentum']})" if "momentum" in options else "")
        opt_stats[label] = {"final_loss": final, "test_accuracy": float(scores[:, -1].mean()),
                            "steps_to_threshold": med}
        opt_curves[label] = curve
        opt_rows.append((label, _fmt_loss(final), f"{scores[:, -1].mean():.3f}",
                         _steps_label(med and round(med), steps)))
    bar.close()
    highest, lowest = lr_stats[LEARNING_RATES[-1]], lr_stats[LEARNING_RATES[0]]
    holds = highest["verdict"] == "diverged" and lowest["verdict"] == "crawled"
    ranking = sorted(opt_stats, key=lambda k: opt_stats[k]["final_loss"])
    res = _result(
        "optimizers", "e",
        "A learning rate too high diverges and one too low crawls (SGD); SGD vs momentum vs Adam vs RMSprop "
        "on the same model.",
        holds,
        f"SGD lr={LEARNING_RATES[-1]:g}: {highest['verdict']} (loss {_fmt_loss(highest['final_loss'])}), "
        f"lr={LEARNING_RATES[0]:g}: {lowest['verdict']} (loss {_fmt_loss(lowest['final_loss'])}); "
        f"lowest final loss: {ranking[0]}",
        ["SGD learning rate", "initial loss", "final train loss", "test acc", "verdict"], lr_rows,
        {"learning_rates": {str(k): v for k, v in lr_stats.items()}, "optimizers": opt_stats,
         "ranking": ranking},
        f"digits, MLP 64-64-10, cross-entropy, minibatch {cfg.batch_size}, {steps} steps, {cfg.repeats} "
        "splits; losses on the whole training set. 'diverged': final loss not finite or above the "
        "initial loss; 'crawled': less than 10% below the initial loss after all steps. Optimizers at "
        "customary rates (SGD / momentum 0.1, Adam / RMSprop 1e-3).")
    res["tables"] = [(["optimizer", "final train loss", "test acc", f"steps to {threshold:.0%} test acc"],
                      opt_rows)]
    res["short"] = (f"SGD lr {LEARNING_RATES[-1]:g} {highest['verdict']}, lr {LEARNING_RATES[0]:g} "
                    f"{lowest['verdict']}; lowest loss: {ranking[0].split(' (')[0]}")
    if out:
        fig, axes = _figure(2)
        viz.plot_loss_curves(lr_curves, axes[0], title="SGD: learning-rate sweep", smooth=0.9)
        finite = sweep[np.isfinite(sweep) & (sweep > 0)]
        axes[0].set_ylim(0.5 * finite.min(), 10 * float(initial.mean()))  # diverging runs leave the top
        viz.plot_loss_curves(opt_curves, axes[1], title="optimizers (digits MLP)", smooth=0.9)
        res["plot"] = _save(fig, out, "demo-optimizers.png")
    return res


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


# -------------------------------------------------------------------- claim (f)

SMOOTHING = (0.0, 0.05, 0.1, 0.2)


def claim_calibration(cfg, out=None):
    """(f) Label smoothing lowers the expected calibration error."""
    data = _digits(cfg, hidden=64)

    def loss_fn(params, batch):
        return classification.sparse_categorical_cross_entropy(_mlp(params, batch["x"]), batch["y"],
                                                               label_smoothing=batch["s"])

    k = len(SMOOTHING)
    bar = _bar(cfg, "(f) calibration", cfg.calibration_steps)
    # the label smoothing is an argument of the loss, per run: one program for every value
    hp = {"s": _per_variant(SMOOTHING, cfg.repeats)}
    params, curves, _ = _train(loss_fn, optimizer("adam", 1e-3), _tile(data["params"], k),
                               _tile({"x": data["x"], "y": data["y"]}, k), cfg.calibration_steps,
                               batch_size=cfg.batch_size, hparams=hp, bar=bar, seed=cfg.seed)
    bar.close()
    logits = np.asarray(_predict(params, _tile(data["test"]["x"], k)), np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    labels = _tile(data["test"]["y"], k)
    ece_per_run, acc_per_run = (np.asarray(a, np.float64) for a in _ece_and_accuracy(probs, labels))
    stats, rows = {}, []
    for i, s in enumerate(SMOOTHING):
        sl = range(i * cfg.repeats, (i + 1) * cfg.repeats)
        ece, acc = ece_per_run[sl], acc_per_run[sl]
        conf = np.array([probs[j].max(-1).mean() for j in sl])
        nll = np.array([-np.mean(np.log(np.maximum(probs[j][np.arange(len(labels[j])), labels[j]], 1e-300)))
                        for j in sl])
        stats[s] = {"ece": float(ece.mean()), "ece_std": float(ece.std()), "accuracy": float(acc.mean()),
                    "confidence": float(conf.mean()), "nll": float(nll.mean())}
        rows.append((f"{s:g}", f"{ece.mean():.4f}", f"{ece.std():.4f}", f"{acc.mean():.3f}",
                     f"{conf.mean():.3f}", f"{nll.mean():.3f}"))
    holds = stats[0.1]["ece"] < stats[0.0]["ece"]
    gap = stats[0.0]["confidence"] - stats[0.0]["accuracy"]
    gap_s = stats[0.1]["confidence"] - stats[0.1]["accuracy"]
    why = (f"mean confidence - accuracy: {gap:+.3f} without smoothing, {gap_s:+.3f} with 0.1 "
           f"({'over' if gap_s > 0 else 'under'}confident)")
    res = _result(
        "calibration", "f", "Label smoothing lowers the expected calibration error.", holds,
        f"test ECE: no smoothing {stats[0.0]['ece']:.4f}, smoothing 0.1 {stats[0.1]['ece']:.4f} "
        f"(accuracy {stats[0.0]['accuracy']:.3f} vs {stats[0.1]['accuracy']:.3f}, mean confidence "
        f"{stats[0.0]['confidence']:.3f} vs {stats[0.1]['confidence']:.3f}); {why}",
        ["label smoothing", "test ECE", "+-", "test acc", "mean confidence", "test NLL"], rows,
        {"by_smoothing": {str(k): v for k, v in stats.items()}},
        f"digits, MLP 64-64-10, Adam 1e-3, minibatch {cfg.batch_size}, {cfg.calibration_steps} steps "
        f"(about {cfg.calibration_steps * cfg.batch_size // data['x'].shape[1]} epochs), "
        f"{cfg.repeats} splits; ECE with {ECE_BINS} equal-width confidence bins on the test set; "
        "the claim is judged at smoothing 0.1.")
    res["short"] = (f"test ECE {stats[0.0]['ece']:.3f} without smoothing, {stats[0.1]['ece']:.3f} with 0.1 "
                    f"(confidence - accuracy {gap:+.3f} / {gap_s:+.3f})")
    if out:
        fig, axes = _figure(2)
        for i, s in enumerate(SMOOTHING):
            j = i * cfg.repeats
            centers, acc = _reliability(probs[j], labels[j])
            axes[0].plot(centers, acc, "o-", label=f"smoothing {s:g} (ECE {stats[s]['ece']:.3f})")
        axes[0].plot([0, 1], [0, 1], color="0.5", linestyle=":")
        axes[0].set_xlabel("confidence")
        axes[0].set_ylabel("accuracy")
        axes[0].set_title("reliability (test, first split)")
        axes[0].legend(fontsize="small")
        viz.plot_loss_curves({f"smoothing {s:g}": curves[i * cfg.repeats:(i + 1) * cfg.repeats]
                              for i, s in enumerate(SMOOTHING)}, axes[1], smooth=0.95,
                             title="training loss")
        res["plot"] = _save(fig, out, "demo-calibration.png")
    return res


# --------------------------------------------------------------- visual tools


def demo_lr_finder(cfg, out=None):
    """The LR range test on the digits MLP, compared with the sweep of claim (e)."""
    data = _digits(dataclasses.replace(cfg, repeats=1), hidden=64)
    x, y = data["x"][0], data["y"][0]
    params = jax.tree.map(lambda a: a[0], data["params"])
    rng = np.random.default_rng(cfg.seed)
    idx = _batch_indices(rng, len(x), cfg.batch_size, cfg.finder_steps)
    batches = [{"x": x[i], "y": y[i]} for i in idx]

    def loss_fn(params, batch):
        return classification.sparse_categorical_cross_entropy(_mlp(params, batch["x"]), batch["y"])

    bar = _bar(cfg, "lr finder", 1)
    result = viz.lr_finder(loss_fn, params, batches, min_lr=1e-4, max_lr=100.0, num_steps=cfg.finder_steps,
                           optimizer="sgd", smoothing=0.9)
    bar.update(1)
    bar.close()
    rows = [(f"{result.suggested_lr:.3g}", result.method, f"{result.min_loss_lr:.3g}", str(result.diverged),
             str(len(result.lrs)))]
    res = _result(
        "lr-finder", "", "LR range test (SGD, digits MLP): exponentially increasing rate, suggested rate.",
        None,
        f"suggested lr {result.suggested_lr:.3g} ({result.method}); loss minimum at lr "
        f"{result.min_loss_lr:.3g}; {'stopped at divergence' if result.diverged else 'did not diverge'} "
        f"after {len(result.lrs)} steps",
        ["suggested lr", "method", "lr at min loss", "diverged", "steps"], rows,
        {"suggested_lr": result.suggested_lr, "min_loss_lr": result.min_loss_lr, "diverged": result.diverged,
         "steps": len(result.lrs)},
        f"jloss.lr_finder from 1e-4 to 100 over {cfg.finder_steps} SGD steps, minibatch {cfg.batch_size}, "
        "smoothing 0.9.")
    res["short"] = (f"suggested lr {result.suggested_lr:.2g} ({result.method}), "
                    f"min at {result.min_loss_lr:.2g}")
    res["result"] = result
    if out:
        fig, axes = _figure(1)
        viz.plot_lr_finder(result, axes[0], title="LR range test: SGD, digits MLP")
        res["plot"] = _save(fig, out, "demo-lr-finder.png")
    return res


def demo_landscape(cfg, out=None):
    """Loss landscapes (filter-normalised directions) around a trained digits MLP."""
    data = _digits(dataclasses.replace(cfg, repeats=1), hidden=64)

    def loss_fn(params, batch):
        return classification.sparse_categorical_cross_entropy(_mlp(params, batch["x"]), batch["y"],
                                                               label_smoothing=batch["s"])

    bar = _bar(cfg, "loss landscape", cfg.landscape_steps + 3)
    hp = {"s": np.array([0.0, 0.1], np.float32)}
    params, _, _ = _train(loss_fn, optimizer("adam", 1e-3), _tile(data["params"], 2),
                          _tile({"x": data["x"], "y": data["y"]}, 2), cfg.landscape_steps,
                          batch_size=cfg.batch_size, hparams=hp, bar=bar, seed=cfg.seed)

    def eval_loss(params, batch):  # plain cross-entropy on the test set for both models
        return classification.sparse_categorical_cross_entropy(_mlp(params, batch["x"]), batch["y"])

    test = {"x": data["test"]["x"][0], "y": data["test"]["y"][0]}
    scapes = {}
    for i, s in enumerate((0.0, 0.1)):
        p = jax.tree.map(lambda a, i=i: a[i], params)
        scapes[s] = viz.loss_landscape(eval_loss, p, test, key=cfg.seed, dims=1, span=1.0,
                                       num=2 * cfg.landscape_num - 1)
        bar.update(1)
    surface = viz.loss_landscape(eval_loss, jax.tree.map(lambda a: a[0], params), test, key=cfg.seed, dims=2,
                                 span=1.0, num=cfg.landscape_num)
    bar.update(1)
    bar.close()
    rows = []
    for s, sc in scapes.items():
        edge = float(np.mean([sc.losses[0], sc.losses[-1]]))
        mid = len(sc.alphas) // 2
        half = float(np.mean([sc.losses[mid // 2], sc.losses[mid + (len(sc.alphas) - mid) // 2]]))
        rows.append((f"{s:g}", f"{sc.center_loss:.3f}", f"{half:.3f}", f"{edge:.3f}"))
    res = _result(
        "landscape", "", "Loss landscape along filter-normalised random directions (Li et al. 2018).", None,
        f"test loss at the minimum {scapes[0.0].center_loss:.3f} (no smoothing), "
        f"{scapes[0.1].center_loss:.3f} (smoothing 0.1); the table gives the loss 0.5 and 1 filter-norms "
        "away",
        ["trained with smoothing", "test CE at params", "at |alpha| = 0.5", "at |alpha| = 1"], rows,
        {"center": {str(s): sc.center_loss for s, sc in scapes.items()},
         "surface_min": float(surface.losses.min()), "surface_max": float(surface.losses.max())},
        f"digits MLP trained {cfg.landscape_steps} Adam steps; test cross-entropy along 1 direction "
        f"({2 * cfg.landscape_num - 1} points) and on a {cfg.landscape_num}x{cfg.landscape_num} grid of 2.")
    res["short"] = "test CE at the minimum / 1 filter-norm away: " + ", ".join(
        f"smoothing {s:g}: {sc.center_loss:.2f} / {np.mean([sc.losses[0], sc.losses[-1]]):.2f}"
        for s, sc in scapes.items())
    res["landscapes"] = scapes
    res["surface"] = surface
    if out:
        fig, axes = _figure(2)
        for s, sc in scapes.items():
            viz.plot_landscape(sc, axes[0], label=f"label smoothing {s:g}")
        axes[0].set_title("1-D (test cross-entropy)")
        viz.plot_landscape(surface, axes[1], title="2-D, no smoothing (log10 test CE)", log=True)
        res["plot"] = _save(fig, out, "demo-landscape.png")
    return res


# --------------------------------------------------------------------- running

CLAIMS = {
    "outliers": claim_outliers,
    "ce-vs-mse": claim_ce_vs_mse,
    "gradients": claim_gradients,
    "imbalance": claim_imbalance,
    "optimizers": claim_optimizers,
    "calibration": claim_calibration,
    "lr-finder": demo_lr_finder,
    "landscape": demo_landscape,
}


def _result(key, letter, statement, holds, summary, headers, rows, numbers, setup):
    return {"key": key, "claim": letter, "statement": statement, "holds": holds, "summary": summary,
            "headers": headers, "rows": rows, "numbers": numbers, "setup": setup, "tables": [], "plot": None}


def _figure(cols):
    from matplotlib.figure import Figure  # the Agg canvas: no display needed

    fig = Figure(figsize=(5.2 * cols, 3.8), layout="constrained")
    return fig, [fig.add_subplot(1, cols, i + 1) for i in range(cols)]


def _save(fig, out, name):
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, name)
    fig.savefig(path, dpi=80)
    return path


def format_table(headers, rows):
    """A plain-text table with aligned columns."""
    cells = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([fmt(cells[0]), line, *map(fmt, cells[1:])])


def _verdict(res):
    if res.get("verdict"):
        return res["verdict"]
    return {True: "HOLDS", False: "DOES NOT HOLD", None: "(tool)"}[res["holds"]]


def print_result(res, file=None):
    title = f"({res['claim']}) " if res["claim"] else ""
    print(f"\n== {title}{res['key']}: {_verdict(res)}", file=file)
    print(f"claim: {res['statement']}", file=file)
    print(f"setup: {res['setup']}", file=file)
    print(format_table(res["headers"], res["rows"]), file=file)
    for headers, rows in res["tables"]:
        print(file=file)
        print(format_table(headers, rows), file=file)
    print(f"measured: {res['summary']}", file=file)
    if res["plot"]:
        print(f"plot: {res['plot']}", file=file)
    if "seconds" in res:
        print(f"time: {res['seconds']:.1f} s", file=file)


def _plain(x):
    """JSON-ready copy: NumPy scalars and arrays to Python numbers and lists, keys to str."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def to_json(results):
    """The results as JSON-ready dicts (the plain fields; no curves or landscapes)."""
    keys = ("key", "claim", "statement", "holds", "summary", "headers", "rows", "numbers", "setup",
            "tables", "plot")
    return [_plain({k: r[k] for k in keys} | {"verdict": _verdict(r), "short": r.get("short"),
                                               "seconds": r.get("seconds")})
            for r in results]


def summary_rows(results):
    """Rows ``(claim, verdict, key numbers)`` of the summary table."""
    return [(f"({r['claim']}) {r['key']}" if r["claim"] else r["key"], _verdict(r),
             r.get("short") or r["summary"]) for r in results]


def run(quick=False, seed=0, out="jloss-demo", progress=True, only=None, file=None, json_path=None):
    """Run the demo: print the selection guide, run each claim, print tables, write plots to ``out``.

    Args:
      quick: the small, fast configuration (used by the tests).
      seed: base seed; repeat r of an experiment uses seed + r.
      out: folder for the PNG plots (None: no plots).
      progress: show tqdm progress bars.
      only: names of the experiments to run (keys of ``CLAIMS``); default all.
      json_path: also write the results (numbers, tables, verdicts) to this JSON file.

    Returns: the list of result dicts.
    """
    names = list(CLAIMS) if not only else list(only)
    unknown = [n for n in names if n not in CLAIMS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {', '.join(unknown)}; known: {', '.join(CLAIMS)}")
    cfg = config(quick=quick, seed=seed, progress=progress)
    start = time.perf_counter()
    print(f"jloss demo ({'quick' if quick else 'full'}, seed {seed}) on {jax.devices()[0].platform.upper()}, "
          f"JAX {jax.__version__}", file=file)
    if only is None or not only:
        print("\nWhich loss? (jloss.recommend)", file=file)
        print(format_table(["situation", "loss", "activation", "options"], guide_rows()), file=file)
    results = []
    for name in names:
        t0 = time.perf_counter()
        res = CLAIMS[name](cfg, out=out)
        res["seconds"] = time.perf_counter() - t0
        print_result(res, file=file)
        results.append(res)
    print("\n== summary", file=file)
    print(format_table(["claim", "verdict", "measured"], summary_rows(results)), file=file)
    print(f"\n{len(results)} experiments in {time.perf_counter() - start:.0f} s"
          + (f"; plots in {out}" if out else ""), file=file)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(to_json(results), f, indent=1)
    return results

"""Many small training runs as one compiled program, and the bookkeeping of their results.

The demo's experiments train many small models: every seed, and every value
of a setting (label smoothing, pos_weight, learning rate, even the loss,
chosen per run by a one-hot in the batch). :func:`train` runs them as one
program, ``jax.vmap`` over the runs of a ``lax.scan`` over the steps of the
public :func:`jloss.make_train_step`, compiled once for all of them: on a
2-core CPU compiling costs more than training these models. (:func:`jloss.fit`
is the loop for one model: it trains one state, one dispatched step at a time.)

Several losses, one program: a run trains on ``sum_i c_i * loss_i`` with a
one-hot ``c`` from its batch, i.e. on exactly one of the losses, so runs with
different losses share one compiled program. Runs are laid out variant-major:
:func:`tile` repeats the runs of every variant, :func:`per_variant` gives each
run its variant's value and :func:`variant_runs` selects one variant's runs.
"""

import jax
import jax.numpy as jnp
import numpy as np

import jloss


def batch_indices(rng, n, batch_size, steps):
    """(steps, batch_size) example indices: shuffled epochs, concatenated."""
    epochs = -(-steps * batch_size // n)
    order = np.concatenate([rng.permutation(n) for _ in range(epochs)])
    return order[: steps * batch_size].reshape(steps, batch_size).astype(np.int32)


def train(loss_fn, tx, params, data, steps, *, batch_size=None, hparams=None, lrs=None, evaluate=None,
          test=None, bar=None, seed=0, chunks=10):
    """Train R runs at once (a leading axis of length R on every input) with :func:`jloss.make_train_step`.

    ``data`` (R, N, ...) arrays are sampled in minibatches of ``batch_size``
    (whole batch when None); ``hparams`` (R,) values are added to every batch
    unchanged (a per-run label smoothing, pos_weight, ...); ``lrs`` (R,) sets
    the optimizer's learning rate per run (:func:`jloss.set_learning_rate`).
    ``evaluate(params, test)`` runs after every step. Steps run in ``chunks``
    jitted ``lax.scan`` calls (one compilation), updating the progress ``bar``
    after each.

    Returns ``(params, losses (R, steps), evals (R, steps) or None)``.
    """
    hparams = {} if hparams is None else hparams
    runs = len(jax.tree_util.tree_leaves(params)[0])
    n = len(jax.tree_util.tree_leaves(data)[0][0])
    rng = np.random.default_rng(seed)
    full = batch_size is None or batch_size >= n
    # xs of the scan: minibatch indices (R, steps, B), or just the step number for full batches
    idx = (np.zeros((runs, steps), np.int32) if full else
           np.stack([batch_indices(rng, n, batch_size, steps) for _ in range(runs)]))
    step = jloss.make_train_step(loss_fn)
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
        state = jloss.TrainState.create(params=p, tx=tx)
        if lr is not None:
            state = state.replace(opt_state=jloss.set_learning_rate(state.opt_state, lr))
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


def progress_bar(cfg, desc, total):
    """A tqdm bar of ``total`` steps (hidden without ``cfg.progress``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=not cfg.progress, leave=False,
                dynamic_ncols=True)


def tile(tree, k):
    """k copies of every run, stacked along the run axis (variant-major)."""
    return jax.tree.map(lambda a: np.concatenate([a] * k), tree)


def per_variant(values, repeats, dtype=np.float32):
    """One value (or row) per variant -> one per run, matching :func:`tile`."""
    return np.repeat(np.asarray(values, dtype), repeats, axis=0)


def variant_runs(g, repeats):
    """The runs of variant ``g`` (a slice of the run axis)."""
    return slice(g * repeats, (g + 1) * repeats)


def first_step_at(scores, threshold):
    """1-based step at which ``scores`` first reaches ``threshold``, or None."""
    hit = np.flatnonzero(scores >= threshold)
    return int(hit[0]) + 1 if hit.size else None


def median_steps(steps_list, budget):
    """Median over repeats, counting "never" as budget + 1 (so a median of them reads ">budget")."""
    values = [budget + 1 if s is None else s for s in steps_list]
    med = float(np.median(values))
    return None if med > budget else med


def steps_label(steps, budget):
    """``steps`` as text, ``>budget`` for None (never reached)."""
    return f">{budget}" if steps is None else f"{steps:g}"

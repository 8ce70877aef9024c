"""Flax models (NNX and Linen) trained with jloss losses and make_train_step."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jloss

flax = pytest.importorskip("flax")
from flax import linen, nnx  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 4)).astype(np.float32)
LABELS = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(np.int32) + (X[:, 3] > 1).astype(np.int32)  # 3 classes


class NNXMLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(4, 16, rngs=rngs)
        self.out = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


class LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.Dense(3)(jax.nn.relu(linen.Dense(16)(x)))


def train(step, state, n_steps=30):
    losses = []
    for _ in range(n_steps):
        state, metrics = step(state, (X, LABELS))
        jax.block_until_ready(state)
        losses.append(float(metrics["loss"]))
    return state, losses


def test_nnx_model():
    model = NNXMLP(nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # params: a pytree of arrays

    def loss_fn(params, batch):
        x, y = batch
        logits = nnx.merge(graphdef, params, rest)(x)
        loss = jloss.sparse_categorical_cross_entropy(logits, y)
        return loss, {"accuracy": jloss.metrics.accuracy(logits, y)}

    state = jloss.TrainState.create(params=params, tx=jloss.optimizer("adam", 0.02))
    state, losses = train(jloss.make_train_step(loss_fn, has_aux=True), state)
    assert losses[-1] < 0.6 * losses[0]
    trained = nnx.merge(graphdef, state.params, rest)  # back to a module
    logits = trained(X)
    assert float(jloss.sparse_categorical_cross_entropy(logits, LABELS)) == pytest.approx(
        float(loss_fn(state.params, (X, LABELS))[0]), rel=1e-5)
    assert float(jloss.metrics.accuracy(logits, LABELS)) > 0.7


def test_linen_model_with_fit():
    model = LinenMLP()
    params = model.init(jax.random.key(0), jnp.zeros((1, 4)))["params"]

    def loss_fn(params, batch):
        x, y = batch
        logits = model.apply({"params": params}, x)
        return jloss.sparse_categorical_cross_entropy(logits, y, label_smoothing=0.05)

    def eval_fn(params, batch):
        logits = model.apply({"params": params}, batch[0])
        return {"loss": jloss.sparse_categorical_cross_entropy(logits, batch[1]),
                "accuracy": jloss.metrics.accuracy(logits, batch[1])}

    state = jloss.TrainState.create(params=params, tx=jloss.optimizer("adamw", 0.02, weight_decay=1e-4))
    state, history = jloss.fit(state, jloss.make_train_step(loss_fn), (X, LABELS), epochs=8, batch_size=16,
                               key=0, eval_data=(X, LABELS), eval_fn=eval_fn, progress=False)
    val = history.epoch_values("val_loss")
    assert val[-1] < 0.6 * val[0]
    assert history.epochs[-1]["val_accuracy"] > 0.7


# --------------------------------------------------------------------------- stateful models
# BatchNorm statistics (model_state) and dropout (rng), on one device, over the mesh and under
# pmap on 4 devices, each against SGD written by hand with the keys the step is documented to use.

N_DEV = 4
SEED = 7
LR = 0.2
SGD = jloss.optimizer("sgd", LR)  # one optimizer: it is static data of the state, so steps compile once
DATA = [(X[i:i + 16], LABELS[i:i + 16]) for i in (0, 16, 32)]  # 3 steps of 16 examples


class LinenNet(linen.Module):
    @linen.compact
    def __call__(self, x, train):
        x = linen.BatchNorm(use_running_average=not train, momentum=0.8)(linen.Dense(16)(x))
        return linen.Dense(3)(linen.Dropout(0.3, deterministic=not train)(jax.nn.relu(x)))


LINEN = LinenNet()
LINEN_VARS = LINEN.init(jax.random.key(0), X[:2], train=False)


def linen_loss(params, batch, batch_stats, rng):
    x, y = batch
    logits, updates = LINEN.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                  rngs={"dropout": rng}, mutable=["batch_stats"])
    return jloss.sparse_categorical_cross_entropy(logits, y), updates["batch_stats"]


class NNXNet(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(4, 16, rngs=rngs)
        self.norm = nnx.BatchNorm(16, momentum=0.8, rngs=rngs)
        self.drop = nnx.Dropout(0.3, rngs=rngs)  # its RNG stream (a key and a counter) is model state
        self.out = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x, rngs=None):
        return self.out(self.drop(jax.nn.relu(self.norm(self.hidden(x))), rngs=rngs))


NNX_GRAPH, NNX_PARAMS, NNX_REST = nnx.split(NNXNet(nnx.Rngs(0)), nnx.Param, ...)


def nnx_loss(params, batch, rest, rng, copy=True):
    x, y = batch
    model = nnx.merge(NNX_GRAPH, params, rest, copy=copy)  # copy: variables of this trace, mutable here
    logits = model(x, rngs=rng)  # the step's key drives dropout
    loss = jloss.sparse_categorical_cross_entropy(logits, y)
    return loss, (nnx.split(model, nnx.Param, ...)[2], {"accuracy": jloss.metrics.accuracy(logits, y)})


MODELS = {"linen": (linen_loss, False, LINEN_VARS["params"], LINEN_VARS["batch_stats"]),
          "nnx": (nnx_loss, True, NNX_PARAMS, NNX_REST)}


@functools.cache
def by_hand(name, n_dev=None):
    """SGD over DATA with the step's keys; under pmap (n_dev) a key per device and averaged results."""
    loss_fn, has_aux, params, model_state = MODELS[name]
    vg = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    rng, losses = jax.random.key(SEED), []
    for batch in DATA:
        rng, key = jax.random.split(rng)
        if n_dev is None:
            outs = [vg(params, batch, model_state, key)]
        else:
            shards = [jax.tree.map(lambda x, d=d: x.reshape(n_dev, -1, *x.shape[1:])[d], batch)
                      for d in range(n_dev)]
            outs = [vg(params, shard, model_state, jax.random.fold_in(key, d))
                    for d, shard in enumerate(shards)]
        # floats averaged over devices, counters and keys from device 0 (as the step documents)
        (loss, new_state), grads = jax.tree.map(
            lambda *xs: jnp.mean(jnp.stack(xs), 0) if jnp.issubdtype(xs[0].dtype, jnp.floating) else xs[0],
            *outs)
        model_state = new_state[0] if has_aux else new_state
        params = jax.tree.map(lambda p, g: p - LR * g, params, grads)
        losses.append(float(loss))
    return params, model_state, losses


def run_step(step, state, parallel):
    if parallel == "pmap":
        state = jloss.replicate(state)
    losses = []
    for batch in DATA:
        state, m = step(state, jloss.shard_batch(batch) if parallel == "pmap" else batch)
        jax.block_until_ready(state)
        losses.append(float(np.ravel(m["loss"])[0]))
    return (jloss.unreplicate(state) if parallel == "pmap" else state), losses


def assert_close(a, b, atol=1e-5):
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


@functools.cache
def stateful_step(name, parallel):
    return jloss.make_train_step(MODELS[name][0], has_aux=MODELS[name][1], parallel=parallel)


def fresh_state(name, rng=SEED):
    _, _, params, model_state = MODELS[name]
    return jloss.TrainState.create(params=params, tx=SGD, model_state=model_state, rng=rng)


@pytest.mark.parametrize("name", MODELS)
def test_stateful_model_on_every_path_equals_sgd_by_hand(name):
    model_state = MODELS[name][3]
    for parallel in (None, "mesh", "pmap"):
        out, losses = run_step(stateful_step(name, parallel), fresh_state(name), parallel)
        ref_params, ref_state, ref_losses = by_hand(name, N_DEV if parallel == "pmap" else None)
        assert_close(out.params, ref_params)
        assert_close(out.model_state, ref_state)  # batch statistics moved as by hand
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
        assert int(out.step) == 3
        rng = jax.random.key(SEED)
        for _ in DATA:
            rng = jax.random.split(rng)[0]
        assert_close(out.rng, rng, atol=0)
    running_var = jax.tree_util.tree_leaves(ref_state)[-1]
    assert float(jnp.max(jnp.abs(running_var - jax.tree_util.tree_leaves(model_state)[-1]))) > 1e-3


def test_dropout_differs_per_step_and_is_reproducible_from_the_seed():
    step = stateful_step("linen", None)
    a, ma = step(fresh_state("linen"), DATA[0])
    b, _ = step(fresh_state("linen", jax.random.key(SEED)), DATA[0])
    assert_close(a, b, atol=0)  # the same seed: the same dropout
    _, mc = step(fresh_state("linen").replace(rng=a.rng), DATA[0])  # the same params and batch, the next key
    assert abs(float(mc["loss"]) - float(ma["loss"])) > 1e-4


def test_stateful_state_round_trips_a_checkpoint(tmp_path):
    pytest.importorskip("orbax.checkpoint")
    saved, _ = stateful_step("nnx", None)(fresh_state("nnx"), DATA[0])
    jloss.save_checkpoint(tmp_path, saved)
    restored = jloss.restore_checkpoint(tmp_path, fresh_state("nnx"))
    assert_close(restored, saved, atol=0)
    assert int(restored.step) == 1
    # the step hands loss_fn a model state of its own trace: nnx.merge works without copy=True too
    uncopied, _ = jloss.make_train_step(functools.partial(nnx_loss, copy=False), has_aux=True)(
        fresh_state("nnx"), DATA[0])
    assert_close(uncopied, saved, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_fit_trains_a_stateful_model_on_every_path_and_resumes_bitwise(name, tmp_path):
    """fit over DATA (one epoch of 3 batches, no shuffling) equals SGD by hand on one device, over
    the mesh and under pmap; stopped after the first batches, checkpointed, restored and resumed,
    it ends bitwise where the uninterrupted run ends."""
    pytest.importorskip("orbax.checkpoint")
    for parallel in (None, "mesh", "pmap"):
        step = stateful_step(name, parallel)
        start = jloss.replicate(fresh_state(name)) if parallel == "pmap" else fresh_state(name)
        out, history = jloss.fit(start, step, DATA, epochs=1, progress=False)
        jax.block_until_ready(out)
        out = jloss.unreplicate(out) if parallel == "pmap" else out
        ref_params, ref_state, ref_losses = by_hand(name, N_DEV if parallel == "pmap" else None)
        assert_close(out.params, ref_params)
        assert_close(out.model_state, ref_state)
        np.testing.assert_allclose([r["loss"] for r in history.steps], ref_losses, rtol=1e-5)
    # resume: two batches, a checkpoint, then the last batch from the restored state
    step = stateful_step(name, None)
    whole, _ = jloss.fit(fresh_state(name), step, DATA, epochs=1, progress=False)
    first, _ = jloss.fit(fresh_state(name), step, DATA[:2], epochs=1, progress=False)
    jloss.save_checkpoint(tmp_path, first)
    restored = jloss.restore_checkpoint(tmp_path, fresh_state(name))
    resumed, _ = jloss.fit(restored, step, DATA[2:], epochs=1, progress=False)
    assert_close(resumed, whole, atol=0)

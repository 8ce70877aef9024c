"""Flax models (NNX and Linen) trained with jloss losses and make_train_step."""

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

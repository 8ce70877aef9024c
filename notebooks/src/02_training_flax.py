# %% [markdown]
# # Training a Flax model with `make_train_step`
#
# A small Flax network on the scikit-learn digits (8×8 images, 10 classes), trained with a
# jloss loss and `jloss.make_train_step`. Then the same step four more ways:
#
# 1. one device, with `jloss.fit` (epochs, evaluation, early stopping, a progress bar);
# 2. per-example gradients with `jax.vmap` (`jloss.per_example_grads`), and DP-SGD;
# 3. data parallel over 4 devices with `jax.pmap`;
# 4. data parallel over a device mesh (`jax.jit` with shardings), JAX's main path;
# 5. checkpoint and resume with orbax;
# 6. a Flax NNX model with state (BatchNorm, Dropout).
#
# The first cell asks XLA for 4 CPU devices. That must happen **before jax is imported**,
# so run the notebook from the top (after a restart if jax was already imported).
# %% [install] extras=flax,train,plot,demo
import os

# 4 CPU devices for the data-parallel sections; set before jax is imported. On a Colab
# GPU or TPU runtime, delete both lines to run the same code on the accelerators.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=4").strip()
os.environ["JAX_PLATFORMS"] = "cpu"
# %%
import tempfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import jloss

print(jax.device_count(), "devices:", jax.devices())

# %% [markdown]
# ## Data and model
#
# Batches are dicts of arrays (any pytree works). The model is a Flax `linen` MLP; its
# parameters are a plain pytree, so `loss_fn(params, batch)` is a pure function, which is
# all `make_train_step` needs. With `has_aux=True` the loss function also returns metrics.
# %%
digits = load_digits()
x = (digits.data / 16.0).astype(np.float32)
y = digits.target.astype(np.int32)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=360, stratify=y, random_state=0)
train_data = {"x": x_train, "y": y_train}
test_data = {"x": x_test, "y": y_test}
print("train", x_train.shape, "test", x_test.shape)


class MLP(nn.Module):
    hidden: int = 128
    classes: int = 10

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.classes)(x)


model = MLP()
params = model.init(jax.random.key(0), jnp.zeros((1, 64)))["params"]
print(jax.tree.map(jnp.shape, params))


def loss_fn(params, batch):
    logits = model.apply({"params": params}, batch["x"])
    loss = jloss.sparse_categorical_cross_entropy(logits, batch["y"], label_smoothing=0.1)
    return loss, {"accuracy": jloss.metrics.accuracy(logits, batch["y"])}


def eval_fn(params, batch):
    loss, aux = loss_fn(params, batch)
    return {"loss": loss, **aux}

# %% [markdown]
# ## 1. One device, with `jloss.fit`
#
# `jloss.optimizer` builds an optax optimizer by name (here Adam with a warm-up and cosine
# decay); `TrainState` holds the step, the parameters and the optimizer state;
# `make_train_step` returns a jitted `step(state, batch) -> (state, metrics)`.
# `jloss.fit` runs epochs of it with shuffling and evaluates after every epoch.
# %%
EPOCHS, BATCH = 8, 64
steps_per_epoch = len(y_train) // BATCH
tx = jloss.optimizer("adam", 3e-3, schedule="warmup_cosine", warmup_steps=20,
                     decay_steps=EPOCHS * steps_per_epoch)
state = jloss.TrainState.create(params=params, tx=tx)
train_step = jloss.make_train_step(loss_fn, has_aux=True)

state, history = jloss.fit(state, train_step, train_data, epochs=EPOCHS, batch_size=BATCH, key=0,
                           eval_data=test_data, eval_fn=eval_fn, monitor="val_accuracy", mode="max")
print(f"test accuracy {history.epochs[-1]['val_accuracy']:.3f}")

# %%
fig, ax = plt.subplots(figsize=(6, 4))
jloss.plot_history(history, ax=ax)
plt.show()

# %% [markdown]
# ## 2. Per-example gradients with `vmap`
#
# `jloss.per_example_grads(loss_fn)` is `vmap(grad(loss_fn))` over the examples: every leaf
# of the result has a leading batch axis. Their norms show which examples the model is still
# learning from: mostly the misclassified ones.
# %%
batch = jax.tree.map(jnp.asarray, test_data)
grads, aux = jloss.per_example_grads(loss_fn, has_aux=True)(state.params, batch)
print("kernel of the first layer:", params["Dense_0"]["kernel"].shape,
      "-> per example:", grads["Dense_0"]["kernel"].shape)
norms = np.asarray(jax.vmap(optax.global_norm)(grads))
wrong = np.asarray(aux["accuracy"]) == 0
print(f"{wrong.sum()} misclassified; mean gradient norm {norms[wrong].mean():.3f} for those, "
      f"{norms[~wrong].mean():.3f} for the rest")

# %%
predicted = np.asarray(jnp.argmax(model.apply({"params": state.params}, batch["x"]), -1))
hardest = np.argsort(norms)[::-1][:6]
fig, axes = plt.subplots(1, 6, figsize=(9, 2))
for ax, i in zip(axes, hardest, strict=True):
    ax.imshow(x_test[i].reshape(8, 8), cmap="gray_r")
    ax.set_title(f"label {y_test[i]}, said {predicted[i]}\n|g| = {norms[i]:.2f}", fontsize=8)
    ax.axis("off")
fig.suptitle("the six test examples with the largest gradients", fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# Per-example gradients are what differentially private SGD needs: clip each example's
# gradient, add Gaussian noise to the sum. `make_train_step` does both when given
# `dp_clip_norm` (and `dp_noise_multiplier` with a `dp_key`):
# %%
dp_step = jloss.make_train_step(loss_fn, has_aux=True, dp_clip_norm=1.0, dp_noise_multiplier=0.5,
                                dp_key=jax.random.key(42))
dp_state = jloss.TrainState.create(params=params, tx=jloss.optimizer("adam", 3e-3))
dp_state, dp_history = jloss.fit(dp_state, dp_step, train_data, epochs=EPOCHS, batch_size=BATCH, key=0,
                                 eval_data=test_data, eval_fn=eval_fn, progress=False)
print(f"DP-SGD test accuracy {dp_history.epochs[-1]['val_accuracy']:.3f} "
      f"(without privacy: {history.epochs[-1]['val_accuracy']:.3f})")

# %% [markdown]
# ## 3. Data parallel with `pmap`
#
# `parallel="pmap"` builds a `jax.pmap` step: each device computes the gradient of its
# shard of the batch and `lax.pmean` averages them, so every device applies the same update.
# The state is replicated (`jloss.replicate`, a leading device axis on every leaf) and each
# batch split (`jloss.shard_batch`, `(B, ...)` -> `(devices, B / devices, ...)`).
#
# To check that the parallel step computes the same update as one device, we train both
# with plain SGD on the same batches (Adam would hide a wrong gradient scale). On CPU we
# wait for each step (`jax.block_until_ready`): dispatching many collective steps ahead can
# stall the CPU backend.
# %%
n_devices = jax.local_device_count()
sgd_state = jloss.TrainState.create(params=params, tx=jloss.optimizer("sgd", 0.5))
batches = [jax.tree.map(lambda a, i=i: a[i * 128:(i + 1) * 128], train_data) for i in range(10)]

single_step = jloss.make_train_step(loss_fn, has_aux=True)
single = sgd_state
for b in batches:
    single, metrics = single_step(single, b)
    jax.block_until_ready(single)

pmap_step = jloss.make_train_step(loss_fn, has_aux=True, parallel="pmap")
replicated = jloss.replicate(sgd_state)
print("replicated kernel:", replicated.params["Dense_0"]["kernel"].shape, "on", n_devices, "devices")
for b in batches:
    replicated, pmetrics = pmap_step(replicated, jloss.shard_batch(b))
    jax.block_until_ready(replicated)
pmapped = jloss.unreplicate(replicated)


def max_difference(a, b):
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                                 strict=True))


print(f"loss of the last step: one device {float(metrics['loss']):.5f}, "
      f"pmap {float(pmetrics['loss'][0]):.5f}")
print(f"largest parameter difference after 10 steps: {max_difference(single.params, pmapped.params):.1e}")

# %% [markdown]
# ## 4. Data parallel over a mesh
#
# Since JAX 0.8 `pmap` runs on top of `jit` and `shard_map`, and the main path to many
# devices is one `jax.jit` program over a `jax.sharding.Mesh`: the batch is sharded along a
# `"data"` axis, the parameters are replicated, and XLA inserts the gradient all-reduce
# itself. No leading device axis, no replicate / unreplicate; the same code runs on several
# hosts after `jax.distributed.initialize()`.
# %%
mesh = jloss.data_mesh()  # all devices on one "data" axis
print(mesh)
mesh_step = jloss.make_train_step(loss_fn, has_aux=True, parallel="mesh", mesh=mesh)
meshed = sgd_state
for b in batches:
    meshed, metrics = mesh_step(meshed, b)
    jax.block_until_ready(meshed)
print("parameters are replicated:", meshed.params["Dense_0"]["kernel"].sharding)
print(f"largest parameter difference after 10 steps: {max_difference(single.params, meshed.params):.1e}")

# %% [markdown]
# `jloss.fit` takes any of the three steps (it splits the batches for a pmap step itself,
# and waits for every step). The model of section 1, trained on the mesh:
# %%
mesh_train_step = jloss.make_train_step(loss_fn, has_aux=True, parallel="mesh", mesh=mesh)
state = jloss.TrainState.create(params=params, tx=tx)
state, mesh_history = jloss.fit(state, mesh_train_step, train_data, epochs=EPOCHS, batch_size=BATCH,
                                key=0, eval_data=test_data, eval_fn=eval_fn, progress=False)
print(f"test accuracy {mesh_history.epochs[-1]['val_accuracy']:.3f} "
      f"(one device: {history.epochs[-1]['val_accuracy']:.3f})")

# %% [markdown]
# ## 5. Checkpoint and resume
#
# `jloss.save_checkpoint(directory, state)` writes the state's arrays with orbax under
# `directory/<step>`; `jloss.restore_checkpoint(directory, template)` reads the latest step
# back into the structure (and optimizer) of a template state. Training that stops, restores
# and continues ends exactly where uninterrupted training does.
# %%
tx = jloss.optimizer("adam", 3e-3)
start = jloss.TrainState.create(params=params, tx=tx)
first, rest = batches[:5], batches[5:]

uninterrupted = start
for b in first + rest:
    uninterrupted, _ = train_step(uninterrupted, b)

checkpoint_dir = tempfile.mkdtemp(prefix="jloss-")  # in Colab, a folder on Google Drive survives restarts
state = start
for b in first:
    state, _ = train_step(state, b)
print("saved step", jloss.save_checkpoint(checkpoint_dir, state), "in", checkpoint_dir)
del state  # ... the session ends ...

template = jloss.TrainState.create(params=params, tx=tx)  # same model and optimizer
resumed = jloss.restore_checkpoint(checkpoint_dir, template)
print("resumed at step", int(resumed.step))
for b in rest:
    resumed, _ = train_step(resumed, b)
print(f"step {int(resumed.step)}: largest difference from the uninterrupted run "
      f"{max_difference(resumed.params, uninterrupted.params):.1e}")

# %% [markdown]
# With `jloss.fit`, save after every epoch from `on_epoch_end` (a true return value stops
# training, so return nothing), and call `restore_checkpoint` before calling `fit` again:
#
# ```python
# def save(state, record):
#     jloss.save_checkpoint(checkpoint_dir, state)
#
# state, history = jloss.fit(state, train_step, train_data, epochs=8, batch_size=64, on_epoch_end=save)
# ```
# %% [markdown]
# ## 6. A model with state: Flax NNX with BatchNorm and Dropout
#
# BatchNorm's running statistics and Dropout's random stream are state that is not trained.
# `nnx.split(model, nnx.Param, ...)` separates the trained `nnx.Param`s from the rest; give
# the rest to `TrainState.create` as `model_state`, with an `rng` seed. The step then calls
# `loss_fn(params, batch, model_state, rng)` with a fresh key every step (for dropout), and
# expects `(loss, new_model_state)` back (`(loss, (new_model_state, metrics))` with
# `has_aux=True`). `fit` passes `model_state` to `eval_fn` as its last argument.
# %%
class NNXNet(nnx.Module):
    def __init__(self, rngs):
        self.dense = nnx.Linear(64, 128, rngs=rngs)
        self.norm = nnx.BatchNorm(128, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.out = nnx.Linear(128, 10, rngs=rngs)

    def __call__(self, x, rngs=None):  # rngs: the step's key, for dropout
        return self.out(self.drop(jax.nn.relu(self.norm(self.dense(x))), rngs=rngs))


graphdef, nnx_params, rest = nnx.split(NNXNet(nnx.Rngs(0)), nnx.Param, ...)


def nnx_loss_fn(params, batch, model_state, rng):
    model = nnx.merge(graphdef, params, model_state, copy=True)  # training mode: batch statistics, dropout
    logits = model(batch["x"], rngs=rng)
    loss = jloss.sparse_categorical_cross_entropy(logits, batch["y"])
    new_model_state = nnx.split(model, nnx.Param, ...)[2]  # the updated running statistics
    return loss, (new_model_state, {"accuracy": jloss.metrics.accuracy(logits, batch["y"])})


def nnx_eval_fn(params, batch, model_state):
    model = nnx.merge(graphdef, params, model_state, copy=True)
    model.eval()  # running statistics, no dropout
    return {"accuracy": jloss.metrics.accuracy(model(batch["x"]), batch["y"])}


NNX_EPOCHS = 4
nnx_state = jloss.TrainState.create(params=nnx_params, tx=jloss.optimizer("adam", 3e-3),
                                    model_state=rest, rng=0)
nnx_state, nnx_history = jloss.fit(nnx_state, jloss.make_train_step(nnx_loss_fn, has_aux=True), train_data,
                                   epochs=NNX_EPOCHS, batch_size=BATCH, key=0, eval_data=test_data,
                                   eval_fn=nnx_eval_fn, progress=False)
print("val accuracy per epoch:", [round(r["val_accuracy"], 3) for r in nnx_history.epochs])

# %% [markdown]
# After training, merge the parameters with the trained batch statistics into a module and
# switch it to evaluation mode:
# %%
trained = nnx.merge(graphdef, nnx_state.params, nnx_state.model_state)
trained.eval()
logits = trained(jnp.asarray(x_test))
print(f"NNX test accuracy {float(jloss.metrics.accuracy(logits, y_test)):.3f}")

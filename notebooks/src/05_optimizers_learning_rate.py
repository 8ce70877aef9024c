# %% [markdown]
# # Optimizers and the learning rate
#
# The loss says what to minimise; the optimizer and its learning rate decide whether and how
# fast training gets there. On one small problem this notebook compares SGD, momentum,
# Adam and RMSprop across learning rates, finds a learning rate with an LR range test
# (`jloss.lr_finder`), adds a schedule, and looks at the loss landscape around the trained
# parameters (`jloss.loss_landscape`).
# %% [install] extras=plot,demo
# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_moons

import jloss

# %% [markdown]
# ## The problem
#
# Two interleaved half-moons, a two-layer MLP with 32 hidden units, softmax cross-entropy.
# Training is full-batch and runs inside `jax.lax.scan`, so a whole run is one compiled
# program; `jax.vmap` runs it for many learning rates at once (jloss optimizers accept a
# traced learning rate).
# %%
x, y = make_moons(n_samples=512, noise=0.2, random_state=0)
batch = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.int32)}


def init(key, sizes=(2, 32, 32, 2)):
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"w": jax.random.normal(k, (a, b)) * np.sqrt(2 / a), "b": jnp.zeros(b)}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)]


def logits_of(params, x):
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss_fn(params, batch):
    return jloss.sparse_categorical_cross_entropy(logits_of(params, batch["x"]), batch["y"])


params0 = init(jax.random.key(0))
STEPS = 300


def train(name, learning_rate, steps=STEPS, params=params0, **options):
    """Full-batch training; returns the final state and the loss at every step."""
    state = jloss.TrainState.create(params=params, tx=jloss.optimizer(name, learning_rate, **options))
    step = jloss.make_train_step(loss_fn)
    state, metrics = jax.lax.scan(lambda s, _: step(s, batch), state, length=steps)
    return state, metrics["loss"]

# %% [markdown]
# ## Four optimizers across learning rates
#
# - **SGD**: `params -= lr * grad`.
# - **momentum** (`jloss.optimizer("sgd", lr, momentum=0.9)`): a running average of
#   gradients; moves faster along consistent directions and damps oscillation across a
#   valley. Its effective step is ~10× SGD's.
# - **RMSprop**: divides each coordinate's gradient by the root of its running mean square.
# - **Adam**: momentum and RMSprop's per-coordinate scaling together, with bias correction.
#
# Each is trained for 300 steps at 11 learning rates from 1e-4 to 10.
# %%
OPTIMIZERS = {  # label: (jloss.optimizer name, options)
    "sgd": ("sgd", {}),
    "momentum": ("sgd", {"momentum": 0.9}),
    "rmsprop": ("rmsprop", {}),
    "adam": ("adam", {}),
}
lrs = jnp.logspace(-4, 1, 11)
final = {}
curves = {}
for name, (optimizer, options) in OPTIMIZERS.items():
    _, losses = jax.vmap(lambda lr, opt=optimizer, kw=options: train(opt, lr, **kw))(lrs)
    losses = np.asarray(losses)
    final[name] = np.where(np.isfinite(losses[:, -1]), losses[:, -1], np.nan)
    best = int(np.nanargmin(final[name]))
    curves[name] = (float(lrs[best]), losses[best])
    print(f"{name:9s} best learning rate {float(lrs[best]):.2g}: final loss {final[name][best]:.4f}")

# %%
fig, (ax_lr, ax_curve) = plt.subplots(1, 2, figsize=(10, 3.8))
for name in OPTIMIZERS:
    ax_lr.loglog(lrs, final[name], "o-", ms=3, label=name)
    lr, losses = curves[name]
    ax_curve.semilogy(losses, label=f"{name}, lr={lr:.2g}")
ax_lr.axhline(np.log(2), c="0.6", ls=":", label="chance (log 2)")
ax_lr.set(xlabel="learning rate", ylabel=f"loss after {STEPS} steps",
          title="sensitivity to the learning rate")
ax_curve.set(xlabel="step", ylabel="loss", title="each at its best learning rate")
ax_lr.legend(fontsize=8)
ax_curve.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Each optimizer has a range of good learning rates, bounded below by slow progress and
# above by instability: past it the loss shoots up (a missing point would mean NaN). The
# adaptive methods' good range sits at much smaller rates than SGD's, because their steps
# are normalised to about `lr` per coordinate whatever the size of the gradient; momentum's
# sits below SGD's (its steps add up to as much as 10 gradient steps) and it blows up
# sooner. The best rate of one optimizer says little about another's.
#
# ## Finding the learning rate: the LR range test
#
# `jloss.lr_finder` (Smith, 2017) trains for a few dozen steps while raising the learning
# rate exponentially, records the loss, and stops when it diverges. The suggestion is the
# rate where the (smoothed) loss falls fastest. It costs one short run instead of a sweep.
# Test the optimizer you will train with: here Adam, named, as we pass bare parameters
# (they default to SGD; a `TrainState` built with `jloss.optimizer` is tested with its own).
# %%
finder = jloss.lr_finder(loss_fn, params0, batch, optimizer="adam", min_lr=1e-5, max_lr=10.0, num_steps=80)
print(f"suggested learning rate {finder.suggested_lr:.2g}; the smoothed loss is lowest at "
      f"{finder.min_loss_lr:.2g} (a tenth of that: {finder.min_loss_lr / 10:.2g}); "
      f"diverged: {finder.diverged}")
fig, ax = plt.subplots(figsize=(6, 4))
finder.plot(ax)
plt.show()

# %% [markdown]
# Training with the suggestion, with the other common rule (a tenth of the rate at the
# minimum), and with the best rate of the sweep above:
# %%
candidates = {"suggested (steepest)": finder.suggested_lr, "minimum / 10": finder.min_loss_lr / 10,
              "best of the sweep": curves["adam"][0]}
fig, ax = plt.subplots(figsize=(6, 4))
for label, lr in candidates.items():
    _, losses = train("adam", lr)
    ax.semilogy(losses, label=f"{label}: lr = {lr:.2g}")
    print(f"{label:22s} lr {lr:.2g}: final loss {float(losses[-1]):.4f}")
ax.set(xlabel="step", ylabel="loss", title="adam")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The range test is a quick and conservative first guess: one short run instead of a sweep
# of full ones, and a rate that trains, though on this problem both rules land below the
# sweep's best. Use it to find the order of magnitude, then try a few rates up from there.
#
# ## Schedules
#
# A constant rate that is fast at the start is often too large near the end. A warm-up
# followed by cosine decay (`schedule="warmup_cosine"`) starts gently, trains at the peak
# rate, and anneals. The train step reports the rate it used in `metrics["learning_rate"]`.
# %%
peak = 2 * curves["adam"][0]  # twice the best constant rate
runs = {"constant": {}, "warmup_cosine": {"schedule": "warmup_cosine", "warmup_steps": 30,
                                          "decay_steps": STEPS}}
fig, (ax_lr, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.5))
for label, options in runs.items():
    state = jloss.TrainState.create(params=params0, tx=jloss.optimizer("adam", peak, **options))
    step = jloss.make_train_step(loss_fn)
    state, metrics = jax.lax.scan(lambda s, _, step=step: step(s, batch), state, length=STEPS)
    ax_lr.plot(metrics["learning_rate"], label=label)
    ax_loss.semilogy(metrics["loss"], label=label)
    print(f"{label:14s} final loss {float(metrics['loss'][-1]):.4f}")
ax_lr.set(xlabel="step", ylabel="learning rate")
ax_loss.set(xlabel="step", ylabel="loss")
ax_loss.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The loss landscape
#
# `jloss.loss_landscape` evaluates the loss at `params + a·d1 (+ b·d2)` for random
# directions `d` scaled filter by filter to the size of the weights (Li et al., 2018), so
# that landscapes of different solutions can be compared. Here: where SGD and Adam end up,
# each trained at its best learning rate from the sweep.
# %%
trained = {name: train(name, curves[name][0])[0] for name in ("sgd", "adam")}
fig, (ax_1d, ax_2d) = plt.subplots(1, 2, figsize=(10, 3.8))
for name, state in trained.items():
    curve = jloss.loss_landscape(loss_fn, state.params, batch, key=0, dims=1, span=1.0, num=41)
    curve.plot(ax_1d, label=f"{name}, lr={curves[name][0]:.2g}")
surface = jloss.loss_landscape(loss_fn, trained["adam"].params, batch, key=0, dims=2, span=1.0, num=21)
surface.plot(ax_2d, log=True, title="adam: two random directions")
ax_1d.set(yscale="log", title="one random direction")
fig.tight_layout()
plt.show()

# %% [markdown]
# The height at 0 is where each run stopped; the width of the valley shows how far the
# parameters can move, relative to their own size, before the loss rises. A wide, flat
# minimum is less sensitive to the exact parameters (and is often said to generalise
# better); a single random direction is only a glimpse, so compare a few keys before
# drawing conclusions.
#
# **Summary.** Adam (or AdamW) is the forgiving default: good over the widest range of
# rates. Use `lr_finder` for the order of magnitude, try a few rates up from its suggestion,
# add a warm-up and a decay, and tune SGD with momentum if you have the time: at its best
# rate it is as good here. Never carry a learning rate from one optimizer to another.

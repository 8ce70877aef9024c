# %% [markdown]
# # Large vocabularies: `linear_cross_entropy`
#
# The last layer of a language model projects each token's hidden state `(D,)` onto the
# vocabulary `(V,)`, and the loss is a softmax cross-entropy over those V logits. For
# N tokens the logits are an `(N, V)` array: 8,192 tokens × a 128k vocabulary is 4 GiB in
# float32, and the backward pass needs another array of that size for their gradient.
# Often that is the largest activation of the whole model.
#
# `jloss.linear_cross_entropy(hidden, weight, labels)` computes the same loss and the same
# gradients without ever holding the logits: it walks the vocabulary in blocks, keeps a
# running logsumexp, and recomputes each block's logits in the backward pass. This
# notebook checks that it is exact, and measures memory and time against the materialised
# path `sparse_categorical_cross_entropy(hidden @ weight, labels)`.
# %% [install] extras=plot
# %%
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jloss


def materialised(hidden, weight, labels, **options):
    """The textbook path: build the (N, V) logits, then the cross-entropy."""
    return jloss.sparse_categorical_cross_entropy(hidden @ weight, labels, **options)


def fused(hidden, weight, labels, **options):
    return jloss.linear_cross_entropy(hidden, weight, labels, **options)


def problem(n, d, v, seed=0):
    k_h, k_w, k_y = jax.random.split(jax.random.key(seed), 3)
    hidden = jax.random.normal(k_h, (n, d))
    weight = jax.random.normal(k_w, (d, v)) / np.sqrt(d)
    labels = jax.random.randint(k_y, (n,), 0, v)
    return hidden, weight, labels

# %% [markdown]
# ## Same value, same gradients
#
# `weight` has the Flax `Dense` kernel layout `(D, V)`. Both the value and the gradients
# with respect to `hidden` and `weight` agree with the materialised path to float32
# round-off, with every option (here label smoothing, z-loss and `ignore_index`):
# %%
hidden, weight, labels = problem(256, 64, 5000)
labels = labels.at[:10].set(-100)  # padding tokens
options = {"label_smoothing": 0.1, "z_loss": 1e-4, "ignore_index": -100}

results = {}
for name, loss in (("materialised", materialised), ("fused", fused)):
    results[name] = jax.value_and_grad(loss, argnums=(0, 1))(hidden, weight, labels, **options)
    value, (g_hidden, g_weight) = results[name]
    print(f"{name:13s} loss {float(value):.6f}  |d hidden| {float(jnp.linalg.norm(g_hidden)):.6f}  "
          f"|d weight| {float(jnp.linalg.norm(g_weight)):.6f}")

for what, a, b in zip(("hidden", "weight"), results["materialised"][1], results["fused"][1], strict=True):
    print(f"largest difference in d {what}: {float(jnp.max(jnp.abs(a - b))):.1e}")

# %% [markdown]
# ## Memory
#
# XLA reports how much scratch memory a compiled program needs
# (`jax.jit(f).lower(...).compile().memory_analysis()`). We compile the loss *and* its
# gradient (what a train step runs) for 1,024 tokens, D = 256, and vocabularies from 4k to
# 128k, without running them. The inputs and the gradient outputs (`hidden`, `weight`) are
# the same for both paths; the temporaries are where they differ.
# %%
def temp_bytes(loss, n, d, v):
    shapes = (jax.ShapeDtypeStruct((n, d), jnp.float32), jax.ShapeDtypeStruct((d, v), jnp.float32),
              jax.ShapeDtypeStruct((n,), jnp.int32))
    compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(*shapes).compile()
    return compiled.memory_analysis().temp_size_in_bytes


N, D = 1024, 256
vocabularies = [4096, 16384, 65536, 131072]
memory = {name: [temp_bytes(loss, N, D, v) / 2**20 for v in vocabularies]
          for name, loss in (("materialised", materialised), ("fused", fused))}
print(f"{'V':>7s} {'materialised':>13s} {'fused':>8s}   (MiB of temporaries; the logits are "
      f"N x V x 4 bytes)")
for i, v in enumerate(vocabularies):
    print(f"{v:7d} {memory['materialised'][i]:13.1f} {memory['fused'][i]:8.1f}   "
          f"logits {N * v * 4 / 2**20:.0f} MiB")

# %%
fig, ax = plt.subplots(figsize=(6, 4))
for name, values in memory.items():
    ax.loglog(vocabularies, values, "o-", label=name)
ax.set(xlabel="vocabulary size V", ylabel="temporary memory (MiB)",
       title=f"loss + gradient, N = {N} tokens, D = {D}")
ax.legend()
plt.show()

# %% [markdown]
# The materialised path grows linearly with V (twice the size of the `(N, V)` logits: the
# logits and their gradient); the fused one stays flat: its scratch is a few
# `(N, block_size)` tiles, whatever V is.
#
# ## Time
#
# The fused backward recomputes the logits, so it does four matrix products where the
# materialised path does three; in exchange it never writes and re-reads an `(N, V)` array,
# and works on tiles small enough to stay in cache. Which effect wins depends on the
# machine and the sizes, so measure: here, on whatever this notebook runs on (a small size,
# so that it runs fast).
# %%
def seconds(fn, *args, repeats=2):
    jax.block_until_ready(fn(*args))  # compile
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


hidden, weight, labels = problem(1024, 256, 8192)
print(f"N = 1024, D = 256, V = 8192 on {jax.devices()[0].platform}: value and gradient")
timings = {}
for name, loss in (("materialised", materialised), ("fused", fused)):
    timings[name] = seconds(jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), hidden, weight, labels)
    print(f"  {name:13s} {timings[name] * 1e3:7.1f} ms")
print(f"  fused / materialised: {timings['fused'] / timings['materialised']:.2f}")

# %% [markdown]
# ## The block size
#
# `block_size` (classes per block) sets the size of the tiles: the scratch memory grows with
# it, and so does the size of each matmul. On accelerators larger blocks tend to be faster;
# on a CPU, tiles that stay in cache can win. The default (`block_size=None`) keeps one
# `(N, block)` float32 tile within 4 MiB.
# %%
print(f"{'block':>6s} {'MiB':>6s} {'ms':>7s}")
for block in (256, 1024, 4096):
    loss = jax.jit(jax.value_and_grad(lambda h, w, y, b=block: fused(h, w, y, block_size=b), argnums=(0, 1)))
    mib = loss.lower(hidden, weight, labels).compile().memory_analysis().temp_size_in_bytes / 2**20
    print(f"{block:6d} {mib:6.1f} {seconds(loss, hidden, weight, labels) * 1e3:7.1f}")

# %% [markdown]
# ## In a model
#
# A tiny language model whose output layer is tied to its embedding table `(V, D)`: pass
# `table.T` as the weight. The loss function never builds the logits, and everything else
# (`make_train_step`, the optimizer) is as usual. The data are sequences of a hidden rule,
# `next = (5 * token + 3) mod V`, which the model learns to predict.
# %%
V, D, T, B = 2048, 64, 32, 16


def init(key):
    k_emb, k_mix = jax.random.split(key)
    return {"embed": jax.random.normal(k_emb, (V, D)) / np.sqrt(D),
            "mix": jnp.eye(D) + 0.01 * jax.random.normal(k_mix, (D, D))}


def lm_loss(params, batch):
    tokens = batch["tokens"]
    hidden = jnp.tanh(params["embed"][tokens[:, :-1]] @ params["mix"])  # (B, T - 1, D)
    return jloss.linear_cross_entropy(hidden, params["embed"].T, tokens[:, 1:], z_loss=1e-4)


def make_batches(count, seed=1):
    tokens = np.empty((count, B, T), np.int32)
    tokens[:, :, 0] = np.random.default_rng(seed).integers(0, V, (count, B))
    for t in range(1, T):
        tokens[:, :, t] = (5 * tokens[:, :, t - 1] + 3) % V
    return [{"tokens": batch} for batch in tokens]


state = jloss.TrainState.create(params=init(jax.random.key(0)), tx=jloss.optimizer("adam", 1e-2))
step = jloss.make_train_step(lm_loss)
batches = make_batches(120)
losses = []
for i in range(120):
    state, metrics = step(state, batches[i])
    losses.append(float(metrics["loss"]))
print(f"loss {losses[0]:.2f} -> {losses[-1]:.2f}   (log V = {np.log(V):.2f} is chance)")

fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(losses)
ax.set(xlabel="step", ylabel="loss", title="tiny LM with a fused, tied output layer")
plt.show()

# %% [markdown]
# **When to use it.** Whenever the logits are big compared with the rest of the
# activations: language models, recommendation over large catalogues, extreme
# classification. It takes the same options as the sparse cross-entropy (`ignore_index`,
# `label_smoothing`, `z_loss`, `weights`, `where`, `reduction`) plus `bias` and
# `logit_softcap` (Gemma 2's `c * tanh(x / c)`).

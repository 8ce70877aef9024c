# %% [markdown]
# # Post-training losses: DPO and distillation on the fused head
#
# After pre-training, language models are tuned with *preference* objectives (DPO, IPO,
# ORPO, SimPO, CPO, KTO) and small models are *distilled* from big ones. Written the usual
# way, each needs the model's full `(tokens, V)` logits. With jloss they do not:
#
# - the preference losses only need each sequence's log-probability:
#   `jloss.sequence_log_probs(jloss.linear_log_probs(hidden, weight, labels), mask)` sums the
#   per-token log-probabilities that the vocabulary-blocked head computes without logits;
# - distillation needs both models' full distributions, and
#   `jloss.linear_kl_divergence` / `jloss.linear_jensen_shannon` compare them block by block
#   over the vocabulary.
#
# This notebook checks both against the materialised computation, trains an output head with
# DPO on a synthetic preference set, and distils a small character model from a bigger one.
# (The scripts `examples/dpo_tiny.py` and `examples/distill_tiny.py` do the same on the tiny
# GPT of `examples/tiny_gpt.py`.)
# %% [install] extras=plot
# %%
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import jloss

# %% [markdown]
# ## The same DPO loss without the logits
#
# Two pairs of sequences (chosen, rejected) of 6 tokens, right-padded to different lengths.
# The fused path and the textbook path (`log_softmax(hidden @ weight)` gathered at the
# labels) give the same loss and the same gradients:
# %%
k_h, k_w, k_y = jax.random.split(jax.random.key(0), 3)
hidden = jax.random.normal(k_h, (4, 6, 16))  # (sequences, tokens, D); rows 0, 2 chosen
weight = jax.random.normal(k_w, (16, 1000)) / 4  # (D, V)
labels = jax.random.randint(k_y, (4, 6), 0, 1000)
mask = jnp.arange(6)[None, :] < jnp.array([6, 3, 5, 2])[:, None]
reference = jnp.array([-40.0, -21.0, -35.0, -14.0])  # a frozen reference model's log-probs


def dpo_loss(logp):
    return jloss.dpo(logp[0::2], logp[1::2], reference[0::2], reference[1::2], beta=0.1)


def fused(hidden, weight):
    return dpo_loss(jloss.sequence_log_probs(jloss.linear_log_probs(hidden, weight, labels), mask))


def materialised(hidden, weight):
    token = jnp.take_along_axis(jax.nn.log_softmax(hidden @ weight), labels[..., None], -1)[..., 0]
    return dpo_loss(jloss.sequence_log_probs(token, mask))


for name, fn in (("fused", fused), ("materialised", materialised)):
    value, (g_h, g_w) = jax.value_and_grad(fn, argnums=(0, 1))(hidden, weight)
    print(f"{name:13s} loss {float(value):.6f}  |d hidden| {float(jnp.linalg.norm(g_h)):.6f}  "
          f"|d weight| {float(jnp.linalg.norm(g_w)):.6f}")

# %% [markdown]
# ## DPO on a synthetic preference set
#
# Each pair shares a prompt of 4 random tokens. The *chosen* completion counts up from the
# last prompt token (`t+1, t+2, ...` modulo V); the *rejected* one is random. The body of the
# model is a frozen random network (token and position embeddings and one tanh layer); only
# its output head is trained, with the initial head as the DPO reference. The implicit
# reward margin `β((log π_c − log π_ref,c) − (log π_r − log π_ref,r))` on held-out pairs
# grows, and so does the share of pairs where the policy prefers the chosen completion.
# %%
VOCAB, PROMPT, COMPLETION, D = 32, 4, 8, 32
body = {"embed": jax.random.normal(jax.random.key(1), (VOCAB, D)),
        "pos": jax.random.normal(jax.random.key(2), (PROMPT + COMPLETION, D)),
        "mix": jax.random.normal(jax.random.key(3), (2 * D, D)) / np.sqrt(2 * D)}


def features(tokens):
    """Frozen hidden states: each position sees its token, its position and the previous token."""
    x = body["embed"][tokens] + body["pos"][: tokens.shape[-1]]
    prev = jnp.concatenate([jnp.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
    return jnp.tanh(jnp.concatenate([x, prev], -1) @ body["mix"])


def preference_pairs(key, n_pairs):
    k_prompt, k_reject, k_len = jax.random.split(key, 3)
    prompt = jax.random.randint(k_prompt, (n_pairs, PROMPT), 0, VOCAB)
    chosen = jnp.concatenate([prompt, (prompt[:, -1:] + jnp.arange(1, COMPLETION + 1)) % VOCAB], 1)
    rejected = jnp.concatenate([prompt, jax.random.randint(k_reject, (n_pairs, COMPLETION), 0, VOCAB)], 1)
    tokens = jnp.stack([chosen, rejected], 1).reshape(2 * n_pairs, -1)
    lengths = jnp.repeat(jax.random.randint(k_len, (n_pairs,), 4, COMPLETION + 1), 2)
    position = jnp.arange(1, PROMPT + COMPLETION)[None, :]  # the index of the predicted token
    mask = (position >= PROMPT) & (position < PROMPT + lengths[:, None])
    return features(tokens[:, :-1]), tokens[:, 1:], mask


def sequence_logps(head, hidden, labels, mask):
    return jloss.sequence_log_probs(
        jloss.linear_log_probs(hidden, head["weight"], labels, bias=head["bias"]), mask)


train_set, test_set = preference_pairs(jax.random.key(4), 64), preference_pairs(jax.random.key(5), 64)
head = {"weight": jax.random.normal(jax.random.key(6), (D, VOCAB)) / np.sqrt(D), "bias": jnp.zeros(VOCAB)}
ref_train, ref_test = sequence_logps(head, *train_set), sequence_logps(head, *test_set)
beta, tx = 0.1, optax.adam(0.01)
opt_state = tx.init(head)


@jax.jit
def dpo_step(head, opt_state):
    def loss_fn(head):
        logp = sequence_logps(head, *train_set)
        return jloss.dpo(logp[0::2], logp[1::2], ref_train[0::2], ref_train[1::2], beta=beta)

    loss, grads = jax.value_and_grad(loss_fn)(head)
    updates, opt_state = tx.update(grads, opt_state, head)
    return optax.apply_updates(head, updates), opt_state, loss


@jax.jit
def held_out(head):
    logp = sequence_logps(head, *test_set)
    margin = beta * jnp.mean((logp[0::2] - ref_test[0::2]) - (logp[1::2] - ref_test[1::2]))
    return margin, jnp.mean(logp[0::2] > logp[1::2])


start, margins = time.perf_counter(), []
for step in range(151):
    margin, accuracy = held_out(head)
    margins.append(float(margin))
    if step % 50 == 0:
        print(f"step {step:3d}  held-out reward margin {float(margin):+.3f}  "
              f"prefers chosen {float(accuracy):.0%}")
    head, opt_state, loss = dpo_step(head, opt_state)
print(f"{time.perf_counter() - start:.1f} s")

# %% [markdown]
# ## Distilling a small model from a bigger one
#
# A character model predicts the next character from the previous 6 through one hidden
# layer: the teacher has 128 hidden units, the student 12. The teacher is trained on a short
# text with `linear_cross_entropy`; the student never sees the labels, only the teacher's
# distribution over the whole vocabulary at every position, through
# `linear_kl_divergence(student_hidden, student_head, teacher_hidden, teacher_head)` with the
# teacher under `jax.lax.stop_gradient`. Its cross-entropy on the text approaches the
# teacher's as the KL falls.
# %%
TEXT = ("the quick brown fox jumps over the lazy dog while the cat sleeps by the warm fire. "
        "rain falls softly on the old stone roof of the quiet house by the sea, and far away a ship "
        "sounds its horn as it leaves the harbour for the long night crossing to the islands. ")
chars = sorted(set(TEXT))
data = jnp.asarray([chars.index(c) for c in TEXT])
V, CONTEXT = len(chars), 6
windows = jnp.stack([data[i: len(data) - CONTEXT + i] for i in range(CONTEXT + 1)], axis=1)
inputs, targets = windows[:, :-1], windows[:, -1]


def init(key, width):
    k1, k2, k3 = jax.random.split(key, 3)
    return {"embed": jax.random.normal(k1, (V, 8)), "w1": jax.random.normal(k2, (CONTEXT * 8, width)) * 0.2,
            "head": jax.random.normal(k3, (width, V)) * 0.1, "bias": jnp.zeros(V)}


def hidden_of(params, inputs):
    return jnp.tanh(params["embed"][inputs].reshape(len(inputs), -1) @ params["w1"])


def train(params, loss_fn, steps, lr=0.01):
    opt = optax.adam(lr)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    history = []
    for _ in range(steps):
        params, state, loss = step(params, state)
        history.append(float(loss))
    return params, history


def cross_entropy(params):
    return jloss.linear_cross_entropy(hidden_of(params, inputs), params["head"], targets, bias=params["bias"])


teacher, _ = train(init(jax.random.key(7), 128), cross_entropy, 300)


def distillation(student):
    t_hidden = jax.lax.stop_gradient(hidden_of(teacher, inputs))
    t_head, t_bias = jax.lax.stop_gradient((teacher["head"], teacher["bias"]))
    return jloss.linear_kl_divergence(hidden_of(student, inputs), student["head"], t_hidden, t_head,
                                      student_bias=student["bias"], teacher_bias=t_bias)


student, student_ce, kls = init(jax.random.key(8), 12), [], []
for _ in range(6):
    student_ce.append(float(cross_entropy(student)))
    kls.append(float(distillation(student)))
    student, _ = train(student, distillation, 50, lr=0.01)
student_ce.append(float(cross_entropy(student)))
kls.append(float(distillation(student)))
teacher_ce = float(cross_entropy(teacher))
print(f"teacher cross-entropy {teacher_ce:.3f}")
for i, (ce, kl) in enumerate(zip(student_ce, kls, strict=True)):
    print(f"student after {50 * i:3d} steps: KL {kl:.3f}  cross-entropy {ce:.3f}")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3))
ax1.plot(margins)
ax1.set(xlabel="DPO step", ylabel="held-out reward margin", title="DPO: chosen - rejected")
steps = 50 * np.arange(len(student_ce))
ax2.plot(steps, student_ce, marker="o", label="student")
ax2.axhline(teacher_ce, color="k", linestyle="--", label="teacher")
ax2.set(xlabel="distillation step", ylabel="cross-entropy on the text", title="distillation")
ax2.legend()
fig.tight_layout()

# %% [markdown]
# ## Memory
#
# Compiled, not run: the scratch memory of one distillation gradient step (student gradients,
# teacher frozen) for 4,096 tokens, a 32k vocabulary and hidden sizes 256 / 512. The
# materialised path holds several `(tokens, V)` float32 arrays (512 MiB each); the fused one
# a few `(tokens, block)` tiles.
# %%
N, DS, DT, VOCAB_SIZE = 4096, 256, 512, 32768
specs = [jax.ShapeDtypeStruct(s, jnp.float32) for s in ((N, DS), (DS, VOCAB_SIZE), (N, DT), (DT, VOCAB_SIZE))]


def materialised_kl(hs, ws, ht, wt):
    return jloss.kl_divergence(hs @ ws, jax.nn.softmax(ht @ wt))


def scratch_mib(loss):
    def step(hs, ws, ht, wt):
        return jax.grad(loss, argnums=(0, 1))(hs, ws, jax.lax.stop_gradient(ht), jax.lax.stop_gradient(wt))
    return jax.jit(step).lower(*specs).compile().memory_analysis().temp_size_in_bytes / 2**20


fused_mib, dense_mib = scratch_mib(jloss.linear_kl_divergence), scratch_mib(materialised_kl)
print(f"fused {fused_mib:.0f} MiB, materialised {dense_mib:.0f} MiB: {fused_mib / dense_mib:.3f}x")

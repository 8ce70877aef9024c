"""Train a tiny character-level GPT with ``jloss.linear_cross_entropy``.

Pure JAX + optax: token and position embeddings, two pre-norm transformer
blocks (causal self-attention + MLP), and an output head tied to the token
embedding. The loss never builds the (batch, time, vocab) logits: the final
hidden states, the embedding table (as ``table.T``) and the next characters go
straight into ``jloss.linear_cross_entropy``. Trains for a few hundred steps on
the text below in well under a minute on two CPU cores, prints the loss
falling, then samples a line.

Run: python examples/tiny_gpt.py [--steps 400]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jloss

TEXT = """\
The sea was calm that morning, and the fishing boats left the harbour one by one.
The old captain stood at the end of the pier and watched them go, as he had done
for forty years. He knew every boat by the sound of its engine and every sailor
by the way he tied his knots. When the last boat had passed the lighthouse, he
turned and walked slowly back along the quay, past the nets drying in the sun and
the gulls quarrelling over the morning catch.

In the village the bakery was already open. The baker had been up since three,
and the smell of fresh bread drifted down the narrow streets to the water. The
children ran past on their way to school, their bags bouncing on their backs,
and the baker waved to them from the doorway with flour on his hands.

By noon the wind had turned. Clouds came in from the west, low and grey, and the
first drops of rain fell on the slate roofs. The captain sat by his window with a
cup of tea and looked out at the sea. He was not worried. The boats would come
home before the storm, as they always did, and the harbour would be full of
voices and lights again by the evening.
"""


def init_params(key, vocab, d_model=64, n_layers=2, context=64):
    keys = iter(jax.random.split(key, 4 + 4 * n_layers))

    def dense(k, n_in, n_out):
        return jax.random.normal(k, (n_in, n_out)) / np.sqrt(n_in)

    blocks = []
    for _ in range(n_layers):
        blocks.append({
            "ln1": jnp.ones(d_model), "ln2": jnp.ones(d_model),
            "qkv": dense(next(keys), d_model, 3 * d_model),
            "proj": dense(next(keys), d_model, d_model) / np.sqrt(2 * n_layers),
            "fc": dense(next(keys), d_model, 4 * d_model),
            "out": dense(next(keys), 4 * d_model, d_model) / np.sqrt(2 * n_layers),
        })
    return {
        "embed": jax.random.normal(next(keys), (vocab, d_model)) * 0.02,  # tied output head
        "pos": jax.random.normal(next(keys), (context, d_model)) * 0.02,
        "blocks": blocks,
        "ln_f": jnp.ones(d_model),
        "bias": jnp.zeros(vocab),
    }


def layer_norm(x, scale, eps=1e-5):
    x = x - x.mean(-1, keepdims=True)
    return scale * x * jax.lax.rsqrt((x * x).mean(-1, keepdims=True) + eps)


def attention(x, block, n_heads):
    t, d = x.shape[-2:]
    q, k, v = jnp.split(x @ block["qkv"], 3, axis=-1)

    def split(a):
        return a.reshape(*a.shape[:-1], n_heads, d // n_heads)

    scores = jnp.einsum("...qhc,...khc->...hqk", split(q), split(k)) / np.sqrt(d // n_heads)
    causal = jnp.tril(jnp.ones((t, t), bool))
    weights = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
    out = jnp.einsum("...hqk,...khc->...qhc", weights, split(v)).reshape(x.shape)
    return out @ block["proj"]


def hidden_states(params, tokens, n_heads=4):
    """(..., T) tokens -> (..., T, D) final hidden states (before the output head)."""
    x = params["embed"][tokens] + params["pos"][: tokens.shape[-1]]
    for block in params["blocks"]:
        x = x + attention(layer_norm(x, block["ln1"]), block, n_heads)
        x = x + jax.nn.gelu(layer_norm(x, block["ln2"]) @ block["fc"]) @ block["out"]
    return layer_norm(x, params["ln_f"])


def loss_fn(params, inputs, targets):
    # the fused head: (B, T, D) hidden states x (D, V) tied embedding -> mean CE
    return jloss.linear_cross_entropy(hidden_states(params, inputs), params["embed"].T, targets,
                                      bias=params["bias"], label_smoothing=0.05)


@jax.jit
def next_logits(params, window, position):
    """Logits of the token after ``window[position]``; ``window`` is right-padded (causal)."""
    h = hidden_states(params, window)[position]
    return h @ params["embed"].T + params["bias"]  # one position: a (V,) vector is fine


def sample(params, prompt, length, key, encode, decode, context, temperature=0.8):
    tokens = encode(prompt)
    for _ in range(length):
        window = tokens[-context:]
        padded = jnp.asarray(window + [0] * (context - len(window)))
        key, sub = jax.random.split(key)
        logits = next_logits(params, padded, len(window) - 1)
        tokens.append(int(jax.random.categorical(sub, logits / temperature)))
        if decode(tokens[-1:]) == "\n":
            break
    return decode(tokens)


def main(argv=None):
    parser = argparse.ArgumentParser(description="tiny char-level GPT trained with jloss")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--context", type=int, default=48)
    args = parser.parse_args(argv)

    chars = sorted(set(TEXT))
    index = {c: i for i, c in enumerate(chars)}

    def encode(text):
        return [index[c] for c in text]

    def decode(ids):
        return "".join(chars[i] for i in ids)

    data = jnp.asarray(encode(TEXT))
    print(f"{len(TEXT)} characters, vocabulary {len(chars)}, context {args.context}")

    params = init_params(jax.random.key(0), len(chars), context=args.context)
    schedule = optax.warmup_cosine_decay_schedule(0.0, 3e-3, 20, args.steps, 3e-4)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=0.01))
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, key):
        starts = jax.random.randint(key, (args.batch,), 0, len(data) - args.context - 1)
        window = jax.vmap(lambda s: jax.lax.dynamic_slice(data, (s,), (args.context + 1,)))(starts)
        loss, grads = jax.value_and_grad(loss_fn)(params, window[:, :-1], window[:, 1:])
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    key = jax.random.key(1)
    start = time.perf_counter()
    for i in range(args.steps + 1):
        key, sub = jax.random.split(key)
        params, opt_state, loss = step(params, opt_state, sub)
        if i % 50 == 0 or i == args.steps:
            print(f"step {i:4d}  loss {float(loss):.3f}  ({time.perf_counter() - start:.1f} s)")
    line = sample(params, "The ", 80, jax.random.key(2), encode, decode, args.context)
    print(f"sample: {line.strip()}")


if __name__ == "__main__":
    main()

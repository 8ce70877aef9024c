"""Train a tiny character-level GPT with ``jloss.linear_cross_entropy``.

Pure JAX + optax: token and position embeddings, two pre-norm transformer
blocks (causal self-attention + MLP), and an output head tied to the token
embedding. The loss never builds the (batch, time, vocab) logits: the final
hidden states, the embedding table (as ``table.T``) and the next characters go
straight into ``jloss.linear_cross_entropy``. Trains for a few hundred steps on
the text below in well under a minute on two CPU cores, prints the loss
falling, then samples a line.

With ``--mesh 2x2`` it trains data- and vocabulary-parallel on a
data x model mesh: the tied embedding (and so the output head's weight) is
sharded along the vocabulary over ``model``, the batch over ``data``, and
``jloss.linear_cross_entropy(..., vocab_axis="model", batch_axes=("data",))``
never gathers the head's weight. On a machine without accelerators the script
asks XLA for 8 CPU devices. The loss curve equals the single-device run to
float round-off.

Run: python examples/tiny_gpt.py [--steps 400] [--mesh 2x2]
"""

import argparse
import os
import sys
import time

if __name__ == "__main__" and any(a.startswith("--mesh") for a in sys.argv):
    # CPU-only machines: expose several host devices (ignored by GPU / TPU backends)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=8").strip()

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

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


def loss_fn(params, inputs, targets, parallel=False):
    # the fused head: (B, T, D) hidden states x (D, V) tied embedding -> mean CE; on a mesh the
    # vocabulary is sharded over "model" and the tokens over "data"
    axes = {"vocab_axis": "model", "batch_axes": ("data",)} if parallel else {}
    return jloss.linear_cross_entropy(hidden_states(params, inputs), params["embed"].T, targets,
                                      bias=params["bias"], label_smoothing=0.05, **axes)


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


VOCAB_MULTIPLE = 8  # the vocabulary is padded so that it splits over the "model" axis


def parse_mesh(text):
    """``"2x2"`` -> an Auto-sharded ("data", "model") mesh of 2 x 2 devices; None for None."""
    if text is None:
        return None
    data, model = (int(x) for x in text.lower().split("x"))
    if data * model > jax.device_count():
        raise SystemExit(f"--mesh {text} needs {data * model} devices, found {jax.device_count()}")
    return jax.make_mesh((data, model), ("data", "model"),
                         axis_types=(jax.sharding.AxisType.Auto,) * 2)


def place(params, mesh):
    """Embedding table and bias sharded along the vocabulary over "model"; the rest replicated."""
    def spec(path, _):
        name = jax.tree_util.keystr(path[:1])
        return P("model") if name in ("['embed']", "['bias']") else P()

    specs = jax.tree_util.tree_map_with_path(spec, params)
    return jax.device_put(params, jax.tree.map(lambda s: NamedSharding(mesh, s), specs))


def train(steps, batch=32, context=48, mesh=None, log_every=50, log=print):
    """Train on ``TEXT``; returns ``(params, losses, encode, decode)``.

    ``mesh``: None (one device) or a ("data", "model") mesh, on which the
    batch is sharded over "data" and the vocabulary over "model".
    """
    chars = sorted(set(TEXT))
    index = {c: i for i, c in enumerate(chars)}

    def encode(text):
        return [index[c] for c in text]

    def decode(ids):
        return "".join(chars[i] if i < len(chars) else "?" for i in ids)

    data = jnp.asarray(encode(TEXT))
    vocab = -(-len(chars) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    log(f"{len(TEXT)} characters, vocabulary {len(chars)} (padded to {vocab}), context {context}"
        + ("" if mesh is None else f", mesh {dict(mesh.shape)}"))

    params = init_params(jax.random.key(0), vocab, context=context)
    if mesh is not None:
        params = place(params, mesh)
    schedule = optax.warmup_cosine_decay_schedule(0.0, 3e-3, min(20, steps // 4), steps, 3e-4)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=0.01))
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, key):
        starts = jax.random.randint(key, (batch,), 0, len(data) - context - 1)
        window = jax.vmap(lambda s: jax.lax.dynamic_slice(data, (s,), (context + 1,)))(starts)
        if mesh is not None:
            window = jax.lax.with_sharding_constraint(window, NamedSharding(mesh, P("data")))
        loss, grads = jax.value_and_grad(loss_fn)(params, window[:, :-1], window[:, 1:],
                                                  mesh is not None)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    key = jax.random.key(1)
    start = time.perf_counter()
    losses = []
    for i in range(steps + 1):
        key, sub = jax.random.split(key)
        if mesh is None:
            params, opt_state, loss = step(params, opt_state, sub)
        else:
            with jax.set_mesh(mesh):
                params, opt_state, loss = step(params, opt_state, sub)
        losses.append(float(loss))  # also waits for the step (CPU collectives)
        if log_every and (i % log_every == 0 or i == steps):
            log(f"step {i:4d}  loss {losses[-1]:.3f}  ({time.perf_counter() - start:.1f} s)")
    return params, losses, encode, decode


def main(argv=None):
    parser = argparse.ArgumentParser(description="tiny char-level GPT trained with jloss")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--context", type=int, default=48)
    parser.add_argument("--mesh", default=None, metavar="DATAxMODEL",
                        help="train data- and vocabulary-parallel on a mesh, e.g. 2x2")
    args = parser.parse_args(argv)
    params, _, encode, decode = train(args.steps, args.batch, args.context, parse_mesh(args.mesh))
    params = jax.device_get(params)
    line = sample(params, "The ", 80, jax.random.key(2), encode, decode, args.context)
    print(f"sample: {line.strip()}")


if __name__ == "__main__":
    main()

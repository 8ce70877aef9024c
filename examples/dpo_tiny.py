"""Fine-tune the output head of a tiny GPT with DPO on a synthetic preference set.

The model is the tiny GPT of ``examples/tiny_gpt.py`` (random weights, frozen
body): only its output head (a ``(D, V)`` weight and a bias) is trained. Each
preference pair shares a prompt of 4 random tokens; the *chosen* completion
continues it by counting up (``t, t+1, t+2, ...`` modulo V), the *rejected*
one is random tokens. Completions have different lengths (right-padded, with a
mask). Every step computes, without building the ``(tokens, V)`` logits::

    logp = jloss.sequence_log_probs(jloss.linear_log_probs(hidden, weight, labels, bias=bias), mask)
    loss = jloss.dpo(logp_chosen, logp_rejected, ref_chosen, ref_rejected, beta=0.1)

with the initial head as the frozen reference, and prints the loss, the
implicit reward margin ``beta * ((logp_c - ref_c) - (logp_r - ref_r))`` and the
share of held-out pairs where the policy prefers the chosen completion.

Run: python examples/dpo_tiny.py [--steps 200]
"""

import argparse
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import tiny_gpt

import jloss

VOCAB, PROMPT, COMPLETION = 32, 4, 8


def preference_pairs(key, n_pairs):
    """``(tokens (2 n, T), completion mask (2 n, T - 1))``: rows 2i chosen, 2i+1 rejected.

    A row is prompt + completion; the mask marks the positions whose next token
    is part of the completion (its length varies from 4 to 8, the rest is padding).
    """
    k_prompt, k_reject, k_len = jax.random.split(key, 3)
    prompt = jax.random.randint(k_prompt, (n_pairs, PROMPT), 0, VOCAB)
    counting = (prompt[:, -1:] + jnp.arange(1, COMPLETION + 1)) % VOCAB  # the pattern
    rejected = jax.random.randint(k_reject, (n_pairs, COMPLETION), 0, VOCAB)
    chosen_rows = jnp.concatenate([prompt, counting], axis=1)
    rejected_rows = jnp.concatenate([prompt, rejected], axis=1)
    tokens = jnp.stack([chosen_rows, rejected_rows], axis=1).reshape(2 * n_pairs, PROMPT + COMPLETION)
    lengths = jnp.repeat(jax.random.randint(k_len, (n_pairs,), 4, COMPLETION + 1), 2)
    position = jnp.arange(1, PROMPT + COMPLETION)[None, :]  # index of the predicted token
    mask = (position >= PROMPT) & (position < PROMPT + lengths[:, None])
    return tokens, mask


def sequence_logps(head, hidden, tokens, mask):
    """Sequence log-probability of each row's completion under the head (fused, blocked)."""
    token_logps = jloss.linear_log_probs(hidden, head["weight"], tokens[:, 1:], bias=head["bias"])
    return jloss.sequence_log_probs(token_logps, mask)


def train(steps=200, n_pairs=64, beta=0.1, learning_rate=0.01, d_model=32, log_every=50, log=print):
    """Train the head with DPO; returns ``(margins, accuracies, losses)`` per logged step."""
    params = tiny_gpt.init_params(jax.random.key(0), VOCAB, d_model=d_model, n_layers=1,
                                  context=PROMPT + COMPLETION)
    body = jax.jit(tiny_gpt.hidden_states)  # frozen: the hidden states are computed once
    tokens, mask = preference_pairs(jax.random.key(1), n_pairs)
    test_tokens, test_mask = preference_pairs(jax.random.key(2), n_pairs)
    hidden, test_hidden = body(params, tokens[:, :-1]), body(params, test_tokens[:, :-1])
    head = {"weight": params["embed"].T, "bias": params["bias"]}  # untied copy of the tied head
    reference = sequence_logps(head, hidden, tokens, mask)  # the frozen reference model
    ref_test = sequence_logps(head, test_hidden, test_tokens, test_mask)
    tx = optax.adam(learning_rate)
    opt_state = tx.init(head)

    def loss_fn(head):
        logp = sequence_logps(head, hidden, tokens, mask)
        return jloss.dpo(logp[0::2], logp[1::2], reference[0::2], reference[1::2], beta=beta)

    @jax.jit
    def step(head, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(head)
        updates, opt_state = tx.update(grads, opt_state, head)
        return optax.apply_updates(head, updates), opt_state, loss

    @jax.jit
    def evaluate(head):
        logp = sequence_logps(head, test_hidden, test_tokens, test_mask)
        chosen, rejected = logp[0::2] - ref_test[0::2], logp[1::2] - ref_test[1::2]
        return beta * jnp.mean(chosen - rejected), jnp.mean(logp[0::2] > logp[1::2])

    margins, accuracies, losses = [], [], []
    start = time.perf_counter()
    for i in range(steps + 1):
        if i:
            head, opt_state, loss = step(head, opt_state)
        else:
            loss = loss_fn(head)
        if log_every and (i % log_every == 0 or i == steps):
            margin, accuracy = (float(x) for x in evaluate(head))
            margins.append(margin)
            accuracies.append(accuracy)
            losses.append(float(loss))
            log(f"step {i:4d}  dpo loss {float(loss):.4f}  held-out reward margin {margin:+.3f}  "
                f"prefers chosen {accuracy:.0%}  ({time.perf_counter() - start:.1f} s)")
    return np.array(margins), np.array(accuracies), np.array(losses)


def main(argv=None):
    parser = argparse.ArgumentParser(description="DPO on the output head of a tiny GPT")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    train(args.steps)


if __name__ == "__main__":
    main()

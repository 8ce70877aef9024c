"""Distil a tiny GPT into a smaller one with ``jloss.linear_kl_divergence``.

The teacher is the tiny GPT of ``examples/tiny_gpt.py`` (2 blocks, D = 64),
trained for a few hundred steps on its text with ``linear_cross_entropy``. The
student (1 block, D = 32) never sees the labels: it is trained only to match the
teacher's next-character distribution at every position,
``linear_kl_divergence(student_hidden, student_head, teacher_hidden, teacher_head)``
(forward KL, teacher under ``jax.lax.stop_gradient``), computed block by block
over the vocabulary without building either model's logits. The script prints
the KL falling and the student's cross-entropy on the text approaching the
teacher's.

Run: python examples/distill_tiny.py [--teacher-steps 300] [--steps 300]
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


def _head(params):
    return params["embed"].T, params["bias"]


def cross_entropy(params, inputs, targets):
    w, b = _head(params)
    return jloss.linear_cross_entropy(tiny_gpt.hidden_states(params, inputs), w, targets, bias=b)


def distill(teacher_steps=300, steps=300, batch=32, context=32, student_d=32, temperature=1.0,
            log_every=50, log=print):
    """Train a teacher, then distil it; returns ``(teacher_ce, student_ce per log, kl per log)``."""
    teacher, _, encode, _ = tiny_gpt.train(teacher_steps, batch, context, log_every=0)
    data = jnp.asarray(encode(tiny_gpt.TEXT))
    vocab = teacher["embed"].shape[0]
    student = tiny_gpt.init_params(jax.random.key(3), vocab, d_model=student_d, n_layers=1,
                                   context=context)
    tx = optax.adam(3e-3)
    opt_state = tx.init(student)

    def windows(key, n):
        starts = jax.random.randint(key, (n,), 0, len(data) - context - 1)
        w = jax.vmap(lambda s: jax.lax.dynamic_slice(data, (s,), (context + 1,)))(starts)
        return w[:, :-1], w[:, 1:]

    def kl_loss(student, inputs):
        t_hidden = jax.lax.stop_gradient(tiny_gpt.hidden_states(teacher, inputs))
        t_w, t_b = jax.lax.stop_gradient(_head(teacher))
        s_w, s_b = _head(student)
        return jloss.linear_kl_divergence(tiny_gpt.hidden_states(student, inputs), s_w, t_hidden, t_w,
                                          student_bias=s_b, teacher_bias=t_b, temperature=temperature)

    @jax.jit
    def step(student, opt_state, key):
        inputs, _ = windows(key, batch)
        loss, grads = jax.value_and_grad(kl_loss)(student, inputs)
        updates, opt_state = tx.update(grads, opt_state, student)
        return optax.apply_updates(student, updates), opt_state, loss

    eval_inputs, eval_targets = windows(jax.random.key(4), 64)
    evaluate = jax.jit(cross_entropy)
    teacher_ce = float(evaluate(teacher, eval_inputs, eval_targets))
    log(f"teacher (2 blocks, D=64) after {teacher_steps} steps: cross-entropy {teacher_ce:.3f}")
    student_ce, kls = [], []
    key, start = jax.random.key(5), time.perf_counter()
    for i in range(steps + 1):
        key, sub = jax.random.split(key)
        if i:
            student, opt_state, kl = step(student, opt_state, sub)
        else:
            kl = kl_loss(student, eval_inputs)
        if log_every and (i % log_every == 0 or i == steps):
            student_ce.append(float(evaluate(student, eval_inputs, eval_targets)))
            kls.append(float(kl))
            log(f"step {i:4d}  KL(teacher || student) {kls[-1]:.3f}  student cross-entropy "
                f"{student_ce[-1]:.3f} (teacher {teacher_ce:.3f})  ({time.perf_counter() - start:.1f} s)")
    return teacher_ce, np.array(student_ce), np.array(kls)


def main(argv=None):
    parser = argparse.ArgumentParser(description="distil a tiny GPT into a smaller one")
    parser.add_argument("--teacher-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    distill(args.teacher_steps, args.steps)


if __name__ == "__main__":
    main()

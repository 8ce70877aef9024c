"""Fused post-training losses vs the same losses on materialised logits: memory and time.

For each loss it builds value-and-grad under ``jax.jit`` of

* DPO: ``dpo(sequence_log_probs(linear_log_probs(hidden, weight, labels), mask), ...)``
  against ``log_softmax(hidden @ weight)`` gathered at the labels (gradients of
  ``hidden`` and ``weight``; 2 sequences of each pair, reference log-probs given);
* distillation: ``linear_kl_divergence`` (forward, reverse with a temperature) and
  ``linear_jensen_shannon`` against ``kl_divergence`` / a JSD of the two heads'
  materialised logits (gradients of the student's hidden states and head; the
  teacher under ``jax.lax.stop_gradient``),

and prints, as fused / materialised ratios in one table, the compiled scratch
memory (``memory_analysis().temp_size_in_bytes``, compile only, at the
``--memory`` sizes) and the median wall time (interleaved rounds at the
``--time`` sizes; samples taken while other processes loaded the machine are
retaken, see ``QuietTimer`` in ``benchmarks/linear_cross_entropy.py``).

Run: python benchmarks/post_training.py            (N=8192, D=512, V=32768 memory; N=2048 timed)
     python benchmarks/post_training.py --quick    (small sizes, seconds)
"""

import argparse
import os
import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from linear_cross_entropy import QuietTimer

import jloss

SEQ = 16  # tokens per sequence in the DPO rows


def _dpo(token_logps, mask):
    logp = jloss.sequence_log_probs(token_logps, mask)
    ref_c = jax.lax.stop_gradient(logp[0::2]) - 1.0
    ref_r = jax.lax.stop_gradient(logp[1::2]) + 1.0
    return jloss.dpo(logp[0::2], logp[1::2], ref_c, ref_r)


def dpo_fused(h, w, labels, mask):
    return _dpo(jloss.linear_log_probs(h, w, labels), mask)


def dpo_materialised(h, w, labels, mask):
    logp = jnp.take_along_axis(jax.nn.log_softmax(h @ w), labels[..., None], -1)[..., 0]
    return _dpo(logp, mask)


def _kl_materialised(hs, ws, ht, wt, temperature=1.0, direction="forward"):
    s, t = hs @ ws / temperature, ht @ wt / temperature
    if direction == "forward":
        return jloss.kl_divergence(s, jax.nn.softmax(t))
    return jloss.kl_divergence(t, jax.nn.softmax(s))


def _jsd_materialised(hs, ws, ht, wt, beta=0.5):
    log_s, log_t = jax.nn.log_softmax(hs @ ws), jax.nn.log_softmax(ht @ wt)
    log_m = jnp.logaddexp(log_t + jnp.log(beta), log_s + jnp.log1p(-beta))
    per_token = (beta * jnp.sum(jnp.exp(log_t) * (log_t - log_m), -1)
                 + (1 - beta) * jnp.sum(jnp.exp(log_s) * (log_s - log_m), -1))
    return jnp.mean(per_token)


DISTILL = {
    "linear_kl_divergence (forward)": (jloss.linear_kl_divergence, _kl_materialised, {}),
    "linear_kl_divergence (reverse, T=2)": (jloss.linear_kl_divergence, _kl_materialised,
                                            {"direction": "reverse", "temperature": 2.0}),
    "linear_jensen_shannon": (jloss.linear_jensen_shannon, _jsd_materialised, {}),
}


def _student_grad(fn, opts):
    def step(hs, ws, ht, wt):
        ht, wt = jax.lax.stop_gradient(ht), jax.lax.stop_gradient(wt)
        return jax.value_and_grad(lambda hs, ws: fn(hs, ws, ht, wt, **opts), argnums=(0, 1))(hs, ws)
    return jax.jit(step)


def programs(n, d, v):
    """``{name: (fused step, materialised step, example args as ShapeDtypeStructs)}``."""
    f32 = jnp.float32
    dpo_args = (jax.ShapeDtypeStruct((n // SEQ, SEQ, d), f32), jax.ShapeDtypeStruct((d, v), f32),
                jax.ShapeDtypeStruct((n // SEQ, SEQ), jnp.int32), jax.ShapeDtypeStruct((n // SEQ, SEQ), bool))
    fused, dense = (jax.jit(jax.value_and_grad(f, argnums=(0, 1))) for f in (dpo_fused, dpo_materialised))
    out = {"dpo(sequence_log_probs(linear_log_probs))": (fused, dense, dpo_args)}
    student_d = d // 2
    distill_args = (jax.ShapeDtypeStruct((n, student_d), f32), jax.ShapeDtypeStruct((student_d, v), f32),
                    jax.ShapeDtypeStruct((n, d), f32), jax.ShapeDtypeStruct((d, v), f32))
    for name, (fused, dense, opts) in DISTILL.items():
        out[name] = (_student_grad(fused, opts), _student_grad(dense, opts), distill_args)
    return out


def scratch(step, args):
    return step.lower(*args).compile().memory_analysis().temp_size_in_bytes


def _concrete(args, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for a in args:
        if a.dtype == jnp.int32:
            out.append(jnp.asarray(rng.integers(0, 1000, a.shape), jnp.int32))
        elif a.dtype == jnp.bool_:
            out.append(jnp.asarray(np.arange(a.shape[-1])[None, :] < rng.integers(1, a.shape[-1] + 1,
                                                                                 a.shape[:-1])[:, None]))
        else:
            out.append(jnp.asarray(rng.standard_normal(a.shape) / np.sqrt(a.shape[-1]), a.dtype))
    return out


def median_times(steps, args, rounds, timer):
    """Median wall time of each step, interleaved round by round (after one warm-up call)."""
    times = {name: [] for name in steps}
    for step in steps.values():
        jax.block_until_ready(step(*args))
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(timer(lambda step=step: jax.block_until_ready(step(*args))))
    return {name: float(np.median(t)) for name, t in times.items()}


def run(memory_sizes, time_sizes, rounds, timer):
    """Rows ``(name, fused MiB, materialised MiB, memory ratio, time ratio, fused s, dense s)``."""
    mem_programs, time_programs = programs(*memory_sizes), programs(*time_sizes)
    for name, (fused, dense, args) in mem_programs.items():
        m_f, m_d = scratch(fused, args), scratch(dense, args)
        t_fused, t_dense, t_args = time_programs[name]
        times = median_times({"fused": t_fused, "dense": t_dense}, _concrete(t_args), rounds, timer)
        yield (name, m_f / 2**20, m_d / 2**20, m_f / m_d, times["fused"] / times["dense"],
               times["fused"], times["dense"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--max-wait", type=float, default=5.0,
                        help="seconds to wait for a quiet machine before each sample (0: never wait)")
    args = parser.parse_args(argv)
    if args.quick:
        memory_sizes, time_sizes, rounds = (512, 64, 2048), (256, 32, 1024), args.rounds or 2
        timer = QuietTimer(max_foreign=1e9, tries=1, max_wait=0)
    else:
        memory_sizes, time_sizes, rounds = (8192, 512, 32768), (2048, 512, 32768), args.rounds or 7
        timer = QuietTimer(max_foreign=0.2, tries=3 if args.max_wait else 1, max_wait=args.max_wait)
    cpu = platform.processor() or platform.machine()
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, {cpu}, {os.cpu_count()} cores")
    print(f"memory: compiled scratch of value-and-grad at N, D, V = {memory_sizes}; "
          f"time: median of {rounds} interleaved rounds at N, D, V = {time_sizes} "
          "(distillation: student D/2, teacher D)\n")
    print("| loss | fused scratch MiB | materialised scratch MiB | memory ratio | time ratio "
          "| fused s | materialised s |")
    print("|---|---|---|---|---|---|---|")
    for name, m_f, m_d, mem_ratio, time_ratio, t_f, t_d in run(memory_sizes, time_sizes, rounds, timer):
        print(f"| {name} | {m_f:.1f} | {m_d:.1f} | {mem_ratio:.3f} | {time_ratio:.2f} | {t_f:.4f} "
              f"| {t_d:.4f} |", flush=True)
    print(f"\nquiet samples: {timer.quiet}, contended (kept after retries): {timer.contended}")


if __name__ == "__main__":
    main()

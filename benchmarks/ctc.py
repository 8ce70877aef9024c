"""CTC: jloss vs optax, value-and-grad time and compiled memory, side by side in one run.

    python3 benchmarks/ctc.py            # the two sizes below (about a minute on 2 CPU cores)
    python3 benchmarks/ctc.py --quick    # small sizes, a smoke run

For each size (B sequences, T frames, K classes, S labels) it measures
value-and-grad of the summed per-sequence loss w.r.t. the logits:

- time: the median over rounds of interleaved runs (jloss, optax, jloss, optax, ...),
- cpu ratio: the median over rounds of the ratio of the process CPU time of the two runs of a
  round (steadier than wall time on a machine shared with other work),
- memory: the compiled program's temporary memory,
  ``jax.jit(f).lower(...).compile().memory_analysis().temp_size_in_bytes``,
- the largest difference between the two losses and between the two gradients.

Ratios are jloss / optax: below 1 is better for jloss.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jloss

CASES = [(32, 200, 64, 40), (8, 1000, 1000, 200)]
QUICK = [(4, 30, 8, 6)]


def inputs(b, t, k, s, seed=0):
    """Logits, labels (no blank 0) and lengths: frames in [T/2, T], labels in [S/2, S]."""
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(rng.normal(size=(b, t, k)), jnp.float32)
    labels = jnp.asarray(rng.integers(1, k, size=(b, s)), jnp.int32)
    logit_lengths = jnp.asarray(rng.integers(t // 2, t + 1, size=b), jnp.int32)
    label_lengths = jnp.asarray(rng.integers(s // 2, s + 1, size=b), jnp.int32)
    return logits, labels, logit_lengths, label_lengths


def jloss_loss(logits, labels, logit_lengths, label_lengths):
    return jloss.ctc(logits, labels, logit_lengths=logit_lengths, label_lengths=label_lengths,
                     reduction="sum")


def optax_loss(logits, labels, logit_lengths, label_lengths):
    logit_paddings = (jnp.arange(logits.shape[1]) >= logit_lengths[:, None]).astype(logits.dtype)
    label_paddings = (jnp.arange(labels.shape[1]) >= label_lengths[:, None]).astype(logits.dtype)
    return jnp.sum(optax.ctc_loss(logits, logit_paddings, labels, label_paddings))


def measure(size, rounds, per_round):
    args = inputs(*size)
    fns, memory, results = {}, {}, {}
    for name, loss in (("jloss", jloss_loss), ("optax", optax_loss)):
        fn = jax.jit(jax.value_and_grad(loss))
        memory[name] = fn.lower(*args).compile().memory_analysis().temp_size_in_bytes
        results[name] = jax.block_until_ready(fn(*args))
        fns[name] = fn
    times = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(per_round):
                jax.block_until_ready(fn(*args))
            times[name].append((time.perf_counter() - start) / per_round)
            cpu[name].append(time.process_time() - start_cpu)
    ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    cpu_ratio = statistics.median(a / max(b, 1e-9) for a, b in zip(cpu["jloss"], cpu["optax"], strict=True))
    (vj, gj), (vo, go) = results["jloss"], results["optax"]
    return ms, cpu_ratio, memory, abs(float(vj) - float(vo)), float(jnp.max(jnp.abs(gj - go)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--per-round", type=int, default=3)
    args = parser.parse_args()
    print(f"jax {jax.__version__}, optax {optax.__version__}, device {jax.devices()[0].device_kind}")
    print("value_and_grad of the summed CTC loss w.r.t. float32 logits; ratios are jloss / optax\n")
    print("| B | T | K | S | jloss ms | optax ms | time ratio | cpu ratio | jloss MiB | optax MiB "
          "| memory ratio | loss diff | grad diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in QUICK if args.quick else CASES:
        ms, cpu_ratio, mem, dv, dg = measure(size, args.rounds, args.per_round)
        print(f"| {' | '.join(map(str, size))} | {ms['jloss']:.1f} | {ms['optax']:.1f} | "
              f"{ms['jloss'] / ms['optax']:.2f} | {cpu_ratio:.2f} | {mem['jloss'] / 2**20:.1f} | "
              f"{mem['optax'] / 2**20:.1f} | {mem['jloss'] / max(mem['optax'], 1):.2f} | "
              f"{dv:.1e} | {dg:.1e} |", flush=True)


if __name__ == "__main__":
    main()

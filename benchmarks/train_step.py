"""Benchmark jloss's training step and per-example gradients.

1. ``jloss.make_train_step`` + ``jloss.optimizer("adam")`` against a
   hand-written ``jax.jit`` + ``optax.adam`` step on the same MLP and the same
   loss: time ratio jloss / hand-written, the median over interleaved rounds
   (each round times both, one after the other, so machine load hits both).
   The hand-written step returns the loss only; a second baseline also returns
   the gradient norm (``optax.tree.norm``), as jloss's metrics do; a third
   pair donates the state's buffers on both sides (``make_train_step(...,
   donate=True)`` and ``jax.jit(..., donate_argnums=(0, 1))``).
2. ``jloss.per_example_grads`` (one ``vmap``-ed, jitted call) against a
   Python loop over the examples of a batch of 64 (results stacked like the
   vmapped ones), of a jitted ``jax.grad`` and of plain (eager) ``jax.grad``:
   speed-up loop / vmap.

Each timed sample runs enough calls for about 25 ms of work (5 ms with
``--quick``) with Python's garbage collector paused, as ``timeit`` does, and
every number is the median over interleaved rounds.

The step ratios are measured in several fresh processes (7 by default,
``--processes``) and reported as the median over them, with their range. One
process's ratio is not enough: two separately compiled copies of the same
step, timed in the same process, differ by up to 4% on the tiny MLP, and
processes differ by as much (the reason pyperf spawns worker processes).

Run: ``python benchmarks/train_step.py`` (``--quick`` for a short run).
Prints the command and a markdown table. Times are wall-clock by default;
``--single-thread`` runs XLA on one thread and times the process's CPU time,
which other processes on a shared machine disturb far less.
"""

import argparse
import gc
import itertools
import json
import os
import statistics
import subprocess
import sys
import time

if "--single-thread" in sys.argv:  # must be set before jax is imported
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    os.environ["XLA_FLAGS"] = flags.strip()

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jloss

clock = time.process_time if "--single-thread" in sys.argv else time.perf_counter


def init_mlp(key, sizes):
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"w": jax.random.normal(k, (a, b)) / np.sqrt(a), "b": jnp.zeros(b)}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)]


def forward(params, x):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss_fn(params, batch):
    x, y = batch
    return jloss.sparse_categorical_cross_entropy(forward(params, x), y)


def data(sizes, batch, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(batch, sizes[0])), jnp.float32)
    y = jnp.asarray(rng.integers(0, sizes[-1], size=batch), jnp.int32)
    return x, y


def timed(fn, n):
    """Seconds per call of ``fn(n)``, with Python's garbage collector paused (as ``timeit`` does)."""
    gc.collect()
    gc.disable()
    try:
        start = clock()
        fn(n)
        return (clock() - start) / n
    finally:
        gc.enable()


def calls_per_sample(fn, seconds):
    """How many calls of ``fn`` (already compiled) make one timed sample of about ``seconds``.

    A sample of a few milliseconds is at the mercy of the scheduler on a
    shared 2-core machine; one of tens of milliseconds averages that out.
    """
    return max(2, round(seconds / timed(fn, 3)))


def interleaved(contenders, rounds, seconds):
    """Median time per call of each contender, and the median of their per-round ratios.

    ``contenders`` maps a name to ``fn(n)`` running n calls and blocking; the
    first is the reference of the ratios. Every round times each contender once,
    alternating who goes first, so machine load hits all of them alike.
    """
    counts = {name: calls_per_sample(fn, seconds) for name, fn in contenders.items()}
    times = {name: [] for name in contenders}
    for r in range(rounds):
        order = list(contenders.items())
        if r % 2:
            order.reverse()
        for name, fn in order:
            times[name].append(timed(fn, counts[name]))
    ref = next(iter(contenders))
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratios = {name: statistics.median(a / b for a, b in zip(t, times[ref], strict=True))
              for name, t in times.items()}
    return medians, ratios


def bench_train_step(sizes, batch, rounds, seconds, with_norm=False, donate=False):
    params = init_mlp(jax.random.key(0), sizes)
    b = data(sizes, batch)

    state = jloss.TrainState.create(params=jax.tree.map(jnp.copy, params),
                                    tx=jloss.optimizer("adam", 1e-3))
    step = jloss.make_train_step(loss_fn, donate=donate)

    tx = optax.adam(1e-3)

    def hand_update(params, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        metrics = (loss, optax.tree.norm(grads)) if with_norm else loss
        return optax.apply_updates(params, updates), opt_state, metrics

    hand_step = jax.jit(hand_update, donate_argnums=(0, 1) if donate else ())
    hand = [params, tx.init(params)]
    ours = [state]

    def run_ours(n):
        s = ours[0]
        for _ in range(n):
            s, m = step(s, b)
        jax.block_until_ready((s, m))
        ours[0] = s

    def run_hand(n):
        p, o = hand
        for _ in range(n):
            p, o, loss = hand_step(p, o, b)
        jax.block_until_ready((p, o, loss))
        hand[:] = [p, o]

    run_ours(3)
    run_hand(3)  # compile and warm up
    medians, ratios = interleaved({"hand": run_hand, "ours": run_ours}, rounds, seconds)
    return medians["ours"], medians["hand"], ratios["ours"]


def bench_per_example(sizes, batch, rounds, seconds):
    params = init_mlp(jax.random.key(0), sizes)
    x, y = data(sizes, batch)
    vmapped = jax.jit(jloss.per_example_grads(loss_fn))
    loops = {"jit(grad)": jax.jit(jax.grad(loss_fn)), "jax.grad (eager)": jax.grad(loss_fn)}

    def run_vmap(n):
        for _ in range(n):
            g = vmapped(params, (x, y))
        jax.block_until_ready(g)

    def looped(one):
        def run_loop(n):
            for _ in range(n):
                grads = [one(params, (x[i:i + 1], y[i:i + 1])) for i in range(batch)]
                g = jax.tree.map(lambda *leaves: jnp.stack(leaves), *grads)
            jax.block_until_ready(g)
        return run_loop

    run_vmap(1)
    ref = vmapped(params, (x, y))
    results = {}
    for kind, one in loops.items():
        # the loop's per-example gradients equal the vmapped ones
        np.testing.assert_allclose(ref[0]["w"][5], one(params, (x[5:6], y[5:6]))[0]["w"], atol=1e-5)
        run_loop = looped(one)
        run_loop(1)
        medians, ratios = interleaved({"vmap": run_vmap, "loop": run_loop}, rounds, seconds)
        results[kind] = medians["vmap"], medians["loop"], ratios["loop"]  # loop / vmap: the speed-up
    return results


SMALL, LARGE = (32, 64, 64, 10), (784, 512, 512, 10)
# (sizes, baseline also returns the grad norm, both donate the state)
STEP_CASES = [(SMALL, False, False), (SMALL, True, False), (SMALL, False, True),
              (LARGE, False, False), (LARGE, False, True)]


def step_cases(rounds, seconds):
    """``[ours, hand, ratio]`` for every case of ``STEP_CASES``, measured in this process."""
    return [list(bench_train_step(sizes, 128, rounds, seconds, with_norm, donate))
            for sizes, with_norm, donate in STEP_CASES]


def step_cases_in_processes(processes, worker_args):
    """``step_cases`` run in ``processes`` fresh Python processes, one after the other."""
    runs = []
    for _ in range(processes):
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", *worker_args],
                             capture_output=True, text=True, check=True).stdout
        runs.append(json.loads(out.splitlines()[-1]))
    return runs


def n_params(sizes):
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, one process (a smoke run)")
    parser.add_argument("--single-thread", action="store_true",
                        help="XLA on one thread, timed by process CPU time (for shared machines)")
    parser.add_argument("--processes", type=int, default=None,
                        help="fresh processes for the step ratios (default 7; 1 with --quick)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rounds = 5 if args.quick else 21
    seconds = 0.005 if args.quick else 0.025  # of work in each timed sample
    if args.worker:  # one process's step ratios, as JSON, for step_cases_in_processes
        print(json.dumps(step_cases(rounds, seconds)))
        return
    processes = args.processes or (1 if args.quick else 7)
    if processes < 1:
        parser.error(f"--processes must be >= 1, got {processes}")
    print("command: python " + " ".join(["benchmarks/train_step.py", *sys.argv[1:]]))
    timing = "process CPU time, XLA single-threaded" if args.single_thread else "wall-clock"
    print(f"jax {jax.__version__}, optax {optax.__version__}, backend {jax.default_backend()}, "
          f"{jax.device_count()} device(s), {os.cpu_count()} CPU(s); {timing}; "
          f"median of {rounds} interleaved rounds of about {seconds * 1e3:.0f} ms per sample; "
          f"step ratios: median over {processes} process(es)\n")

    if processes == 1:
        runs = [step_cases(rounds, seconds)]
    else:
        flags = [("--quick", args.quick), ("--single-thread", args.single_thread)]
        worker_args = [a for a, on in flags if on]
        runs = step_cases_in_processes(processes, worker_args)
    print("| benchmark | model (params) | batch | jloss | baseline | result | target |")
    print("|---|---|---|---|---|---|---|")
    for i, (sizes, with_norm, donate) in enumerate(STEP_CASES):
        ours, hand, ratio = (statistics.median(run[i][k] for run in runs) for k in range(3))
        spread = ""
        if processes > 1:
            ratios = [run[i][2] for run in runs]
            spread = f" ({min(ratios):.3f} to {max(ratios):.3f})"
        baseline = "jit+optax returning loss and grad norm" if with_norm else "jit+optax"
        if donate:
            baseline += ", both donating the state"
        print(f"| train step (adam): jloss / {baseline} | MLP {'-'.join(map(str, sizes))} "
              f"({n_params(sizes):,}) | 128 | {ours * 1e3:.3f} ms | {hand * 1e3:.3f} ms | "
              f"ratio {ratio:.3f}{spread} | <= 1.05 |")
    for sizes in [SMALL, LARGE]:
        model = f"MLP {'-'.join(map(str, sizes))} ({n_params(sizes):,})"
        for loop_kind, (vmap, loop, speedup) in bench_per_example(sizes, 64, rounds, seconds).items():
            print(f"| per-example grads: Python loop of {loop_kind} / jloss | {model} | 64 | "
                  f"{vmap * 1e3:.3f} ms | {loop * 1e3:.3f} ms | speed-up {speedup:.1f}x | >= 20x |")


if __name__ == "__main__":
    main()

"""Sparse categorical cross-entropy: jloss vs optax, side by side in one run.

    python3 benchmarks/losses.py            # full table (about two minutes on 2 CPU cores)
    python3 benchmarks/losses.py --quick    # small sizes, a smoke run

For each case it measures, for value-and-grad of the mean loss w.r.t. the
logits:

- time: median over interleaved runs (jloss, optax, jloss, optax, ...),
- scratch: compiled temporary memory, ``memory_analysis().temp_size_in_bytes``,
- kept: bytes the backward keeps, the array leaves of the closure ``jax.vjp`` returns,
- loss error: |mean loss - float64 NumPy reference|.

In bfloat16 two baselines run: optax as called on the bf16 logits (it then
computes in bf16), and optax on logits the caller upcast to float32 (the
float32 accuracy jloss gives).

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

CASES = [(2048, 32768, "float32"), (256, 131072, "float32"), (2048, 32768, "bfloat16")]
QUICK = [(256, 4096, "float32"), (256, 4096, "bfloat16")]


def jloss_loss(logits, labels):
    return jloss.sparse_categorical_cross_entropy(logits, labels)


def optax_loss(logits, labels):
    return optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def optax_f32_loss(logits, labels):
    """optax on logits upcast by the caller: float32 accuracy, as jloss gives."""
    return optax_loss(logits.astype(jnp.float32), labels)


def reference(logits, labels):
    """The mean loss in float64 NumPy."""
    x = np.asarray(logits.astype(jnp.float32), np.float64)
    m = x.max(-1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(x - m).sum(-1))
    return float(np.mean(lse - x[np.arange(len(x)), np.asarray(labels)]))


def kept_bytes(loss, logits, labels):
    _, vjp_fn = jax.vjp(lambda x: loss(x, labels), logits)
    leaves = jax.tree_util.tree_leaves(vjp_fn)
    return sum(leaf.nbytes for leaf in leaves if hasattr(leaf, "nbytes"))


def measure(n, v, dtype, repeats):
    kx, ky = jax.random.split(jax.random.key(0))
    logits = (3 * jax.random.normal(kx, (n, v))).astype(dtype)
    labels = jax.random.randint(ky, (n,), 0, v)
    fns, row = {}, {}
    contenders = [("jloss", jloss_loss), ("optax", optax_loss)]
    if dtype != "float32":
        contenders.append(("optax-f32", optax_f32_loss))
    ref = reference(logits, labels)
    for name, loss in contenders:
        fn = jax.jit(jax.value_and_grad(loss))
        compiled = fn.lower(logits, labels).compile()
        row[name + "_scratch"] = compiled.memory_analysis().temp_size_in_bytes
        row[name + "_kept"] = kept_bytes(loss, logits, labels)
        value, _ = fn(logits, labels)
        row[name + "_err"] = abs(float(value) - ref)
        fns[name] = fn
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(logits, labels))
            times[name].append(time.perf_counter() - start)
    for name in fns:
        row[name + "_ms"] = 1e3 * statistics.median(times[name])
    return [name for name, _ in contenders], row


def mib(b):
    return f"{b / 2**20:.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    cases = QUICK if args.quick else CASES
    print(f"jax {jax.__version__}, optax {optax.__version__}, device {jax.devices()[0].device_kind}")
    print("value_and_grad of mean sparse CE w.r.t. logits; ratios are jloss / optax\n")
    print("| N | V | dtype | baseline | jloss ms | baseline ms | time ratio | jloss scratch MiB "
          "| baseline scratch MiB | scratch ratio | jloss kept MiB | baseline kept MiB | kept ratio "
          "| jloss loss error | baseline loss error |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, v, dtype in cases:
        names, r = measure(n, v, dtype, args.repeats)
        for base in names[1:]:
            print(f"| {n} | {v} | {dtype} | {base} | {r['jloss_ms']:.1f} | {r[base + '_ms']:.1f} | "
                  f"{r['jloss_ms'] / r[base + '_ms']:.2f} | {mib(r['jloss_scratch'])} | "
                  f"{mib(r[base + '_scratch'])} | "
                  f"{r['jloss_scratch'] / max(r[base + '_scratch'], 1):.2f} | "
                  f"{mib(r['jloss_kept'])} | {mib(r[base + '_kept'])} | "
                  f"{r['jloss_kept'] / max(r[base + '_kept'], 1):.2f} | "
                  f"{r['jloss_err']:.1e} | {r[base + '_err']:.1e} |", flush=True)

if __name__ == "__main__":
    main()

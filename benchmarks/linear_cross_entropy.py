"""Fused ``jloss.linear_cross_entropy`` vs the materialised path (and PyTorch).

For each (N, D, V, block) it times, side by side in one process and
interleaved (median of the rounds), the forward pass and forward + backward
(gradients of ``hidden`` and ``weight``) of

* the materialised path: ``sparse_categorical_cross_entropy(hidden @ weight, labels)``,
* ``linear_cross_entropy(hidden, weight, labels, block_size=block)``,

and reads the compiled scratch memory of value-and-grad from
``jax.jit(f).lower(...).compile().memory_analysis().temp_size_in_bytes``.
When PyTorch >= 2.13 is installed it also times forward + backward of
``torch.nn.functional.linear_cross_entropy`` on the same CPU in the same run,
with its chunked path (``options=LinearCrossEntropyOptions()``) and its
reference path (``options=None``); without it those columns are skipped.

Ratios are fused / materialised wall-clock times (lower is better). Samples
taken while other processes loaded the machine are discarded and retaken
(:class:`QuietTimer`); the output says how many samples were quiet. Everything
is float32 unless ``--dtype bfloat16``.

With ``--mesh DATAxMODEL`` (e.g. ``--mesh 2x2``, on that many forced CPU
devices when no accelerator is present) it measures the head at scale
instead, with ``hidden`` sharded over ``data`` and ``weight`` over ``model``
along V, for three programs of value-and-grad under ``jax.jit``:

* ``fused``: ``linear_cross_entropy(..., vocab_axis="model", batch_axes=("data",))``,
* ``gspmd``: ``linear_cross_entropy(...)`` without axes, partitioned by GSPMD's default,
* ``materialised``: ``sparse_categorical_cross_entropy(hidden @ weight, labels)``,

printing per-device scratch (compiled, nothing allocated), every collective
of the compiled HLO with its bytes, and (at the timed sizes) the wall time of
each as a ratio to ``fused``.

Run: python benchmarks/linear_cross_entropy.py            (the README table)
     python benchmarks/linear_cross_entropy.py --quick    (small sizes, seconds)
     python benchmarks/linear_cross_entropy.py --mesh 2x2 (the "Training at scale" table)
"""

import argparse
import math
import os
import platform
import re
import shlex
import sys
import time

if __name__ == "__main__" and any(a.startswith("--mesh") for a in sys.argv):
    # CPU-only machines: expose several host devices (ignored by GPU / TPU backends)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=8").strip()

import jax
import jax.numpy as jnp
import numpy as np

import jloss
from jloss.heads.linear_cross_entropy import default_block_size

DEFAULT_CONFIGS = [
    # N, D, V, block (0 = block_size=None, the default rule)
    (2048, 512, 32768, 0),
    (2048, 512, 32768, 256),
    (2048, 512, 32768, 1024),
    (2048, 512, 32768, 2048),
    (1024, 768, 50257, 0),
    (512, 512, 131072, 0),
]
QUICK_CONFIGS = [(256, 64, 4096, 0), (256, 64, 5000, 512)]


_COLLECTIVE = re.compile(r"=\s*(\(.*?\)|\S+)\s+(all-gather|all-reduce|reduce-scatter|all-to-all|"
                         r"collective-permute)(?:-start)?\(")
_ARRAY = re.compile(r"([a-z]+[0-9]*)\[([0-9,]*)\]")
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "f32": 4, "s32": 4,
          "u32": 4, "f64": 8, "s64": 8, "u64": 8}


def collectives(hlo_text):
    """The collectives of a compiled program: ``[(kind, [result shapes], bytes)]``.

    Read from ``compiled.as_text()``: every all-gather, all-reduce,
    reduce-scatter, all-to-all and collective-permute, with the shapes of its
    result (a tuple for a combined collective) and their size in bytes.
    """
    out = []
    for line in hlo_text.splitlines():
        match = _COLLECTIVE.search(line)
        if match is None:
            continue
        arrays = [(dtype, tuple(int(d) for d in dims.split(",") if d))
                  for dtype, dims in _ARRAY.findall(match.group(1))]
        size = sum(_BYTES.get(dtype, 4) * math.prod(shape) for dtype, shape in arrays)
        out.append((match.group(2), [shape for _, shape in arrays], size))
    return out


def _torch():
    """``(torch, linear_cross_entropy, options)`` or a reason it is absent."""
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed"
    version = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    fn = getattr(torch.nn.functional, "linear_cross_entropy", None)
    if version < (2, 13) or fn is None:
        return None, f"torch {torch.__version__} has no torch.nn.functional.linear_cross_entropy"
    options = getattr(torch.nn, "LinearCrossEntropyOptions", None)
    torch.set_num_threads(os.cpu_count() or 1)
    return (torch, fn, None if options is None else options()), f"torch {torch.__version__}"


def _busy_seconds():
    """CPU seconds used by everything on this machine so far (Linux), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


class QuietTimer:
    """Wall time of a call, taken while no other process loads the machine.

    On a machine shared with other jobs a wall-clock ratio is only meaningful
    when nobody else runs. Before each call it waits (up to ``max_wait``
    seconds) for a quiet moment, and it measures the CPU time the rest of the
    machine used during the call (all CPU time from /proc/stat minus this
    process's). When that exceeds ``max_foreign`` cores on average the sample
    is discarded and retaken (at most ``tries`` times; then the last sample is
    kept and counted as contended).
    """

    def __init__(self, max_foreign=0.1, tries=5, max_wait=10.0):
        self.max_foreign, self.tries, self.max_wait = max_foreign, tries, max_wait
        self.quiet = self.contended = 0

    def _foreign_load(self, busy, cpu, seconds):
        return ((_busy_seconds() - busy) - (time.process_time() - cpu)) / max(seconds, 1e-9)

    def _wait_for_quiet(self):
        deadline = time.perf_counter() + self.max_wait
        while time.perf_counter() < deadline:
            busy, cpu = _busy_seconds(), time.process_time()
            time.sleep(0.3)
            if self._foreign_load(busy, cpu, 0.3) <= self.max_foreign:
                return

    def __call__(self, fn):
        for _ in range(self.tries):
            if _busy_seconds() is None:
                start = time.perf_counter()
                fn()
                return time.perf_counter() - start
            self._wait_for_quiet()
            busy, cpu, start = _busy_seconds(), time.process_time(), time.perf_counter()
            fn()
            wall = time.perf_counter() - start
            # /proc/stat counts in clock ticks (10 ms): allow two ticks of slack
            if self._foreign_load(busy, cpu, wall) <= self.max_foreign + 0.02 / wall:
                self.quiet += 1
                return wall
        self.contended += 1
        return wall


def _median_times(fns, rounds, timer):
    """Median wall time of each function, interleaved round by round."""
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(timer(fn))
    return {name: float(np.median(t)) for name, t in times.items()}


def _block_until_ready(fn, *args):
    return lambda: jax.block_until_ready(fn(*args))


def bench(n, d, v, block, rounds, dtype, torch_parts, timer, torch_rounds=2):
    keys = jax.random.split(jax.random.key(0), 3)
    hidden = jax.random.normal(keys[0], (n, d), dtype)
    weight = (jax.random.normal(keys[1], (d, v)) / np.sqrt(d)).astype(dtype)
    labels = jax.random.randint(keys[2], (n,), 0, v)
    block_size = block or None

    def materialised(h, w):
        return jloss.sparse_categorical_cross_entropy(h @ w, labels)

    def fused(h, w):
        return jloss.linear_cross_entropy(h, w, labels, block_size=block_size)

    compiled, temp = {}, {}
    for name, f in (("mat", materialised), ("fused", fused)):
        compiled[name + "_fwd"] = jax.jit(f).lower(hidden, weight).compile()
        vg = jax.jit(jax.value_and_grad(f, argnums=(0, 1))).lower(hidden, weight).compile()
        compiled[name + "_vg"] = vg
        temp[name] = vg.memory_analysis().temp_size_in_bytes
    fns = {k: _block_until_ready(c, hidden, weight) for k, c in compiled.items()}

    for fn in fns.values():  # warm up
        fn()
    times = _median_times(fns, rounds, timer)

    if torch_parts is not None:
        torch, torch_lce, options = torch_parts
        tdtype = {jnp.float32: torch.float32, jnp.bfloat16: torch.bfloat16}[dtype]
        th = torch.from_numpy(np.array(hidden, np.float32)).to(tdtype)
        tw = torch.from_numpy(np.asarray(weight, np.float32).T.copy()).to(tdtype)  # (V, D)
        ty = torch.from_numpy(np.array(labels, np.int64))

        def torch_vg(opts):
            def run():
                h = th.detach().requires_grad_()
                w = tw.detach().requires_grad_()
                torch_lce(h, w, ty, options=opts).backward()
            return run

        # chunked: options=LinearCrossEntropyOptions(); reference: options=None
        tfns = {"torch_chunked_vg": torch_vg(options), "torch_ref_vg": torch_vg(None)}
        for fn in tfns.values():
            fn()
        torch_timer = QuietTimer(timer.max_foreign, tries=2, max_wait=timer.max_wait)
        times.update(_median_times(tfns, torch_rounds, torch_timer))
        timer.quiet += torch_timer.quiet
        timer.contended += torch_timer.contended
    return times, temp, block or default_block_size(n, v)


# N, D, V, timed: the compile-only size of the scale test, then a size small enough to time
MESH_CONFIGS = [(2048, 512, 131072, False), (1024, 256, 16384, True)]
QUICK_MESH_CONFIGS = [(64, 16, 512, True)]
MESH_PROGRAMS = ("fused", "gspmd", "materialised")


def _mesh_program(name):
    if name == "fused":
        return lambda h, w, y: jloss.linear_cross_entropy(h, w, y, vocab_axis="model",
                                                          batch_axes=("data",))
    if name == "gspmd":
        return lambda h, w, y: jloss.linear_cross_entropy(h, w, y)
    return lambda h, w, y: jloss.sparse_categorical_cross_entropy(h @ w, y)


def bench_mesh(n, d, v, mesh, rounds, timer, timed=True):
    """``{program: (scratch bytes per device, collectives, seconds or None)}`` on ``mesh``."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    specs = (P("data", None), P(None, "model"), P("data"))
    shapes = ((n, d), (d, v), (n,))
    dtypes = (jnp.float32, jnp.float32, jnp.int32)
    results, fns = {}, {}
    with jax.set_mesh(mesh):
        abstract = [jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, spec))
                    for shape, dtype, spec in zip(shapes, dtypes, specs, strict=True)]
        for name in MESH_PROGRAMS:
            vg = jax.jit(jax.value_and_grad(_mesh_program(name), argnums=(0, 1)))
            compiled = vg.lower(*abstract).compile()
            results[name] = [compiled.memory_analysis().temp_size_in_bytes,
                             collectives(compiled.as_text()), None]
            fns[name] = compiled
        if timed:
            keys = jax.random.split(jax.random.key(0), 3)
            args = [jax.random.normal(keys[0], (n, d)),
                    jax.random.normal(keys[1], (d, v)) / np.sqrt(d),
                    jax.random.randint(keys[2], (n,), 0, v)]
            args = [jax.device_put(a, NamedSharding(mesh, s)) for a, s in zip(args, specs,
                                                                                strict=True)]
            calls = {name: _block_until_ready(c, *args) for name, c in fns.items()}
            for call in calls.values():
                call()
            for name, t in _median_times(calls, rounds, timer).items():
                results[name][2] = t
    return {k: tuple(r) for k, r in results.items()}


def describe_collectives(found):
    """Collectives as ``kind shape (bytes)``, identical ones counted."""
    counts = {}
    for kind, shapes, size in found:
        key = f"{kind} {'+'.join('x'.join(map(str, s)) or 'scalar' for s in shapes)}"
        counts[key] = (counts.get(key, (0, size))[0] + 1, size)
    return "; ".join(f"{c}x {k} ({size / 2**20:.2f} MiB)" if size >= 2**16
                     else f"{c}x {k} ({size} B)" for k, (c, size) in counts.items())


def _preamble(details):
    """The command line, the software and machine (``details``), and whether a GPU ran."""
    print("command: python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]]))
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {details}")
    if jax.default_backend() == "cpu":
        print("No GPU is available in this run: all numbers are CPU numbers; GPU numbers "
              "are not measured.")


def main_mesh(args):
    data, model = (int(x) for x in args.mesh.lower().split("x"))
    mesh = jax.make_mesh((data, model), ("data", "model"),
                         axis_types=(jax.sharding.AxisType.Auto,) * 2)
    configs = QUICK_MESH_CONFIGS if args.quick else MESH_CONFIGS
    timer = QuietTimer(args.max_foreign)
    _preamble(f"mesh data x model = {data} x {model} on {jax.device_count()} devices, "
              f"{os.cpu_count()} CPU cores, float32, value and grad (hidden, weight), "
              f"median of {args.rounds} interleaved rounds")
    print()
    print("| N | D | V | program | scratch / device MiB | scratch vs fused | fwd+bwd ms | "
          "time vs fused | collectives (result bytes) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, d, v, timed in configs:
        res = bench_mesh(n, d, v, mesh, args.rounds, timer, timed)
        base_temp, _, base_time = res["fused"]
        for name, (temp, found, t) in res.items():
            ms = "-" if t is None else f"{t * 1e3:.0f}"
            ratio = "-" if t is None else f"{t / base_time:.2f}x"
            print(f"| {n} | {d} | {v} | {name} | {temp / 2**20:.1f} | "
                  f"{temp / max(base_temp, 1):.1f}x | {ms} | {ratio} | {describe_collectives(found)} |",
                  flush=True)
    print()
    print("Collectives are HLO instructions: the fused head's (D, block) all-reduce of dweight "
          "over the data axis sits in its loop and runs once per block of V / model classes.")
    print(f"{timer.quiet} timing samples taken on a quiet machine, {timer.contended} kept despite "
          f"other processes using > {args.max_foreign} cores.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--config", action="append", metavar="N,D,V,BLOCK",
                        help="a size to run (BLOCK 0 = block_size=None); repeatable")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch columns")
    parser.add_argument("--torch-rounds", type=int, default=2,
                        help="timing rounds for PyTorch (its chunked CPU path is slow)")
    parser.add_argument("--max-foreign", type=float, default=0.1,
                        help="retake a sample when other processes used more than this many "
                             "cores meanwhile (default 0.1; a large value disables the check)")
    parser.add_argument("--mesh", metavar="DATAxMODEL",
                        help="measure on a data x model mesh instead (e.g. 2x2), see above")
    args = parser.parse_args(argv)
    if args.mesh:
        return main_mesh(args)
    if args.config:
        configs = [tuple(int(x) for x in c.split(",")) for c in args.config]
    else:
        configs = QUICK_CONFIGS if args.quick else DEFAULT_CONFIGS
    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32

    torch_parts, torch_note = (None, "skipped (--no-torch)") if args.no_torch else _torch()
    _preamble(f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
              f"dtype {args.dtype}, median of {args.rounds} interleaved rounds")
    if torch_parts is None:
        print(f"PyTorch columns: skipped, {torch_note}.")
    else:
        print(f"PyTorch columns: {torch_note}, torch.nn.functional.linear_cross_entropy on the "
              f"same CPU, chunked (options=LinearCrossEntropyOptions()) and reference "
              f"(options=None) paths, median of {args.torch_rounds} rounds.")
    timer = QuietTimer(args.max_foreign)
    print()
    header = ["N", "D", "V", "block", "fwd mat ms", "fwd fused ms", "fwd ratio",
              "fwd+bwd mat ms", "fwd+bwd fused ms", "fwd+bwd ratio",
              "scratch mat MiB", "scratch fused MiB", "memory ratio"]
    if torch_parts is not None:
        header += ["torch chunked fwd+bwd ms", "torch reference fwd+bwd ms",
                   "fused / torch chunked fwd+bwd"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for n, d, v, block in configs:
        t, temp, used = bench(n, d, v, block, args.rounds, dtype, torch_parts, timer,
                              args.torch_rounds)
        label = f"{used}" if block else f"None→{used}"
        row = [n, d, v, label,
               f"{t['mat_fwd'] * 1e3:.0f}", f"{t['fused_fwd'] * 1e3:.0f}",
               f"{t['fused_fwd'] / t['mat_fwd']:.2f}x",
               f"{t['mat_vg'] * 1e3:.0f}", f"{t['fused_vg'] * 1e3:.0f}",
               f"{t['fused_vg'] / t['mat_vg']:.2f}x",
               f"{temp['mat'] / 2**20:.1f}", f"{temp['fused'] / 2**20:.1f}",
               f"1/{temp['mat'] / max(temp['fused'], 1):.0f}"]
        if torch_parts is not None:
            row += [f"{t['torch_chunked_vg'] * 1e3:.0f}", f"{t['torch_ref_vg'] * 1e3:.0f}",
                    f"{t['fused_vg'] / t['torch_chunked_vg']:.2f}x"]
        print("| " + " | ".join(str(x) for x in row) + " |", flush=True)
    print()
    print(f"{timer.quiet} timing samples taken on a quiet machine, {timer.contended} kept despite "
          f"other processes using > {args.max_foreign} cores; load average at the end "
          f"{os.getloadavg()[0]:.2f}.")


if __name__ == "__main__":
    main()

"""The benchmark scripts behind the README's tables still run (smoke runs on tiny sizes).

They measure; nothing here asserts a time. What is asserted is that they run
end to end, print their tables, and that their own correctness checks pass
(the per-example gradients of the loop equal the vmapped ones).
"""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import train_step  # noqa: E402


def test_losses_benchmark_prints_its_table():
    names = "mean_squared_error,sparse_categorical_cross_entropy"
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "losses.py"), "--quick",
                          "--only", names], capture_output=True, text=True, timeout=300,
                         check=True).stdout
    rows = [[cell.strip() for cell in line.split("|")[1:4]] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| loss")]
    peers = [row for row in rows if row[2] != "torch"]  # torch rows only where it is installed
    assert peers == [[name, dtype, "optax"] for name in names.split(",")
                     for dtype in ("float32", "bfloat16")], out


def test_losses_benchmark_covers_every_public_loss():
    """A loss in the registry of the convention tests has a row in the benchmark's table."""
    import _registry
    import losses  # benchmarks/losses.py

    rows = {case.name.split("(")[0] for case in losses.CASES}
    assert {case.name for case in _registry.CASES} <= rows


def test_train_step_benchmark_functions():
    sizes = (4, 8, 3)
    ours, hand, ratio = train_step.bench_train_step(sizes, 16, rounds=3, seconds=0.001)
    assert ours > 0 and hand > 0 and ratio > 0
    results = train_step.bench_per_example(sizes, 8, rounds=3, seconds=0.001)
    assert set(results) == {"jit(grad)", "jax.grad (eager)"}
    assert all(vmap > 0 and loop > 0 for vmap, loop, _ in results.values())


def test_train_step_benchmark_worker_processes():
    # the step ratios come from fresh worker processes that print one JSON line each
    runs = train_step.step_cases_in_processes(1, ["--quick"])
    assert len(runs) == 1 and len(runs[0]) == len(train_step.STEP_CASES)
    assert all(ours > 0 and hand > 0 and ratio > 0 for ours, hand, ratio in runs[0])


def test_linear_cross_entropy_mesh_benchmark_functions():
    import jax
    import linear_cross_entropy as lce

    mesh = jax.make_mesh((2, 2), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    timer = lce.QuietTimer(max_foreign=1e9, tries=1, max_wait=0)
    results = lce.bench_mesh(64, 16, 512, mesh, rounds=1, timer=timer)
    assert set(results) == set(lce.MESH_PROGRAMS)
    for temp, found, seconds in results.values():
        assert temp >= 0 and seconds > 0 and found  # every program has collectives on this mesh
    assert not [c for c in results["fused"][1] if c[0] == "all-gather"]
    assert "all-reduce 16x256" in lce.describe_collectives(results["fused"][1])  # dweight, one shard


def test_ctc_benchmark_prints_its_table():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ctc.py"), "--quick",
                          "--rounds", "1", "--per-round", "1"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| 4 | 30 | 8 | 6 |")]
    assert len(rows) == 1, out
    assert float(rows[0][-3]) < 1e-3, out  # the loss differs from optax by round-off only


def test_post_training_benchmark_rows():
    import post_training
    from linear_cross_entropy import QuietTimer

    timer = QuietTimer(max_foreign=1e9, tries=1, max_wait=0)
    rows = list(post_training.run((256, 32, 1024), (256, 32, 1024), rounds=1, timer=timer))
    assert [r[0] for r in rows] == ["dpo(sequence_log_probs(linear_log_probs))", *post_training.DISTILL]
    # a smoke run: the memory target is asserted at full size in tests/test_post_training_heads.py
    assert all(mem_ratio > 0 and time_ratio > 0 for _, _, _, mem_ratio, time_ratio, _, _ in rows)

"""Test configuration: 4 forced CPU devices, set before jax is imported."""

import os
import subprocess
import sys

# Most of the suite's time is XLA compiling small programs once each (a jit per loss, option
# and check). Two compiler settings cut that by more than half without changing what a program
# computes: LLVM's optimisation passes off (as ``jloss demo`` does; no fast-math at any level,
# so the floating-point semantics are the same) and XLA:CPU's classic elemental emitters in
# place of its fusion emitters. Subprocesses (notebook kernels, benchmark and multi-process
# workers) inherit them. A value already in the environment's XLA_FLAGS is kept; XLA aborts on
# a flag it does not know, so they are used only where this jaxlib accepts them.
COMPILE_FAST = [flag for flag in ("--xla_backend_optimization_level=0",
                                  "--xla_cpu_use_fusion_emitters=false")
                if flag.split("=")[0] not in os.environ.get("XLA_FLAGS", "")]
if COMPILE_FAST and subprocess.run(
        [sys.executable, "-c", "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"],
        env=dict(os.environ, XLA_FLAGS=" ".join(COMPILE_FAST), JAX_PLATFORMS="cpu"),
        capture_output=True).returncode != 0:
    COMPILE_FAST = []
os.environ["XLA_FLAGS"] = " ".join(filter(None, [
    *COMPILE_FAST,
    os.environ.get("XLA_FLAGS", ""),
    "--xla_force_host_platform_device_count=4",
]))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (after XLA_FLAGS)
import pytest  # noqa: E402


@pytest.fixture
def x64():
    """Run a test with 64-bit floats enabled."""
    with jax.enable_x64(True):
        yield

"""Test configuration: 4 forced CPU devices, set before jax is imported."""

import os

# Most of the suite's time is XLA compiling small programs once each (a jit per loss, option
# and check). Two compiler settings cut that by about two thirds without changing what a
# program computes: LLVM's optimisation passes off (no fast-math at any level, so floating
# point semantics are the same) and XLA:CPU's classic elemental emitters in place of the
# fusion emitters. A flag given in the environment's XLA_FLAGS comes later and wins.
COMPILE_FAST = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
os.environ["XLA_FLAGS"] = " ".join(
    (COMPILE_FAST, os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=4")
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import pytest


@pytest.fixture
def x64():
    """Run a test with 64-bit floats enabled."""
    with jax.enable_x64(True):
        yield

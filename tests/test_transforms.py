"""Eager, jit, vmap, pmap (4 forced CPU devices), shard_map and jax.checkpoint
agree for every row of the registry, in value and gradient."""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import CASES, grads_of, opt_id, params, reference, to_jax
from jax.sharding import Mesh, PartitionSpec

DEVICES = 4
RTOL, ATOL = 1e-5, 1e-6


def _close(a, b, what):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=False):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=RTOL, atol=ATOL,
                                   err_msg=what)


def test_four_cpu_devices_are_forced():
    assert jax.device_count() == DEVICES


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_transforms_agree(case):
    """Per-example value and gradient: eager == jit == vmap == pmap == checkpoint."""
    opts = case.options[0]
    rng = np.random.default_rng(zlib.crc32(f"{case.name}|t".encode()))
    batch = to_jax(case, case.make(rng, (DEVICES,), opts))

    def f(*a):  # the loss of one example (a row of the batch)
        return case.fn(*a, **opts)

    def value_and_grads(*a):
        return f(*a), grads_of(case, f, a)

    def remat_value_and_grads(*a):
        g = jax.checkpoint(f)
        return g(*a), grads_of(case, g, a)

    rows = [tuple(a[i] for a in batch) for i in range(DEVICES)]
    eager = [value_and_grads(*r) for r in rows]
    eager = jax.block_until_ready(jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *eager))
    expected = [reference(case, r, opts) for r in rows]
    np.testing.assert_allclose(np.asarray(eager[0]), expected, rtol=2e-5, atol=1e-6)

    jitted, vmapped, remat = jax.block_until_ready(jax.jit(lambda b: (
        [value_and_grads(*(a[i] for a in b)) for i in range(DEVICES)],
        jax.vmap(value_and_grads)(*b), jax.vmap(remat_value_and_grads)(*b)))(batch))
    _close(jitted, [jax.tree_util.tree_map(lambda x, i=i: x[i], eager) for i in range(DEVICES)],
           "jit")
    _close(vmapped, eager, "vmap")
    _close(remat, eager, "checkpoint")
    _close(jax.block_until_ready(jax.pmap(value_and_grads)(*batch)), eager, "pmap")


@pytest.mark.parametrize("case,opts", **params(which="rich"))
def test_shard_map_sum_equals_global_sum(case, opts):
    """A batch sharded over 4 devices: psum of the local sums is the global sum."""
    rng = np.random.default_rng(zlib.crc32(f"{case.name}|{opt_id(opts)}|s".encode()))
    args = to_jax(case, case.make(rng, (2 * DEVICES,), opts))
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    spec = PartitionSpec("batch")

    def local(*a):
        return jax.lax.psum(case.fn(*a, **opts, reduction="sum"), "batch")

    sharded = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(spec,) * len(args),
                                    out_specs=PartitionSpec()))
    np.testing.assert_allclose(float(sharded(*args)),
                               float(case.fn(*args, **opts, reduction="sum")), rtol=RTOL)

"""Eager, jit, vmap, pmap (4 forced CPU devices), shard_map and jax.checkpoint
agree for every row of the registry, in value and gradient.

The eager / jit / pmap comparison runs as ``chex.variants`` (``without_jit``,
``with_jit``, ``with_pmap``: the example broadcast to every device); vmap and
checkpoint run over a batch of examples. Trees are compared with
``chex.assert_trees_all_close``.
"""

import functools
import inspect
import zlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import CASES, grads_of, opt_id, params, reference, to_jax
from absl.testing import parameterized
from jax.sharding import Mesh, PartitionSpec

import jloss

DEVICES = 4
RTOL, ATOL = 1e-5, 1e-6
BY_NAME = {c.name: c for c in CASES}


def _close(a, b):
    chex.assert_trees_all_close(a, b, rtol=RTOL, atol=ATOL)


def test_four_cpu_devices_are_forced():
    assert jax.device_count() == DEVICES


def _value_and_grads(case, opts, *a):
    """The loss of one example (a row of the batch) and its gradients."""
    def f(*a):
        return case.fn(*a, **opts)

    return f(*a), grads_of(case, f, a)


@functools.cache
def _examples(name):
    """A batch of examples of the case, their eager values and gradients (checked against
    the float64 reference) and the options they were computed with."""
    case = BY_NAME[name]
    opts = case.options[0]
    rng = np.random.default_rng(zlib.crc32(f"{case.name}|t".encode()))
    batch = to_jax(case, case.make(rng, (DEVICES,), opts))
    rows = [tuple(a[i] for a in batch) for i in range(DEVICES)]
    eager = [jax.block_until_ready(_value_and_grads(case, opts, *r)) for r in rows]
    np.testing.assert_allclose([float(v) for v, _ in eager],
                               [reference(case, r, opts) for r in rows], rtol=2e-5, atol=1e-6)
    return opts, batch, rows, eager


class TransformsAgree(chex.TestCase):

    @chex.variants(without_jit=True, with_jit=True, with_pmap=True)
    @parameterized.named_parameters(*[(c.name, c.name) for c in CASES])
    def test_one_example(self, name):
        """Value and gradient of one example: eager == jit == pmap."""
        opts, _, rows, eager = _examples(name)
        fn = self.variant(functools.partial(_value_and_grads, BY_NAME[name], opts))
        for row, expected in list(zip(rows, eager, strict=True))[:2]:
            _close(jax.block_until_ready(fn(*row)), expected)

    @parameterized.named_parameters(*[(c.name, c.name) for c in CASES])
    def test_vmap_and_checkpoint(self, name):
        """Per-example values and gradients over a batch: vmap and vmap of jax.checkpoint."""
        opts, batch, _, eager = _examples(name)
        case = BY_NAME[name]
        stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *eager)

        def remat(*a):
            g = jax.checkpoint(lambda *a: case.fn(*a, **opts))
            return g(*a), grads_of(case, g, a)

        f = functools.partial(_value_and_grads, case, opts)
        vmapped, rematted = jax.block_until_ready(
            jax.jit(lambda b: (jax.vmap(f)(*b), jax.vmap(remat)(*b)))(batch))
        _close(vmapped, stacked)
        _close(rematted, stacked)


def _shardable(case):
    """Independent examples, or coupled ones whose loss gathers the others itself (``axis_name``)."""
    return not case.coupled or "axis_name" in inspect.signature(case.fn).parameters


@pytest.mark.parametrize("case,opts", **params([c for c in CASES if _shardable(c)], "rich"))
def test_shard_map_sum_equals_global_sum(case, opts):
    """A batch sharded over 4 devices: psum of the local sums is the global sum (NT-Xent and the
    generalized Dice couple their examples and take no ``axis_name``, so they are left out)."""
    rng = np.random.default_rng(zlib.crc32(f"{case.name}|{opt_id(opts)}|s".encode()))
    args = to_jax(case, case.make(rng, (2 * DEVICES,), opts))
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    spec = PartitionSpec("batch")

    def local(*a):
        if case.coupled:  # the negatives of every device: the loss reduces over the axis itself
            return case.fn(*a, **opts, reduction="sum", axis_name="batch")
        return jax.lax.psum(case.fn(*a, **opts, reduction="sum"), "batch")

    sharded = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(spec,) * len(args),
                                    out_specs=PartitionSpec()))
    np.testing.assert_allclose(float(sharded(*args)),
                               float(case.fn(*args, **opts, reduction="sum")), rtol=RTOL)


def _bce_pos_weight(x, y, pos_weight):
    return jloss.binary_cross_entropy(x, y, pos_weight=pos_weight, label_smoothing=0.1,
                                      reduction="sum")


def _sparse_class_weights(x, y, class_weights):
    return jloss.sparse_categorical_cross_entropy(x, y, class_weights=class_weights,
                                                  label_smoothing=0.1, reduction="sum")


def _linear_ce(h, y, weight, bias):  # V = 20 in blocks of 8: the blocked loop runs
    return jloss.linear_cross_entropy(h, weight, y, bias=bias, block_size=8, label_smoothing=0.1,
                                      z_loss=1e-3, logit_softcap=5.0, reduction="sum")


def _replicated_cases():
    k = jax.random.split(jax.random.key(0), 6)
    x = jax.random.normal(k[0], (2 * DEVICES, 3))
    h = jax.random.normal(k[1], (2 * DEVICES, 4))
    binary = (jax.random.uniform(k[2], x.shape) > 0.5).astype(jnp.float32)
    labels = jax.random.randint(k[3], (2 * DEVICES,), 0, 3)
    tokens = jax.random.randint(k[4], (2 * DEVICES,), 0, 20)
    return [
        ("bce_pos_weight", _bce_pos_weight, (x, binary), (jnp.array([0.5, 2.0, 3.0]),)),
        ("sparse_class_weights", _sparse_class_weights, (x, labels), (jnp.array([1.0, 2.0, 0.5]),)),
        ("linear_cross_entropy", _linear_ce, (h, tokens),
         (jax.random.normal(k[5], (4, 20)), jnp.linspace(-1.0, 1.0, 20))),
    ]


@pytest.mark.parametrize("name,fn,sharded,replicated", _replicated_cases(),
                         ids=[c[0] for c in _replicated_cases()])
def test_shard_map_with_replicated_operands(name, fn, sharded, replicated):
    """Data parallel inside shard_map: the batch sharded, per-class parameters (pos_weight,
    class weights, the output projection) replicated. Value and every gradient equal the
    unsharded call; the replicated operands' gradients are summed across devices."""
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    specs = (PartitionSpec("batch"),) * len(sharded) + (PartitionSpec(),) * len(replicated)
    args = (*sharded, *replicated)
    floats = tuple(i for i, a in enumerate(args) if jnp.issubdtype(a.dtype, jnp.floating))

    local = jax.shard_map(lambda *a: jax.lax.psum(fn(*a), "batch"), mesh=mesh, in_specs=specs,
                          out_specs=PartitionSpec())
    value, grads = jax.block_until_ready(
        jax.jit(jax.value_and_grad(local, argnums=floats))(*args))
    ref_value, ref_grads = jax.value_and_grad(fn, argnums=floats)(*args)
    np.testing.assert_allclose(float(value), float(ref_value), rtol=RTOL)
    _close(grads, ref_grads)

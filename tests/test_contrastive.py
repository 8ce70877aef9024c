"""info_nce and sigmoid_contrastive: labels, learnable temperature / bias, and the sharded
losses (shard_map and pmap on 4 CPU devices) equal to the loss of the global batch in value
and in every gradient; the SigLIP ring never all-gathers the keys.

Reductions, weights, where (a masked pair leaves the negatives too), dtypes and the
single-device transforms run in the generic tests from the registry rows.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import log_softmax, ref_sigmoid_contrastive
from jax.sharding import Mesh, PartitionSpec
from jax.test_util import check_grads

import jloss

DEVICES, N, D = 4, 8, 5
AXIS = "data"


def _pairs(seed=0, n=N):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D))
    return jnp.asarray(x, jnp.float32), jnp.asarray(0.6 * x + rng.normal(size=(n, D)), jnp.float32)


def _unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_info_nce_with_labels_indexes_the_keys():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(6, D))
    keys = rng.normal(size=(9, D))
    labels = np.array([0, 8, 3, 3, 5, 1])
    got = jloss.info_nce(jnp.asarray(q), jnp.asarray(keys), labels=jnp.asarray(labels),
                         temperature=0.2, reduction="none")
    logp = log_softmax(_unit(q) @ _unit(keys).T / 0.2)
    np.testing.assert_allclose(np.asarray(got), -logp[np.arange(6), labels], rtol=1e-5)
    with pytest.raises(jloss.LossInputError, match=r"labels must be in \[0, 9\)"):
        jloss.info_nce(jnp.asarray(q), jnp.asarray(keys), labels=jnp.asarray(labels + 1))
    with pytest.raises(ValueError, match="symmetric=True needs labels=None"):
        jloss.info_nce(jnp.asarray(q), jnp.asarray(keys), labels=jnp.asarray(labels),
                       symmetric=True)
    with pytest.raises(ValueError, match=r"(?=.*keys)(?=.*\(9, 4\))"):
        jloss.info_nce(jnp.asarray(q), jnp.asarray(keys[:, :4]), labels=jnp.asarray(labels))
    with pytest.raises(ValueError, match="temperature"):
        jloss.info_nce(jnp.asarray(q), jnp.asarray(q), temperature=0.0)


def test_learnable_temperature_and_bias_gradients(x64):
    """Gradients w.r.t. both towers, the temperature and the bias against finite differences
    (first and second order), and the SigLIP value against the float64 formula."""
    x, y = (a.astype(jnp.float64) for a in _pairs())

    def siglip(x, y, t, b):
        return jloss.sigmoid_contrastive(x, y, temperature=t, bias=b)

    def clip(x, y, t):
        return jloss.info_nce(x, y, temperature=t, symmetric=True)

    t, b = jnp.float64(3.0), jnp.float64(-1.5)
    check_grads(jax.jit(siglip), (x, y, t, b), order=2, modes=["rev"])
    check_grads(jax.jit(clip), (x, y, jnp.float64(0.3)), order=2, modes=["rev"])
    np.testing.assert_allclose(float(siglip(x, y, t, b)),
                               ref_sigmoid_contrastive(x, y, 3.0, -1.5).mean(), rtol=1e-12)


LOSSES = {
    "sigmoid_contrastive": lambda x, y, t, b, **kw: jloss.sigmoid_contrastive(
        x, y, temperature=t, bias=b, **kw),
    "info_nce": lambda x, y, t, b, **kw: jloss.info_nce(x, y, temperature=t, **kw),
    "info_nce_symmetric": lambda x, y, t, b, **kw: jloss.info_nce(x, y, temperature=t,
                                                                 symmetric=True, **kw),
}
WHERE = np.array([True, True, False, True, True, True, True, False])  # padding rows
WEIGHTS = np.linspace(0.5, 2.0, N).astype(np.float32)


def _close(a, b, what):
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=2e-5, atol=2e-6,
                                   err_msg=what)


@pytest.mark.parametrize("name", LOSSES)
def test_shard_map_equals_the_global_batch(name):
    """Inside shard_map with axis_name: value and the gradients of both towers, the temperature
    and the bias equal the unsharded loss (autodiff sums the replicated parameters' gradients
    across devices); padding rows masked by where, with NaN in them, stay out."""
    fn = LOSSES[name]
    x, y = _pairs()
    x, y = x.at[2].set(jnp.nan), y.at[7].set(jnp.inf)
    t, b = jnp.float32(4.0), jnp.float32(-2.0)
    args = (x, y, t, b)

    def global_loss(x, y, t, b):
        return fn(x, y, t, b, weights=WEIGHTS, where=WHERE)

    def local_loss(x, y, t, b, w, m):
        return fn(x, y, t, b, weights=w, where=m, axis_name=AXIS)

    mesh = Mesh(np.array(jax.devices()), (AXIS,))
    row = PartitionSpec(AXIS)
    sharded = jax.shard_map(local_loss, mesh=mesh,
                            in_specs=(row, row, PartitionSpec(), PartitionSpec(), row, row),
                            out_specs=PartitionSpec())
    value, grads = jax.block_until_ready(jax.jit(jax.value_and_grad(
        lambda *a: sharded(*a, WEIGHTS, WHERE), argnums=(0, 1, 2, 3)))(*args))
    ref_value, ref_grads = jax.value_and_grad(global_loss, argnums=(0, 1, 2, 3))(*args)
    assert np.isfinite(float(value))
    _close((value, grads), (ref_value, ref_grads), name)
    if name == "info_nce":  # "none" is each device's own rows
        none = jax.block_until_ready(jax.jit(jax.shard_map(
            lambda x, y: jloss.info_nce(x, y, temperature=t, axis_name=AXIS, reduction="none"),
            mesh=mesh, in_specs=(row, row), out_specs=row))(*_pairs()))
        _close(none, jloss.info_nce(*_pairs(), temperature=t, reduction="none"), "none")


@pytest.mark.parametrize("name", ["sigmoid_contrastive", "info_nce_symmetric"])
def test_pmap_equals_the_global_batch(name):
    """Under pmap, a data-parallel step (gradients of the replicated tower weights, temperature
    and bias, then lax.pmean as make_train_step(parallel="pmap") does) equals the global loss."""
    fn = LOSSES[name]
    x, y = _pairs(2)
    rng = np.random.default_rng(3)
    params = (jnp.asarray(rng.normal(size=(D, D)), jnp.float32),
              jnp.asarray(rng.normal(size=(D, D)), jnp.float32), jnp.float32(4.0), jnp.float32(-2.0))

    def loss(params, xb, yb, axis_name=None):
        wx, wy, t, b = params
        return fn(xb @ wx, yb @ wy, t, b, axis_name=axis_name)

    def step(params, xb, yb):
        value, grads = jax.value_and_grad(loss)(params, xb, yb, AXIS)
        return value, jax.lax.pmean(grads, AXIS)

    out = jax.block_until_ready(jax.pmap(step, axis_name=AXIS, in_axes=(None, 0, 0))(
        params, x.reshape(DEVICES, -1, D), y.reshape(DEVICES, -1, D)))
    ref = jax.value_and_grad(loss)(params, x, y)
    for device in range(DEVICES):
        _close(jax.tree_util.tree_map(lambda a, d=device: a[d], out), ref, f"{name} device {device}")


def _collectives(fn):
    mesh = Mesh(np.array(jax.devices()), (AXIS,))
    row = PartitionSpec(AXIS)
    sharded = jax.shard_map(lambda x, y, t, b: fn(x, y, t, b, axis_name=AXIS), mesh=mesh,
                            in_specs=(row, row, PartitionSpec(), PartitionSpec()),
                            out_specs=PartitionSpec())
    x, y = _pairs()
    text = jax.jit(jax.value_and_grad(sharded, argnums=(0, 1, 2, 3))).lower(
        x, y, jnp.float32(4.0), jnp.float32(-2.0)).compile().as_text()
    return set(re.findall(r"\b(all-gather|collective-permute|all-reduce|reduce-scatter)\b", text))


def test_sigmoid_ring_passes_key_blocks_and_never_all_gathers():
    """The compiled value-and-grad of the sharded SigLIP loss moves blocks with
    collective-permutes and reduces scalars with all-reduces; InfoNCE all-gathers."""
    siglip = _collectives(LOSSES["sigmoid_contrastive"])
    assert "collective-permute" in siglip and "all-gather" not in siglip, siglip
    assert "all-gather" in _collectives(LOSSES["info_nce"])


def test_shard_map_labels_index_the_keys_of_every_device():
    """With labels and axis_name, a label is an index into the keys of every device."""
    x, y = _pairs(4)
    labels = jnp.asarray(np.random.default_rng(5).permutation(N))
    t = jnp.float32(0.5)
    mesh = Mesh(np.array(jax.devices()), (AXIS,))
    row = PartitionSpec(AXIS)
    sharded = jax.shard_map(
        lambda q, k, y, t: jloss.info_nce(q, k, labels=y, temperature=t, axis_name=AXIS),
        mesh=mesh, in_specs=(row, row, row, PartitionSpec()), out_specs=PartitionSpec())
    got = jax.block_until_ready(jax.jit(jax.value_and_grad(sharded, argnums=(0, 1, 3)))(
        x, y, labels, t))
    expected = jax.value_and_grad(lambda q, k, t: jloss.info_nce(q, k, labels=labels,
                                                                 temperature=t),
                                  argnums=(0, 1, 2))(x, y, t)
    _close(got, expected, "labels")

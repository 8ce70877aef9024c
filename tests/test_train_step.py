"""make_train_step on one device, under pmap and over a mesh (4 forced CPU devices), and DP-SGD.

Every step is blocked on (``jax.block_until_ready``): on small CPU hosts,
collectives dispatched many steps ahead can deadlock.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jloss

N_DEV = 4


def init_mlp(key, sizes=(5, 8, 3)):
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"w": jax.random.normal(k, (a, b)) / np.sqrt(a), "b": jnp.zeros(b)}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)]


def forward(params, x):
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss_fn(params, batch):
    x, y = batch
    return jloss.sparse_categorical_cross_entropy(forward(params, x), y)


def loss_with_aux(params, batch):
    x, y = batch
    logits = forward(params, x)
    return jloss.sparse_categorical_cross_entropy(logits, y), {"accuracy": jloss.metrics.accuracy(logits, y)}


def batches(n_steps, batch=16, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(batch, 5)).astype(np.float32), rng.integers(0, 3, size=batch).astype(np.int32))
            for _ in range(n_steps)]


PARAMS = init_mlp(jax.random.key(0))
LOSS = jax.jit(loss_fn)
GRAD = jax.jit(jax.grad(loss_fn))  # references, compiled once per batch shape


def test_four_devices_are_forced():
    assert jax.device_count() == N_DEV


def run(step, state, data, parallel=None):
    metrics = []
    if parallel == "pmap":
        state = jloss.replicate(state)
    for batch in data:
        if parallel == "pmap":
            batch = jloss.shard_batch(batch)
        state, m = step(state, batch)
        jax.block_until_ready(state)
        metrics.append(m)
    if parallel == "pmap":
        state = jloss.unreplicate(state)
        metrics = [jax.tree.map(lambda v: v[0], m) for m in metrics]
    return state, metrics


def assert_trees_close(a, b, atol):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


# --------------------------------------------------------------------------- single device


def test_single_device_step_and_metrics():
    tx = jloss.optimizer("sgd", 0.5)
    state = jloss.TrainState.create(params=PARAMS, tx=tx)
    step = jloss.make_train_step(loss_with_aux, has_aux=True)
    batch = batches(1)[0]
    new, m = step(state, batch)
    assert set(m) == {"loss", "grad_norm", "learning_rate", "aux"}
    grads = GRAD(PARAMS, batch)
    np.testing.assert_allclose(m["loss"], LOSS(PARAMS, batch), rtol=1e-6)
    np.testing.assert_allclose(m["grad_norm"], optax.tree.norm(grads), rtol=1e-5)
    assert float(m["learning_rate"]) == pytest.approx(0.5)
    accuracy = jloss.metrics.accuracy(forward(PARAMS, batch[0]), batch[1])
    np.testing.assert_allclose(m["aux"]["accuracy"], accuracy)
    assert_trees_close(new.params, jax.tree.map(lambda p, g: p - 0.5 * g, PARAMS, grads), atol=1e-6)
    assert int(new.step) == 1 and step.parallel is None


def test_plain_optax_optimizer_has_no_learning_rate_metric():
    state = jloss.TrainState.create(params=PARAMS, tx=optax.sgd(0.1))
    _, m = jax.eval_shape(jloss.make_train_step(loss_fn), state, batches(1)[0])
    assert set(m) == {"loss", "grad_norm"}


def sgd_by_hand(params, data, lr):
    for batch in data:
        params = jax.tree.map(lambda p, g: p - lr * g, params, GRAD(params, batch))
    return params


def test_donate():
    state = jloss.TrainState.create(params=PARAMS, tx=jloss.optimizer("sgd", 0.1))
    copy = jax.tree.map(jnp.copy, state)  # donation consumes the input's buffers
    donated, _ = jloss.make_train_step(loss_fn, donate=True)(copy, batches(1)[0])
    assert copy.params[0]["w"].is_deleted()
    assert_trees_close(donated.params, sgd_by_hand(PARAMS, batches(1), 0.1), atol=1e-6)


# --------------------------------------------------------------------------- parallel


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_parallel_paths_match_single_device(opt):
    tx = jloss.optimizer(opt, 0.1)
    state = jloss.TrainState.create(params=PARAMS, tx=tx)
    data = batches(10)
    ref, ref_m = run(jloss.make_train_step(loss_with_aux, has_aux=True), state, data)
    for parallel in ("pmap", "mesh"):
        step = jloss.make_train_step(loss_with_aux, has_aux=True, parallel=parallel)
        assert step.parallel == parallel
        out, m = run(step, state, data, parallel)
        assert_trees_close(out.params, ref.params, atol=1e-5)
        assert_trees_close(out.opt_state, ref.opt_state, atol=1e-5)
        assert int(out.step) == 10
        for key in ("loss", "grad_norm"):
            np.testing.assert_allclose([float(x[key]) for x in m], [float(x[key]) for x in ref_m], rtol=1e-5)
        # aux is the mean over the global batch, not one device's shard
        np.testing.assert_allclose([float(x["aux"]["accuracy"]) for x in m],
                                   [float(x["aux"]["accuracy"]) for x in ref_m], atol=1e-6)
    # the params really moved, so the agreement means something
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), ref.params, PARAMS)
    assert max(jax.tree_util.tree_leaves(moved)) > 0.05


def test_mesh_step_with_an_explicit_mesh():
    state = jloss.TrainState.create(params=PARAMS, tx=jloss.optimizer("sgd", 0.1))
    data = batches(2)
    mesh = jloss.data_mesh(jax.devices()[:2], axis_name="batch")
    out, _ = run(jloss.make_train_step(loss_fn, parallel="mesh", mesh=mesh), state, data)
    assert_trees_close(out.params, sgd_by_hand(PARAMS, data, 0.1), atol=1e-5)
    assert out.params[0]["w"].sharding.mesh.axis_names == ("batch",)


def test_batch_that_does_not_divide_raises():
    state = jloss.TrainState.create(params=PARAMS, tx=jloss.optimizer("sgd", 0.1))
    odd = batches(1, batch=10)[0]
    with pytest.raises(ValueError, match=r"batch size 10 does not divide across 4 devices of mesh axis"):
        jloss.make_train_step(loss_fn, parallel="mesh")(state, odd)
    with pytest.raises(ValueError, match=r"batch size 10 does not divide across 4 devices; use a batch size"):
        jloss.shard_batch(odd)
    with pytest.raises(ValueError, match=r"leading axis of 4 devices.*use jloss.shard_batch"):
        jloss.make_train_step(loss_fn, parallel="pmap")(jloss.replicate(state), batches(1, batch=8)[0])


def test_replicate_unreplicate_shard_batch():
    tree = {"a": jnp.arange(3.0), "s": jnp.float32(2.0)}
    rep = jloss.replicate(tree)
    assert rep["a"].shape == (N_DEV, 3) and rep["s"].shape == (N_DEV,)
    assert len(rep["a"].sharding.device_set) == N_DEV
    back = jloss.unreplicate(rep)
    np.testing.assert_array_equal(back["a"], tree["a"])
    x = np.arange(16 * 2).reshape(16, 2)
    sharded = jloss.shard_batch({"x": x})
    assert sharded["x"].shape == (N_DEV, 4, 2)
    np.testing.assert_array_equal(np.asarray(sharded["x"]).reshape(16, 2), x)


def test_bad_parallel_value():
    with pytest.raises(ValueError, match="parallel must be None, 'pmap' or 'mesh'"):
        jloss.make_train_step(loss_fn, parallel="shard_map")


# --------------------------------------------------------------------------- per-example grads and DP-SGD


def test_per_example_grads_equal_a_loop():
    x, y = batches(1)[0]
    per_ex = jax.jit(jloss.per_example_grads(loss_fn))(PARAMS, (x, y))
    for i in range(len(x)):
        one = GRAD(PARAMS, (x[i:i + 1], y[i:i + 1]))
        assert_trees_close(jax.tree.map(lambda g, i=i: g[i], per_ex), one, atol=1e-6)
    # their mean is the batch gradient
    assert_trees_close(jax.tree.map(lambda g: g.mean(0), per_ex), GRAD(PARAMS, (x, y)), atol=1e-6)


def test_per_example_grads_with_aux():
    x, y = batches(1, batch=4)[0]
    grads, aux = jax.jit(jloss.per_example_grads(loss_with_aux, has_aux=True))(PARAMS, (x, y))
    assert grads[0]["w"].shape == (4, 5, 8)
    expected = np.argmax(forward(PARAMS, x), -1) == y
    np.testing.assert_allclose(aux["accuracy"], expected)


def _clipped_mean_by_hand(params, batch, clip):
    x, y = batch
    total, norms = None, []
    for i in range(len(x)):
        g = GRAD(params, (x[i:i + 1], y[i:i + 1]))
        norms.append(float(optax.tree.norm(g)))
        g = jax.tree.map(lambda v, norm=norms[-1]: v * min(1.0, clip / norm), g)
        total = g if total is None else jax.tree.map(jnp.add, total, g)
    assert min(norms) < clip < max(norms), "the test wants clipping to bind for some examples only"
    return jax.tree.map(lambda v: v / len(x), total)


def test_dp_sgd_without_noise_is_the_mean_of_clipped_grads():
    clip = 2.0
    batch = batches(1, batch=8)[0]
    state = jloss.TrainState.create(params=PARAMS, tx=jloss.optimizer("sgd", 1.0))
    new, m = jloss.make_train_step(loss_fn, dp_clip_norm=clip)(state, batch)
    expected = _clipped_mean_by_hand(PARAMS, batch, clip)
    assert_trees_close(jax.tree.map(lambda a, b: a - b, PARAMS, new.params), expected, atol=1e-6)
    np.testing.assert_allclose(m["grad_norm"], optax.tree.norm(expected), rtol=1e-5)


DP_NOISE = dict(dp_clip_norm=2.0, dp_noise_multiplier=2.0, dp_key=jax.random.key(1))


@functools.cache
def dp_single_step():
    return jloss.make_train_step(loss_fn, **DP_NOISE)


def test_dp_sgd_noise_is_reproducible_and_changes_with_the_step():
    clip, sigma = DP_NOISE["dp_clip_norm"], DP_NOISE["dp_noise_multiplier"]
    batch = batches(1, batch=8)[0]
    state = jloss.TrainState.create(params=PARAMS, tx=jloss.optimizer("sgd", 1.0))
    step = dp_single_step()
    a, _ = step(state, batch)
    b, _ = step(state, batch)
    assert_trees_close(a.params, b.params, atol=0)  # same key, same step: same noise
    later, _ = step(state.replace(step=state.step + 1), batch)
    assert not np.allclose(a.params[0]["w"], later.params[0]["w"])  # another step: other noise
    # noise = update - clipped mean has std sigma * clip / B
    clean = jax.tree.map(lambda p, g: p - g, PARAMS, _clipped_mean_by_hand(PARAMS, batch, clip))
    noise = np.concatenate([np.ravel(x - y) for x, y in zip(jax.tree_util.tree_leaves(a.params),
                                                            jax.tree_util.tree_leaves(clean), strict=True)])
    assert noise.std() == pytest.approx(sigma * clip / 8, rel=0.25)


def test_dp_sgd_noise_is_drawn_once_on_every_path():
    """The same noise on one device, under pmap and over the mesh (not once per device)."""
    state = jloss.TrainState.create(params=PARAMS, tx=jloss.optimizer("sgd", 1.0))
    data = batches(2, batch=8)
    ref, _ = run(dp_single_step(), state, data)
    for parallel in ("pmap", "mesh"):
        out, _ = run(jloss.make_train_step(loss_fn, parallel=parallel, **DP_NOISE), state, data, parallel)
        assert_trees_close(out.params, ref.params, atol=1e-5)


def test_dp_sgd_argument_errors():
    with pytest.raises(ValueError, match="dp_clip_norm must be > 0"):
        jloss.make_train_step(loss_fn, dp_clip_norm=0.0)
    with pytest.raises(ValueError, match=r"needs a PRNG key: pass dp_key=jax.random.key\(seed\)"):
        jloss.make_train_step(loss_fn, dp_clip_norm=1.0, dp_noise_multiplier=1.0)
    with pytest.raises(ValueError, match="dp_noise_multiplier needs dp_clip_norm"):
        jloss.make_train_step(loss_fn, dp_noise_multiplier=1.0)


def test_grad_norm_on_both_paths(monkeypatch):
    from jloss.train import step as step_module

    tree = {"a": jnp.arange(6.0).reshape(2, 3), "b": [jnp.ones(4, jnp.bfloat16), jnp.float32(-2.0)]}
    expected = np.sqrt(np.sum(np.arange(6.0) ** 2) + 4 + 4)
    assert float(step_module._global_norm(tree)) == pytest.approx(expected, rel=1e-6)  # one concatenation
    monkeypatch.setattr(step_module, "_CONCAT_NORM_MAX_SIZE", 0)
    assert float(step_module._global_norm(tree)) == pytest.approx(expected, rel=1e-6)  # per-leaf sums
    assert float(step_module._global_norm({})) == 0.0

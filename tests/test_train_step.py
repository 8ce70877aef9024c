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
from jloss.train.step import parallel_mode

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


def test_per_example_grads_is_jitted():
    f = jloss.per_example_grads(loss_fn)
    x, y = batches(1, batch=4)[0]
    assert f.lower(PARAMS, (x, y)).compile() is not None  # a jax.jit function, not an eager vmap


def test_dp_options_accept_numpy_numbers():
    step = jloss.make_train_step(loss_fn, dp_clip_norm=np.float32(2.0), dp_noise_multiplier=np.int64(2),
                                 dp_key=jax.random.key(1))
    assert step.parallel is None
    jloss.make_train_step(loss_fn, dp_clip_norm=np.int32(1))  # no noise, no key


@pytest.mark.parametrize("options, error, match", [
    (dict(dp_clip_norm=1.0, dp_noise_multiplier=float("nan")), ValueError,
     "dp_noise_multiplier must be >= 0 and finite, got nan"),
    (dict(dp_clip_norm=1.0, dp_noise_multiplier=np.float32(-1)), ValueError,
     "dp_noise_multiplier must be >= 0 and finite, got -1.0"),
    (dict(dp_clip_norm=float("inf")), ValueError, "dp_clip_norm must be > 0 and finite, got inf"),
    (dict(dp_clip_norm=np.float64(0)), ValueError, "dp_clip_norm must be > 0 and finite, got 0.0"),
    (dict(dp_clip_norm="1"), TypeError, "dp_clip_norm must be a real number"),
    (dict(dp_clip_norm=True), TypeError, "dp_clip_norm must be a real number"),
    (dict(dp_noise_multiplier=float("nan")), ValueError, "dp_noise_multiplier must be >= 0 and finite"),
    (dict(dp_noise_multiplier=np.float32(1)), ValueError, "dp_noise_multiplier needs dp_clip_norm"),
    (dict(dp_key=jax.random.key(0)), ValueError, "dp_key needs dp_clip_norm and dp_noise_multiplier > 0"),
    (dict(dp_clip_norm=1.0, dp_key=jax.random.key(0)), ValueError, "dp_key is only used for noise"),
])
def test_dp_option_errors(options, error, match):
    with pytest.raises(error, match=match):
        jloss.make_train_step(loss_fn, **options)


# --------------------------------------------------------------------------- masks under pmap


def masked_loss(params, batch):
    """Two jloss means whose masks and weights make the 4 devices count different numbers of examples."""
    x, y, w, m = batch
    logits = forward(params, x)
    ce = jloss.sparse_categorical_cross_entropy(logits, y, ignore_index=-100, weights=w, where=m)
    return ce + 0.5 * jloss.mean_squared_error(logits[:, 0], x[:, 0], where=m)


def masked_batch(all_masked=False):
    x, y = batches(1, batch=16, seed=3)[0]
    y, m = y.copy(), np.ones(16, bool)
    y[:3] = -100  # device 0 counts 1 of its 4 examples in the first loss
    m[4:6] = False  # device 1 counts 2 in both
    if all_masked:
        y[:], m[:] = -100, False
    w = np.random.default_rng(4).uniform(0.5, 2.0, 16).astype(np.float32)
    return x, y, w, m


@functools.cache
def masked_step(parallel):
    return jloss.make_train_step(masked_loss, parallel=parallel)


def test_pmap_and_mesh_take_the_global_weighted_mean_with_masks():
    state = jloss.TrainState.create(params=PARAMS, tx=jloss.optimizer("sgd", 1.0))
    batch = masked_batch()
    ref, ref_m = run(masked_step(None), state, [batch])
    expected = jax.tree.map(lambda p, g: p - g, PARAMS, jax.grad(masked_loss)(PARAMS, batch))
    assert_trees_close(ref.params, expected, atol=1e-6)
    shards = [tuple(v[4 * d:4 * d + 4] for v in batch) for d in range(N_DEV)]
    mean_of_means = np.mean([float(masked_loss(PARAMS, s)) for s in shards])
    assert abs(mean_of_means - float(ref_m[0]["loss"])) > 0.05  # what pmap gave before
    for parallel in ("pmap", "mesh"):
        out, m = run(masked_step(parallel), state, [batch], parallel)
        np.testing.assert_allclose(float(m[0]["loss"]), float(ref_m[0]["loss"]), rtol=1e-6)
        assert_trees_close(out.params, ref.params, atol=1e-6)


def test_a_jitted_loss_traced_in_another_pmap_first_still_takes_the_global_mean():
    """The global mean is part of jit's cache key: no trace of the per-device mean is reused."""
    ce = jax.jit(functools.partial(jloss.sparse_categorical_cross_entropy, ignore_index=-100))

    def loss(params, batch):
        x, y, w, m = batch
        return ce(forward(params, x), y, weights=w, where=m)

    batch = masked_batch()
    shards = jloss.shard_batch(batch)
    per_device = jax.pmap(loss, axis_name="data")(jloss.replicate(PARAMS), shards)  # traced without it
    state = jloss.TrainState.create(params=PARAMS, tx=jloss.optimizer("sgd", 1.0))
    _, m = run(jloss.make_train_step(loss, parallel="pmap"), state, [batch], "pmap")
    np.testing.assert_allclose(float(m[0]["loss"]), float(loss(PARAMS, batch)), rtol=1e-6)
    assert abs(float(np.mean(per_device)) - float(m[0]["loss"])) > 0.05


def test_pmap_with_everything_masked_is_exactly_zero():
    state = jloss.TrainState.create(params=PARAMS, tx=jloss.optimizer("sgd", 1.0))
    out, m = run(masked_step("pmap"), state, [masked_batch(all_masked=True)], "pmap")
    assert float(m[0]["loss"]) == 0.0 and float(m[0]["grad_norm"]) == 0.0
    assert_trees_close(out.params, PARAMS, atol=0)


# --------------------------------------------------------------------------- the step's type and fit


def test_the_parallel_mode_survives_wrappers():
    state = jloss.TrainState.create(params=PARAMS, tx=jloss.optimizer("sgd", 0.1))
    for parallel in (None, "pmap", "mesh"):
        step = jloss.make_train_step(loss_fn, parallel=parallel)
        assert isinstance(step, jloss.TrainStep) and step.parallel == parallel
        assert parallel_mode(functools.wraps(step)(lambda s, b, step=step: step(s, b)), state) == parallel
        assert parallel_mode(jax.jit(step), state) == parallel
    # any other callable: a replicated state means pmap
    assert parallel_mode(lambda s, b: (s, {}), jloss.replicate(state)) == "pmap"
    assert parallel_mode(lambda s, b: (s, {}), state) is None


def test_fit_shards_batches_for_wrapped_steps():
    data = batches(1, batch=32)[0]
    state = jloss.TrainState.create(params=PARAMS, tx=jloss.optimizer("sgd", 0.1))
    options = dict(epochs=1, batch_size=16, key=0, progress=False)
    ref, _ = jloss.fit(state, jloss.make_train_step(loss_fn), data, **options)
    pstep = jloss.make_train_step(loss_fn, parallel="pmap")
    out, history = jloss.fit(jloss.replicate(state), lambda s, b: pstep(s, b), data, **options)
    assert_trees_close(jloss.unreplicate(out.params), ref.params, atol=1e-5)
    assert len(history.steps) == 2
    out, _ = jloss.fit(state, jax.jit(jloss.make_train_step(loss_fn, parallel="mesh")), data, **options)
    assert_trees_close(out.params, ref.params, atol=1e-5)


def test_pmap_step_needs_a_replicated_state_and_the_others_an_unreplicated_one():
    state = jloss.TrainState.create(params=PARAMS, tx=jloss.optimizer("sgd", 0.1))
    batch = batches(1)[0]
    with pytest.raises(ValueError, match=r"replicated over the 4 local devices.*jloss\.replicate\(state\)"):
        jloss.make_train_step(loss_fn, parallel="pmap")(state, jloss.shard_batch(batch))
    for parallel in (None, "mesh"):
        with pytest.raises(ValueError, match=r"needs an unreplicated state.*use jloss.unreplicate\(state\)"):
            jloss.make_train_step(loss_fn, parallel=parallel)(jloss.replicate(state), batch)


# --------------------------------------------------------------------------- model state and rng


def counting_loss(params, batch, model_state, rng):
    """A model state with a counter, a float statistic of the batch and the step's key."""
    new = {"count": model_state["count"] + 1, "mean": jnp.mean(batch[0]), "key": rng}
    return loss_fn(params, batch), new


def test_pmap_averages_float_model_state_and_takes_the_rest_from_device_0():
    model_state = {"count": jnp.int32(5), "mean": jnp.float32(0), "key": jax.random.key(0)}
    state = jloss.TrainState.create(params=PARAMS, tx=jloss.optimizer("sgd", 0.1), model_state=model_state,
                                    rng=3)
    batch = batches(1)[0]
    step = jloss.make_train_step(counting_loss, parallel="pmap")
    out = jax.block_until_ready(step(jloss.replicate(state), jloss.shard_batch(batch))[0])
    rng, key = jax.random.split(jax.random.key(3))
    np.testing.assert_array_equal(out.model_state["count"], [6] * N_DEV)
    np.testing.assert_allclose(out.model_state["mean"], [batch[0].mean()] * N_DEV, rtol=1e-6)
    device_0 = jax.random.key_data(jax.random.fold_in(key, 0))
    np.testing.assert_array_equal(jax.random.key_data(out.model_state["key"]), np.stack([device_0] * N_DEV))
    np.testing.assert_array_equal(jax.random.key_data(out.rng), np.stack([jax.random.key_data(rng)] * N_DEV))


def test_stateful_step_errors():
    batch = batches(1)[0]
    tx = jloss.optimizer("sgd", 0.1)
    state = jloss.TrainState.create(params=PARAMS, tx=tx, model_state={"n": jnp.zeros((), jnp.int32)})
    with pytest.raises(TypeError, match=r"loss_fn\(params, batch, model_state, rng\), which must return "
                                        r"\(loss, new_model_state\); got"):
        jloss.make_train_step(lambda p, b, ms, rng: loss_fn(p, b))(state, batch)
    with pytest.raises(TypeError, match=r"must return \(loss, \(new_model_state, aux\)\)"):
        jloss.make_train_step(lambda p, b, ms, rng: (loss_fn(p, b), ms), has_aux=True)(state, batch)
    with pytest.raises(ValueError, match=r"new model state unlike state\.model_state"):
        jloss.make_train_step(lambda p, b, ms, rng: (loss_fn(p, b), {"n": 1.0}))(state, batch)
    with pytest.raises(ValueError, match=r"DP-SGD .* does not support a state with model_state or rng"):
        jloss.make_train_step(counting_loss, dp_clip_norm=1.0)(state, batch)
    with pytest.raises(TypeError, match="rng must be None, an int seed or a PRNG key"):
        jloss.TrainState.create(params=PARAMS, tx=tx, rng=1.5)
    # without an rng, loss_fn gets None
    new, _ = jloss.make_train_step(lambda p, b, ms, rng: (loss_fn(p, b), {"n": ms["n"] + (rng is None)}))(
        state, batch)
    assert int(new.model_state["n"]) == 1 and new.rng is None

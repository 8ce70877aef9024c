"""Checkpoints: stop, restore, continue = an uninterrupted run, bit for bit; no stale or damaged data."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jloss

pytest.importorskip("orbax.checkpoint")


def loss_fn(params, batch):
    x, y = batch
    return jloss.mean_squared_error(jnp.tanh(x @ params["w"] + params["b"]) @ params["v"], y)


def setup():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(4, 8)), jnp.float32), "b": jnp.zeros(8),
              "v": jnp.asarray(rng.normal(size=(8, 1)), jnp.float32)}
    data = [(rng.normal(size=(16, 4)).astype(np.float32), rng.normal(size=(16, 1)).astype(np.float32))
            for _ in range(8)]
    tx = jloss.optimizer("adamw", 1e-2, schedule="warmup_cosine", warmup_steps=2, decay_steps=8,
                         clip_norm=1.0, weight_decay=1e-3)
    return jloss.TrainState.create(params=params, tx=tx), data


STEP = jloss.make_train_step(loss_fn)


def train(state, batches):
    for batch in batches:
        state, _ = STEP(state, batch)
        jax.block_until_ready(state)
    return state


def test_stop_restore_continue_is_bitwise_equal(tmp_path):
    fresh, data = setup()
    uninterrupted = train(fresh, data)

    first_half = train(fresh, data[:3])
    assert jloss.save_checkpoint(tmp_path / "ckpt", first_half) == 3
    target, _ = setup()  # a new process would rebuild the state like this
    restored = jloss.restore_checkpoint(tmp_path / "ckpt", target)
    assert isinstance(restored, jloss.TrainState) and int(restored.step) == 3
    assert restored.tx is target.tx
    resumed = train(restored, data[3:])

    leaves = jax.tree_util.tree_leaves
    for a, b in zip(leaves(resumed), leaves(uninterrupted), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_steps_latest_and_explicit(tmp_path):
    state, data = setup()
    directory = tmp_path / "run"
    assert jloss.train.checkpoint_steps(directory) == []
    s1 = train(state, data[:1])
    s2 = train(s1, data[1:2])
    jloss.save_checkpoint(directory, s1)
    jloss.save_checkpoint(directory, s2)
    jloss.save_checkpoint(directory, s2, step=10)
    assert jloss.train.checkpoint_steps(directory) == [1, 2, 10]
    assert int(jloss.restore_checkpoint(directory, state).step) == 2  # the latest holds state.step 2
    restored = jloss.restore_checkpoint(directory, state, step=1)
    np.testing.assert_array_equal(restored.params["w"], s1.params["w"])


def test_max_to_keep(tmp_path):
    state, data = setup()
    for i in range(3):
        state = train(state, data[i:i + 1])
        jloss.save_checkpoint(tmp_path, state, max_to_keep=2)
    assert jloss.train.checkpoint_steps(tmp_path) == [2, 3]


def test_missing_checkpoint_errors(tmp_path):
    state, _ = setup()
    with pytest.raises(FileNotFoundError, match="no checkpoint found"):
        jloss.restore_checkpoint(tmp_path / "nothing", state)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint found in .*nothing' \(looking for step 4\)"):
        jloss.restore_checkpoint(tmp_path / "nothing", state, step=4)
    jloss.save_checkpoint(tmp_path, state)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint of step 7 .* saved steps: \[0\]"):
        jloss.restore_checkpoint(tmp_path, state, step=7)


def test_saving_an_existing_step_raises_unless_overwrite(tmp_path):
    s0, data = setup()
    s1 = train(s0, data[:1])
    assert jloss.save_checkpoint(tmp_path, s0, step=5) == 5
    with pytest.raises(FileExistsError, match=rf"step 5 in '{tmp_path}' already exists.*overwrite=True"):
        jloss.save_checkpoint(tmp_path, s1, step=5)
    np.testing.assert_array_equal(jloss.restore_checkpoint(tmp_path, s0).params["w"], s0.params["w"])
    assert jloss.save_checkpoint(tmp_path, s1, step=np.int64(5), overwrite=True) == 5
    np.testing.assert_array_equal(jloss.restore_checkpoint(tmp_path, s0).params["w"], s1.params["w"])
    # a step below the latest one is saved too (orbax alone would skip it without a word)
    jloss.save_checkpoint(tmp_path, s0, step=2)
    assert jloss.train.checkpoint_steps(tmp_path) == [2, 5]
    np.testing.assert_array_equal(jloss.restore_checkpoint(tmp_path, s1, step=2).params["w"], s0.params["w"])


@pytest.mark.parametrize("damage", ["garbage_json", "truncated_json", "truncated_data", "missing_metadata"])
def test_a_damaged_checkpoint_names_its_directory_and_step(tmp_path, damage):
    state, _ = setup()
    jloss.save_checkpoint(tmp_path, state, step=3)
    files = sorted(p for p in (tmp_path / "3").rglob("*") if p.is_file())
    metadata = next(p for p in files if p.name == "_METADATA")
    if damage == "garbage_json":
        metadata.write_text("garbage")
    elif damage == "truncated_json":
        metadata.write_bytes(metadata.read_bytes()[:100])
    elif damage == "missing_metadata":
        metadata.unlink()
    else:  # every data chunk of the array store cut in half
        for chunk in (p for p in files if p.parent.name == "d"):
            chunk.write_bytes(chunk.read_bytes()[:len(chunk.read_bytes()) // 2])
    with pytest.raises(ValueError, match=rf"cannot restore the checkpoint of step 3 in '{tmp_path}'"):
        jloss.restore_checkpoint(tmp_path, state)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class StatefulState:
    """A TrainState-like pytree with a model state (batch statistics, a counter) and a PRNG key."""

    step: jax.Array
    params: dict
    model_state: dict
    rng: jax.Array


def test_model_state_and_rng_round_trip_bitwise(tmp_path):
    rng = np.random.default_rng(1)
    state = StatefulState(jnp.asarray(7, jnp.int32), {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)},
                          {"mean": jnp.asarray(rng.normal(size=2), jnp.float32), "count": jnp.asarray(7)},
                          jax.random.split(jax.random.key(5))[1])
    jloss.save_checkpoint(tmp_path, state)
    target = jax.tree.map(jnp.zeros_like, state)
    target = dataclasses.replace(target, rng=jax.random.key(0))
    restored = jloss.restore_checkpoint(tmp_path, target, step=7)
    assert isinstance(restored, StatefulState)
    np.testing.assert_array_equal(jax.random.key_data(restored.rng), jax.random.key_data(state.rng))
    assert jax.random.key_impl(restored.rng) == jax.random.key_impl(state.rng)
    for a, b in zip(jax.tree.leaves(restored.model_state) + jax.tree.leaves(restored.params),
                    jax.tree.leaves(state.model_state) + jax.tree.leaves(state.params), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

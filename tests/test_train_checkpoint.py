"""Checkpoints: stop after k steps, restore, continue = an uninterrupted run, bit for bit."""

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
    jloss.save_checkpoint(tmp_path, state)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint of step 7 .* saved steps: \[0\]"):
        jloss.restore_checkpoint(tmp_path, state, step=7)

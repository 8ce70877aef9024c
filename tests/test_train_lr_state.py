"""jloss.train.lr_state: the learning rate stored in an optimizer state (get, set, settable)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jloss
from jloss.train.lr_state import learning_rate_settable

PARAMS = {"w": np.ones(3, np.float32)}


@pytest.mark.parametrize("options", [{}, {"clip_norm": 1.0}, {"skip_nonfinite": True},
                                     {"weight_decay": 1e-4}, {"accumulate_steps": 2}])
def test_set_learning_rate_reaches_the_injected_rate(options):
    opt_state = jloss.optimizer("adam", 1e-3, **options).init(PARAMS)
    assert learning_rate_settable(opt_state)
    changed = jloss.set_learning_rate(opt_state, 0.5)
    assert float(jloss.learning_rate(changed)) == pytest.approx(0.5)
    assert float(jloss.learning_rate(opt_state)) == pytest.approx(1e-3)  # a new state, not edited
    assert jax.tree.structure(changed) == jax.tree.structure(opt_state)


def test_the_next_update_uses_the_rate_that_was_set():
    tx = jloss.optimizer("sgd", 0.1)
    grads = {"w": np.full(3, 2.0, np.float32)}
    opt_state = jloss.set_learning_rate(tx.init(PARAMS), 0.25)
    updates, new_state = tx.update(grads, opt_state, PARAMS)
    np.testing.assert_allclose(updates["w"], -0.25 * 2.0)  # sgd: -lr * g
    assert float(jloss.learning_rate(new_state)) == pytest.approx(0.25)


def test_set_learning_rate_per_run_under_vmap():
    tx = jloss.optimizer("sgd", 0.1)
    rates = jnp.array([0.1, 1.0, 3.0])
    states = jax.vmap(lambda lr: jloss.set_learning_rate(tx.init(PARAMS), lr))(rates)
    np.testing.assert_allclose(jloss.learning_rate(states), rates)


def test_a_schedule_or_a_plain_optax_state_is_not_settable():
    scheduled = jloss.optimizer("adam", 1e-3, schedule="cosine", decay_steps=10).init(PARAMS)
    assert jloss.learning_rate(scheduled) is not None and not learning_rate_settable(scheduled)
    warm = jloss.optimizer("sgd", 0.1, warmup_steps=5).init(PARAMS)  # a warm-up is a schedule
    assert not learning_rate_settable(warm)
    plain = optax.adam(1e-3).init(PARAMS)
    assert not learning_rate_settable(plain)
    with pytest.raises(ValueError, match="opt_state stores no learning rate"):
        jloss.set_learning_rate(plain, 0.1)


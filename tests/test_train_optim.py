"""jloss.optimizer: every name trains, schedules give the expected rates, and the options do what they say."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jloss
from jloss.train.optim import OPTIMIZERS

TARGET = jnp.array([1.0, -2.0, 0.5, 3.0])


def quadratic(params):
    return jnp.sum((params["x"] - TARGET) ** 2)


def run(tx, grads_seq, params):
    """Apply ``tx`` to a sequence of gradient pytrees; return the final state."""
    state = jloss.TrainState.create(params=params, tx=tx)
    for g in grads_seq:
        state = state.apply_gradients(g)
    return state


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_optimizer_reduces_a_quadratic(name):
    tx = jloss.optimizer(name, 0.1)
    params = {"x": jnp.zeros(4)}

    @jax.jit
    def train(params):
        state = jloss.TrainState.create(params=params, tx=tx)
        body = lambda _, s: s.apply_gradients(jax.grad(quadratic)(s.params))  # noqa: E731
        return jax.lax.fori_loop(0, 100, body, state).params

    start, end = float(quadratic(params)), float(quadratic(train(params)))
    assert end < 0.5 * start, (name, start, end)


def test_required_names_exist():
    required = {"sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "lion"}
    assert required <= set(OPTIMIZERS)


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamm'; known optimizers: .*adam, adamax"):
        jloss.optimizer("adamm", 1e-3)


def test_options_reach_the_optax_constructor():
    g = [{"x": jnp.array([1.0, -2.0])}, {"x": jnp.array([0.5, 0.5])}, {"x": jnp.array([-1.0, 3.0])}]
    p = {"x": jnp.zeros(2)}
    for ours, theirs in [
        (jloss.optimizer("momentum", 0.1, momentum=0.5), optax.sgd(0.1, momentum=0.5)),
        (jloss.optimizer("nesterov", 0.1), optax.sgd(0.1, momentum=0.9, nesterov=True)),
        (jloss.optimizer("adam", 0.1, b1=0.5), optax.adam(0.1, b1=0.5)),
    ]:
        np.testing.assert_allclose(run(ours, g, p).params["x"], run(theirs, g, p).params["x"], rtol=1e-6)


# --------------------------------------------------------------------------- schedules


def _expected_lr(name, t, lr=1.0, total=100, warmup=10, end=0.1, rate=0.5):
    """The rate at step t, written from make_schedule's docstring: a linear warm-up from 0, then
    the schedule; total (decay_steps) counts the whole schedule, warm-up included."""
    if t < warmup:
        return lr * t / warmup
    s, length = t - warmup, total - warmup
    if name == "constant":
        return lr
    if name in ("cosine", "warmup_cosine"):
        return end + (lr - end) * 0.5 * (1 + math.cos(math.pi * min(s, length) / length))
    if name == "linear":
        return lr + (end - lr) * min(s, length) / length
    if name == "exponential":
        return lr * rate ** (s / total)
    raise AssertionError(name)


@pytest.mark.parametrize("warmup", [0, 10])
@pytest.mark.parametrize("name", ["constant", "cosine", "warmup_cosine", "linear", "exponential"])
def test_schedule_values(name, warmup):
    schedule = jloss.make_schedule(name, 1.0, decay_steps=100, warmup_steps=warmup, end_value=0.1,
                                   decay_rate=0.5)
    for t in [0, 1, 5, 10, 37, 50, 99, 100, 150]:
        expected = _expected_lr(name, t, warmup=warmup)
        assert float(schedule(t)) == pytest.approx(expected, rel=1e-5, abs=1e-7), (name, t)


def test_warmup_cosine_is_optax_warmup_cosine_decay():
    ours = jloss.make_schedule("warmup_cosine", 0.3, decay_steps=50, warmup_steps=7, end_value=0.01)
    theirs = optax.warmup_cosine_decay_schedule(0.0, 0.3, 7, 50, end_value=0.01)
    np.testing.assert_allclose([float(ours(t)) for t in range(60)], [float(theirs(t)) for t in range(60)],
                               rtol=1e-6, atol=1e-8)


def test_warmup_without_a_schedule_warms_up_to_the_constant_rate():
    tx = jloss.optimizer("sgd", 0.1, warmup_steps=4)
    state = jloss.TrainState.create(params={"x": jnp.zeros(2)}, tx=tx)
    rates = []
    for _ in range(6):
        state = state.apply_gradients({"x": jnp.ones(2)})
        rates.append(float(jloss.learning_rate(state.opt_state)))
    np.testing.assert_allclose(rates, [0.0, 0.025, 0.05, 0.075, 0.1, 0.1], rtol=1e-6)


def test_train_step_reports_the_scheduled_rate_of_each_update():
    tx = jloss.optimizer("sgd", 1.0, schedule="warmup_cosine", warmup_steps=3, decay_steps=8, end_value=0.1)
    step = jloss.make_train_step(lambda p, b: quadratic(p))
    state = jloss.TrainState.create(params={"x": jnp.zeros(4)}, tx=tx)
    for t in range(10):
        new, metrics = step(state, None)
        expected = _expected_lr("warmup_cosine", t, total=8, warmup=3, end=0.1)
        assert float(metrics["learning_rate"]) == pytest.approx(expected, rel=1e-5, abs=1e-7)
        # the reported rate is the one applied: sgd moves by lr * grad
        grad = jax.grad(quadratic)(state.params)["x"]
        np.testing.assert_allclose(new.params["x"], state.params["x"] - expected * grad, rtol=1e-5, atol=1e-6)
        state = new


def test_any_optax_schedule_as_learning_rate():
    schedule = optax.piecewise_constant_schedule(1.0, {2: 0.1})
    tx = jloss.optimizer("sgd", schedule)
    state = jloss.TrainState.create(params={"x": jnp.zeros(4)}, tx=tx)
    rates = []
    for _ in range(4):
        state = state.apply_gradients({"x": jnp.ones(4)})
        rates.append(float(jloss.learning_rate(state.opt_state)))
    np.testing.assert_allclose(rates, [1.0, 1.0, 0.1, 0.1], rtol=1e-6)


def test_schedule_errors():
    with pytest.raises(ValueError, match="unknown schedule 'cos'; known schedules: constant, cosine"):
        jloss.optimizer("sgd", 0.1, schedule="cos")
    with pytest.raises(ValueError, match="needs decay_steps > 0"):
        jloss.optimizer("sgd", 0.1, schedule="cosine")
    with pytest.raises(ValueError, match="either a schedule name or a schedule"):
        jloss.optimizer("sgd", optax.constant_schedule(0.1), schedule="cosine", decay_steps=10)
    # options that would otherwise be ignored without a word
    with pytest.raises(ValueError, match="decay_steps applies only to a named schedule: pass schedule="):
        jloss.optimizer("sgd", 0.1, decay_steps=100)
    with pytest.raises(ValueError, match="decay_steps and end_value apply only to a named schedule"):
        jloss.optimizer("sgd", 0.1, decay_steps=100, end_value=0.01)
    with pytest.raises(ValueError, match="decay_steps applies only to a named schedule"):
        jloss.optimizer("sgd", 0.1, schedule="constant", decay_steps=100)  # constant does not decay
    with pytest.raises(ValueError, match="learning_rate is already a schedule, so warmup_steps cannot"):
        jloss.optimizer("sgd", optax.constant_schedule(0.1), warmup_steps=5)
    with pytest.raises(ValueError, match=r"needs decay_steps > warmup_steps .*got 10 and 10"):
        jloss.optimizer("sgd", 0.1, schedule="linear", decay_steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="warmup_steps must be an int >= 0, got -1"):
        jloss.make_schedule("constant", 0.1, warmup_steps=-1)


def test_learning_rate_is_none_without_injected_hyperparams():
    assert jloss.learning_rate(optax.sgd(0.1).init({"x": jnp.zeros(2)})) is None


def test_a_numeric_rate_carries_no_step_count_of_its_own():
    # inject_hyperparams' count is read only by schedules: with a number the state holds the
    # inner optimizer's arrays and the rate, nothing more; a schedule keeps its count
    params = {"x": jnp.zeros(2)}
    ours = jloss.optimizer("adam", 0.1).init(params)
    assert len(jax.tree.leaves(ours)) == len(jax.tree.leaves(optax.adam(0.1).init(params))) + 1
    assert ours.count is None and float(jloss.learning_rate(ours)) == pytest.approx(0.1)
    scheduled = jloss.optimizer("adam", 0.1, schedule="cosine", decay_steps=10).init(params)
    assert scheduled.count is not None
    # schedule="constant" without a warm-up is the number itself
    constant = jloss.optimizer("adam", 0.1, schedule="constant").init(params)
    assert constant.count is None and not constant.hyperparams_states


# --------------------------------------------------------------------------- options


def test_clip_by_global_norm():
    tx = jloss.optimizer("sgd", 1.0, clip_norm=1.0)
    p = {"a": jnp.zeros(2), "b": jnp.zeros(1)}
    big = {"a": jnp.array([6.0, 0.0]), "b": jnp.array([8.0])}  # norm 10
    moved = run(tx, [big], p).params
    np.testing.assert_allclose(moved["a"], [-0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(moved["b"], [-0.8], rtol=1e-6)
    small = {"a": jnp.array([0.3, 0.0]), "b": jnp.array([0.4])}  # norm 0.5: untouched
    np.testing.assert_allclose(run(tx, [small], p).params["b"], [-0.4], rtol=1e-6)


def test_weight_decay_coupled_and_decoupled():
    p = {"x": jnp.array([2.0, -4.0])}
    g = {"x": jnp.array([1.0, 1.0])}
    # sgd: L2 added to the gradient
    sgd = run(jloss.optimizer("sgd", 0.1, weight_decay=0.5), [g], p).params["x"]
    np.testing.assert_allclose(sgd, p["x"] - 0.1 * (g["x"] + 0.5 * p["x"]), rtol=1e-6)
    # adamw: decoupled; with a zero gradient only the decay moves the params
    zero = {"x": jnp.zeros(2)}
    adamw = run(jloss.optimizer("adamw", 0.1, weight_decay=0.5), [zero], p).params["x"]
    np.testing.assert_allclose(adamw, p["x"] * (1 - 0.1 * 0.5), rtol=1e-6)


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
def test_skip_nonfinite_leaves_params_unchanged(bad):
    tx = jloss.optimizer("adam", 0.1, skip_nonfinite=True)
    p = {"x": jnp.array([1.0, 2.0])}
    state = jloss.TrainState.create(params=p, tx=tx)
    skipped = state.apply_gradients({"x": jnp.array([1.0, bad])})
    np.testing.assert_array_equal(skipped.params["x"], p["x"])
    assert int(skipped.opt_state.notfinite_count) == 1
    # a finite gradient afterwards trains as if the bad one never happened
    good = {"x": jnp.array([1.0, -1.0])}
    np.testing.assert_allclose(skipped.apply_gradients(good).params["x"],
                               state.apply_gradients(good).params["x"], rtol=1e-6)
    # without the option the NaN gets in
    assert not np.all(np.isfinite(run(jloss.optimizer("adam", 0.1), [{"x": jnp.array([1.0, bad])}], p)
                                  .params["x"]))


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_accumulate_steps_equals_one_step_on_the_mean_gradient(name):
    k = 3
    grads = [{"x": jnp.array([1.0, -2.0, 0.5])}, {"x": jnp.array([0.5, 1.0, 1.0])},
             {"x": jnp.array([-3.0, 0.0, 2.0])}]
    p = {"x": jnp.array([0.1, 0.2, 0.3])}
    state = jloss.TrainState.create(params=p, tx=jloss.optimizer(name, 0.1, accumulate_steps=k))
    for i, g in enumerate(grads):
        state = state.apply_gradients(g)
        if i < k - 1:
            np.testing.assert_array_equal(state.params["x"], p["x"])  # nothing applied yet
    mean = {"x": sum(g["x"] for g in grads) / k}
    expected = run(jloss.optimizer(name, 0.1), [mean], p).params["x"]
    np.testing.assert_allclose(state.params["x"], expected, rtol=1e-6)
    assert float(jloss.learning_rate(state.opt_state)) == pytest.approx(0.1)


def test_options_compose():
    tx = jloss.optimizer("adamw", 1e-2, schedule="warmup_cosine", warmup_steps=2, decay_steps=10,
                         clip_norm=1.0, weight_decay=1e-4, skip_nonfinite=True, accumulate_steps=2)
    state = jloss.TrainState.create(params={"x": jnp.zeros(4)}, tx=tx)
    step = jloss.make_train_step(lambda p, b: quadratic(p))
    losses = []
    for _ in range(12):
        state, m = step(state, None)
        losses.append(float(m["loss"]))
    assert losses[-1] < losses[0]
    assert int(state.step) == 12


def test_one_bad_batch_costs_at_most_one_accumulation_window():
    # today's failure: the NaN stayed in the accumulated gradient, params froze, then turned NaN
    tx = jloss.optimizer("sgd", 0.1, accumulate_steps=2, skip_nonfinite=True)
    start = jloss.TrainState.create(params={"x": jnp.zeros(3)}, tx=tx)
    rng = np.random.default_rng(0)
    good = [{"x": jnp.asarray(rng.normal(size=3), jnp.float32)} for _ in range(13)]
    apply = jax.jit(jloss.TrainState.apply_gradients)  # one compilation for both runs
    state = apply(start, {"x": jnp.array([1.0, jnp.nan, 0.0])})
    np.testing.assert_array_equal(state.params["x"], np.zeros(3))
    for g in good:
        state = apply(state, g)
    clean = start
    for g in good[:12]:
        clean = apply(clean, g)
    # the bad gradient is dropped: 13 good ones make 6 full windows, as without it
    np.testing.assert_array_equal(state.params["x"], clean.params["x"])


@pytest.mark.parametrize("kwargs,match", [
    ({"accumulate_steps": 2.5}, r"accumulate_steps must be an int >= 1, got 2.5"),
    ({"accumulate_steps": 0}, r"accumulate_steps must be an int >= 1, got 0"),
    ({"accumulate_steps": -1}, r"accumulate_steps must be an int >= 1, got -1"),
    ({"accumulate_steps": True}, r"accumulate_steps must be an int >= 1, got True"),
    ({"learning_rate": float("nan")}, r"learning_rate must be a finite number >= 0, got nan"),
    ({"learning_rate": float("inf")}, r"learning_rate must be a finite number >= 0, got inf"),
    ({"learning_rate": -0.1}, r"learning_rate must be a finite number >= 0, got -0.1"),
    ({"learning_rate": -0.1, "schedule": "cosine", "decay_steps": 10}, r"learning_rate must be"),
    ({"clip_norm": 0.0}, r"clip_norm must be a finite number > 0, got 0.0"),
    ({"clip_norm": -1}, r"clip_norm must be a finite number > 0"),
    ({"weight_decay": float("nan")}, r"weight_decay must be a finite number >= 0, got nan"),
    ({"schedule": "cosine", "decay_steps": 10.5}, r"decay_steps must be an int >= 1, got 10.5"),
    ({"schedule": "cosine", "decay_steps": 0}, r"decay_steps must be an int >= 1, got 0"),
    ({"schedule": "cosine", "decay_steps": 10, "end_value": float("nan")}, r"end_value must be a finite"),
    ({"warmup_steps": 1.5}, r"warmup_steps must be an int >= 0, got 1.5"),
    ({"skip_nonfinite": True, "max_consecutive_errors": -1}, r"max_consecutive_errors must be an int >= 0"),
])
def test_numeric_options_are_validated_where_given(kwargs, match):
    kwargs = {"learning_rate": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        jloss.optimizer("sgd", **kwargs)


def test_numpy_numbers_and_any_case_names_are_accepted():
    p = {"x": jnp.zeros(2)}
    g = [{"x": jnp.array([1.0, -2.0])}, {"x": jnp.array([3.0, 0.5])}]
    ours = jloss.optimizer("Adam", np.float32(0.1), accumulate_steps=np.int64(2), clip_norm=np.float64(1.0),
                           schedule="cosine", decay_steps=np.int32(10), warmup_steps=np.int64(2))
    theirs = jloss.optimizer("adam", 0.1, accumulate_steps=2, clip_norm=1.0, schedule="cosine",
                             decay_steps=10, warmup_steps=2)
    np.testing.assert_array_equal(run(ours, g, p).params["x"], run(theirs, g, p).params["x"])
    with pytest.raises(ValueError, match=r"decay_rate must be a finite number > 0, got 0"):
        jloss.make_schedule("exponential", 0.1, decay_steps=10, decay_rate=0)

"""jloss.lr_finder: the LR range test (on a small softmax-regression model)."""

import jax
import numpy as np
import pytest
from _softmax_problem import softmax_regression

import jloss


@pytest.fixture(scope="module")
def problem():
    return softmax_regression()


def test_lr_finder_curve(problem):
    batch, params, loss_fn = problem
    res = jloss.lr_finder(loss_fn, params, batch, min_lr=1e-4, max_lr=1e6, num_steps=80)
    n = len(res.lrs)
    assert 2 <= n <= 80 and res.losses.shape == res.smoothed.shape == (n,)
    ratios = res.lrs[1:] / res.lrs[:-1]
    np.testing.assert_allclose(ratios, (1e6 / 1e-4) ** (1 / 79), rtol=1e-6)  # exponential ramp
    assert res.lrs[0] == pytest.approx(1e-4)
    assert 1e-4 <= res.suggested_lr <= 1e6
    assert res.method in ("steepest", "min/10")
    # the loss falls before it blows up: the minimum is well below the start
    assert np.nanmin(res.smoothed) < 0.7 * res.smoothed[0]
    # with a max rate this large the test stops early on divergence
    assert res.diverged and n < 80
    # the suggestion lies before the minimum of the smoothed curve
    assert res.suggested_lr <= res.min_loss_lr


def test_lr_finder_smoothing_is_bias_corrected_ema(problem):
    batch, params, loss_fn = problem
    res = jloss.lr_finder(loss_fn, params, batch, min_lr=1e-3, max_lr=1e-1, num_steps=20, smoothing=0.5)
    avg, expected = 0.0, []
    for i, v in enumerate(res.losses):
        avg = 0.5 * avg + 0.5 * v
        expected.append(avg / (1 - 0.5 ** (i + 1)))
    np.testing.assert_allclose(res.smoothed, expected, rtol=1e-6)
    assert not res.diverged and len(res.lrs) == 20
    none = jloss.lr_finder(loss_fn, params, batch, min_lr=1e-3, max_lr=1e-1, num_steps=20, smoothing=0.0)
    np.testing.assert_allclose(none.smoothed, none.losses)


def test_lr_finder_min10_method(problem):
    batch, params, loss_fn = problem
    res = jloss.lr_finder(loss_fn, params, batch, min_lr=1e-4, max_lr=1e3, num_steps=60, method="min/10")
    assert res.method == "min/10"
    assert res.suggested_lr == pytest.approx(res.min_loss_lr / 10)
    assert res.min_loss_lr == pytest.approx(res.lrs[int(np.nanargmin(res.smoothed))])


def test_lr_finder_uses_the_states_own_optimizer(problem):
    batch, params, loss_fn = problem
    state = jloss.TrainState.create(params=params, tx=jloss.optimizer("adam", 1e-3))
    own = jloss.lr_finder(loss_fn, state, batch, min_lr=1e-4, max_lr=1.0, num_steps=30)  # default: its own
    explicit = jloss.lr_finder(loss_fn, state, batch, optimizer=None, min_lr=1e-4, max_lr=1.0, num_steps=30)
    sgd = jloss.lr_finder(loss_fn, state, batch, optimizer="sgd", min_lr=1e-4, max_lr=1.0, num_steps=30)
    np.testing.assert_array_equal(own.losses, explicit.losses)
    # Adam's updates do not scale with the gradient: at the same rates it moves faster early on
    assert not np.allclose(own.losses, sgd.losses)
    # the first loss is the loss at the given parameters either way
    assert own.losses[0] == pytest.approx(float(loss_fn(params, batch)), rel=1e-5)
    # the given parameters are unchanged
    np.testing.assert_array_equal(np.asarray(state.params["w"]), params["w"])


def test_lr_finder_default_tests_an_adam_state_with_adam_and_its_moments(problem):
    import optax

    batch, params, loss_fn = problem
    state = jloss.TrainState.create(params=params, tx=jloss.optimizer("adam", 1e-2))
    step = jloss.make_train_step(loss_fn)
    for _ in range(3):  # Adam moments that are not zero: the test must continue from them
        state, _ = step(state, batch)
    res = jloss.lr_finder(loss_fn, state, batch, min_lr=1e-4, max_lr=1e-1, num_steps=12, smoothing=0.0)
    assert len(res.lrs) == 12 and not res.diverged
    # by hand: optax's Adam from the state's moments, the same exponential ramp of rates
    adam = optax.scale_by_adam()
    adam_state = state.opt_state.inner_state[0]
    assert isinstance(adam_state, optax.ScaleByAdamState) and int(adam_state.count) == 3
    p, expected = state.params, []
    for i in range(12):
        loss, grads = jax.value_and_grad(loss_fn)(p, batch)
        expected.append(float(loss))
        updates, adam_state = adam.update(grads, adam_state, p)
        p = jax.tree.map(lambda a, u, i=i: a - 1e-4 * 1e3 ** (i / 11) * u, p, updates)
    np.testing.assert_allclose(res.losses, expected, rtol=1e-5)
    np.testing.assert_allclose(res.lrs, [1e-4 * 1e3 ** (i / 11) for i in range(12)], rtol=1e-6)


def test_lr_finder_with_a_name_starts_a_fresh_optimizer(problem):
    batch, params, loss_fn = problem
    state = jloss.TrainState.create(params=params, tx=jloss.optimizer("adam", 1e-3))
    kwargs = {"min_lr": 1e-4, "max_lr": 1.0, "num_steps": 20}
    from_state = jloss.lr_finder(loss_fn, state, batch, optimizer="momentum", **kwargs)
    from_params = jloss.lr_finder(loss_fn, params, batch, optimizer="momentum", **kwargs)
    np.testing.assert_array_equal(from_state.losses, from_params.losses)
    # a params pytree with no optimizer= gets SGD
    np.testing.assert_array_equal(jloss.lr_finder(loss_fn, params, batch, **kwargs).losses,
                                  jloss.lr_finder(loss_fn, params, batch, optimizer="sgd", **kwargs).losses)


@pytest.mark.parametrize(("make_tx", "why"), [
    (lambda: __import__("optax").sgd(0.1), "does not store its learning rate"),
    (lambda: jloss.optimizer("adam", 1e-3, schedule="cosine", decay_steps=100), "is a schedule"),
])
def test_lr_finder_state_whose_rate_cannot_be_set_falls_back_to_sgd(problem, make_tx, why):
    batch, params, loss_fn = problem
    state = jloss.TrainState.create(params=params, tx=make_tx())
    kwargs = {"min_lr": 1e-4, "max_lr": 1.0, "num_steps": 20}
    with pytest.warns(UserWarning, match=why):
        res = jloss.lr_finder(loss_fn, state, batch, **kwargs)
    np.testing.assert_array_equal(res.losses, jloss.lr_finder(loss_fn, params, batch, optimizer="sgd",
                                                            **kwargs).losses)


def test_lr_finder_options_need_an_optimizer_name_for_an_own_optimizer(problem):
    batch, params, loss_fn = problem
    state = jloss.TrainState.create(params=params, tx=jloss.optimizer("adam", 1e-3))
    with pytest.raises(ValueError, match="optimizer='sgd'"):
        jloss.lr_finder(loss_fn, state, batch, num_steps=5, momentum=0.9)
    # for params, the options go to the fresh SGD, as before
    jloss.lr_finder(loss_fn, params, batch, num_steps=5, momentum=0.9)


def test_lr_finder_batches_list_cycles_and_iterator_ends(problem):
    batch, params, loss_fn = problem
    halves = [{"x": batch["x"][:128], "y": batch["y"][:128]}, {"x": batch["x"][128:], "y": batch["y"][128:]}]
    res = jloss.lr_finder(loss_fn, params, halves, min_lr=1e-4, max_lr=1e-2, num_steps=10)
    assert len(res.lrs) == 10
    short = jloss.lr_finder(loss_fn, params, iter(halves * 2), min_lr=1e-4, max_lr=1e-2, num_steps=10)
    assert len(short.lrs) == 4  # the iterator gave 4 batches


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"min_lr": 1.0, "max_lr": 0.1}, "min_lr"), ({"num_steps": 1}, "num_steps"),
     ({"smoothing": 1.0}, "smoothing"), ({"method": "valley"}, "method"),
     ({"diverge_threshold": 1.0}, "diverge_threshold")],
)
def test_lr_finder_bad_arguments(problem, kwargs, match):
    batch, params, loss_fn = problem
    with pytest.raises(ValueError, match=match):
        jloss.lr_finder(loss_fn, params, batch, **kwargs)


def test_lr_finder_empty_batches(problem):
    _, params, loss_fn = problem
    with pytest.raises(ValueError, match="empty"):
        jloss.lr_finder(loss_fn, params, [])
    with pytest.raises(ValueError, match="no batch"):
        jloss.lr_finder(loss_fn, params, iter([]))

"""jloss.analysis: filter-normalised directions and loss landscapes (on a small softmax-regression model)."""

import jax
import numpy as np
import pytest
from _softmax_problem import softmax_regression

import jloss
from jloss import analysis


@pytest.fixture(scope="module")
def problem():
    return softmax_regression()


def test_filter_normalized_direction():
    rng = np.random.default_rng(1)
    params = {"kernel": rng.standard_normal((4, 6)).astype(np.float32),
              "conv": rng.standard_normal((3, 3, 2, 5)).astype(np.float32),
              "bias": rng.standard_normal(6).astype(np.float32)}
    d = analysis.filter_normalized_direction(0, params)
    assert jax.tree.structure(d) == jax.tree.structure(params)
    # every filter (output unit, the last axis) has the norm of the same filter of the params
    np.testing.assert_allclose(np.linalg.norm(d["kernel"], axis=0), np.linalg.norm(params["kernel"], axis=0),
                               rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(d["conv"]).reshape(-1, 5), axis=0),
                               np.linalg.norm(params["conv"].reshape(-1, 5), axis=0), rtol=1e-5)
    np.testing.assert_array_equal(d["bias"], 0)  # biases are left out by default
    with_bias = analysis.filter_normalized_direction(0, params, ignore_bias=False)
    assert np.linalg.norm(with_bias["bias"]) == pytest.approx(np.linalg.norm(params["bias"]), rel=1e-5)
    # the same key gives the same direction, another key another
    np.testing.assert_array_equal(analysis.filter_normalized_direction(0, params)["kernel"], d["kernel"])
    assert not np.allclose(analysis.filter_normalized_direction(1, params)["kernel"], d["kernel"])
    np.testing.assert_array_equal(analysis.filter_normalized_direction(jax.random.key(3), params)["kernel"],
                                  analysis.filter_normalized_direction(jax.random.key(3), params)["kernel"])


@pytest.fixture(scope="module")
def trained(problem):
    batch, params, loss_fn = problem
    step = jloss.make_train_step(loss_fn)
    state = jloss.TrainState.create(params=params, tx=jloss.optimizer("adam", 0.05))
    for _ in range(200):
        state, _ = step(state, batch)
    return state


def test_loss_landscape_1d(problem, trained):
    batch, _, loss_fn = problem
    state = trained
    land = analysis.loss_landscape(loss_fn, state.params, batch, dims=1, num=21, span=2.0)
    assert land.betas is None and land.losses.shape == (21,) and len(land.directions) == 1
    np.testing.assert_allclose(land.alphas, np.linspace(-2, 2, 21), atol=1e-6)
    center = float(loss_fn(state.params, batch))
    assert land.center_loss == pytest.approx(center, rel=1e-5)
    assert land.losses[10] == pytest.approx(center, rel=1e-5)  # alpha = 0 is the params themselves
    # around trained parameters the loss rises in both directions
    assert land.losses[0] > center and land.losses[-1] > center
    # a point of the curve is the loss at params + alpha * direction
    d = land.directions[0]
    moved = jax.tree.map(lambda p, v: p + 1.0 * v, state.params, d)
    assert land.losses[15] == pytest.approx(float(loss_fn(moved, batch)), rel=1e-5)
    # a TrainState works as well as its params
    same = analysis.loss_landscape(loss_fn, state, batch, dims=1, num=21, span=2.0)
    np.testing.assert_allclose(same.losses, land.losses, rtol=1e-6)


def test_loss_landscape_2d(problem, trained):
    batch, _, loss_fn = problem
    state = trained
    land = analysis.loss_landscape(loss_fn, state.params, batch, dims=2, num=9, key=5, batch_size=16)
    assert land.losses.shape == (9, 9) and land.betas is not None and len(land.directions) == 2
    center = float(loss_fn(state.params, batch))
    assert land.losses[4, 4] == pytest.approx(center, rel=1e-5)
    assert land.losses.min() == pytest.approx(center, rel=0.05)
    d1, d2 = land.directions
    moved = jax.tree.map(lambda p, a, b: p + land.alphas[8] * a + land.betas[1] * b, state.params, d1, d2)
    assert land.losses[8, 1] == pytest.approx(float(loss_fn(moved, batch)), rel=1e-5)


def test_loss_landscape_has_aux(problem):
    batch, params, loss_fn = problem
    land = analysis.loss_landscape(lambda p, b: (loss_fn(p, b), {"n": 1}), params, batch, num=5, has_aux=True)
    assert land.losses.shape == (5,)


@pytest.mark.parametrize(("kwargs", "match"), [({"dims": 3}, "dims"), ({"num": 1}, "num"),
                                               ({"span": 0.0}, "span")])
def test_loss_landscape_bad_arguments(problem, kwargs, match):
    batch, params, loss_fn = problem
    with pytest.raises(ValueError, match=match):
        analysis.loss_landscape(loss_fn, params, batch, **kwargs)

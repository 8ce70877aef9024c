"""jloss.viz: LR range test, loss landscapes, plot helpers (on a small softmax-regression model)."""

import os
import pathlib
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import jax
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import jloss
from jloss import viz

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 5)).astype(np.float32)
    true_w = rng.standard_normal((5, 3)).astype(np.float32)
    y = np.argmax(x @ true_w, -1).astype(np.int32)
    params = {"w": (0.1 * rng.standard_normal((5, 3))).astype(np.float32), "b": np.zeros(3, np.float32)}

    def loss_fn(params, batch):
        logits = batch["x"] @ params["w"] + params["b"]
        return jloss.sparse_categorical_cross_entropy(logits, batch["y"])

    return {"x": x, "y": y}, params, loss_fn


# ------------------------------------------------------------------ lr_finder


def test_lr_finder_curve(problem):
    batch, params, loss_fn = problem
    res = viz.lr_finder(loss_fn, params, batch, min_lr=1e-4, max_lr=1e6, num_steps=80)
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
    res = viz.lr_finder(loss_fn, params, batch, min_lr=1e-3, max_lr=1e-1, num_steps=20, smoothing=0.5)
    avg, expected = 0.0, []
    for i, v in enumerate(res.losses):
        avg = 0.5 * avg + 0.5 * v
        expected.append(avg / (1 - 0.5 ** (i + 1)))
    np.testing.assert_allclose(res.smoothed, expected, rtol=1e-6)
    assert not res.diverged and len(res.lrs) == 20
    none = viz.lr_finder(loss_fn, params, batch, min_lr=1e-3, max_lr=1e-1, num_steps=20, smoothing=0.0)
    np.testing.assert_allclose(none.smoothed, none.losses)


def test_lr_finder_min10_method(problem):
    batch, params, loss_fn = problem
    res = viz.lr_finder(loss_fn, params, batch, min_lr=1e-4, max_lr=1e3, num_steps=60, method="min/10")
    assert res.method == "min/10"
    assert res.suggested_lr == pytest.approx(res.min_loss_lr / 10)
    assert res.min_loss_lr == pytest.approx(res.lrs[int(np.nanargmin(res.smoothed))])


def test_lr_finder_uses_the_states_own_optimizer(problem):
    batch, params, loss_fn = problem
    state = jloss.TrainState.create(params=params, tx=jloss.optimizer("adam", 1e-3))
    own = viz.lr_finder(loss_fn, state, batch, min_lr=1e-4, max_lr=1.0, num_steps=30)  # default: its own
    explicit = viz.lr_finder(loss_fn, state, batch, optimizer=None, min_lr=1e-4, max_lr=1.0, num_steps=30)
    sgd = viz.lr_finder(loss_fn, state, batch, optimizer="sgd", min_lr=1e-4, max_lr=1.0, num_steps=30)
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
    res = viz.lr_finder(loss_fn, state, batch, min_lr=1e-4, max_lr=1e-1, num_steps=12, smoothing=0.0)
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
    from_state = viz.lr_finder(loss_fn, state, batch, optimizer="momentum", **kwargs)
    from_params = viz.lr_finder(loss_fn, params, batch, optimizer="momentum", **kwargs)
    np.testing.assert_array_equal(from_state.losses, from_params.losses)
    # a params pytree with no optimizer= gets SGD
    np.testing.assert_array_equal(viz.lr_finder(loss_fn, params, batch, **kwargs).losses,
                                  viz.lr_finder(loss_fn, params, batch, optimizer="sgd", **kwargs).losses)


@pytest.mark.parametrize("options", [{}, {"clip_norm": 1.0}, {"skip_nonfinite": True},
                                     {"weight_decay": 1e-4}])
def test_set_learning_rate_reaches_the_injected_rate(options):
    params = {"w": np.ones(3, np.float32)}
    state = jloss.TrainState.create(params=params, tx=jloss.optimizer("adam", 1e-3, **options))
    changed = viz._set_learning_rate(state.opt_state, 0.5)
    assert float(jloss.learning_rate(changed)) == pytest.approx(0.5)
    assert float(jloss.learning_rate(state.opt_state)) == pytest.approx(1e-3)  # a new state, not edited


@pytest.mark.parametrize(("make_tx", "why"), [
    (lambda: __import__("optax").sgd(0.1), "does not store its learning rate"),
    (lambda: jloss.optimizer("adam", 1e-3, schedule="cosine", decay_steps=100), "is a schedule"),
])
def test_lr_finder_state_whose_rate_cannot_be_set_falls_back_to_sgd(problem, make_tx, why):
    batch, params, loss_fn = problem
    state = jloss.TrainState.create(params=params, tx=make_tx())
    kwargs = {"min_lr": 1e-4, "max_lr": 1.0, "num_steps": 20}
    with pytest.warns(UserWarning, match=why):
        res = viz.lr_finder(loss_fn, state, batch, **kwargs)
    np.testing.assert_array_equal(res.losses, viz.lr_finder(loss_fn, params, batch, optimizer="sgd",
                                                            **kwargs).losses)


def test_lr_finder_options_need_an_optimizer_name_for_an_own_optimizer(problem):
    batch, params, loss_fn = problem
    state = jloss.TrainState.create(params=params, tx=jloss.optimizer("adam", 1e-3))
    with pytest.raises(ValueError, match="optimizer='sgd'"):
        viz.lr_finder(loss_fn, state, batch, num_steps=5, momentum=0.9)
    # for params, the options go to the fresh SGD, as before
    viz.lr_finder(loss_fn, params, batch, num_steps=5, momentum=0.9)


def test_lr_finder_batches_list_cycles_and_iterator_ends(problem):
    batch, params, loss_fn = problem
    halves = [{"x": batch["x"][:128], "y": batch["y"][:128]}, {"x": batch["x"][128:], "y": batch["y"][128:]}]
    res = viz.lr_finder(loss_fn, params, halves, min_lr=1e-4, max_lr=1e-2, num_steps=10)
    assert len(res.lrs) == 10
    short = viz.lr_finder(loss_fn, params, iter(halves * 2), min_lr=1e-4, max_lr=1e-2, num_steps=10)
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
        viz.lr_finder(loss_fn, params, batch, **kwargs)


def test_lr_finder_empty_batches(problem):
    _, params, loss_fn = problem
    with pytest.raises(ValueError, match="empty"):
        viz.lr_finder(loss_fn, params, [])
    with pytest.raises(ValueError, match="no batch"):
        viz.lr_finder(loss_fn, params, iter([]))


# ------------------------------------------------------------- loss landscape


def test_filter_normalized_direction():
    rng = np.random.default_rng(1)
    params = {"kernel": rng.standard_normal((4, 6)).astype(np.float32),
              "conv": rng.standard_normal((3, 3, 2, 5)).astype(np.float32),
              "bias": rng.standard_normal(6).astype(np.float32)}
    d = viz.filter_normalized_direction(0, params)
    assert jax.tree.structure(d) == jax.tree.structure(params)
    # every filter (output unit, the last axis) has the norm of the same filter of the params
    np.testing.assert_allclose(np.linalg.norm(d["kernel"], axis=0), np.linalg.norm(params["kernel"], axis=0),
                               rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(d["conv"]).reshape(-1, 5), axis=0),
                               np.linalg.norm(params["conv"].reshape(-1, 5), axis=0), rtol=1e-5)
    np.testing.assert_array_equal(d["bias"], 0)  # biases are left out by default
    with_bias = viz.filter_normalized_direction(0, params, ignore_bias=False)
    assert np.linalg.norm(with_bias["bias"]) == pytest.approx(np.linalg.norm(params["bias"]), rel=1e-5)
    # the same key gives the same direction, another key another
    np.testing.assert_array_equal(viz.filter_normalized_direction(0, params)["kernel"], d["kernel"])
    assert not np.allclose(viz.filter_normalized_direction(1, params)["kernel"], d["kernel"])
    np.testing.assert_array_equal(viz.filter_normalized_direction(jax.random.key(3), params)["kernel"],
                                  viz.filter_normalized_direction(jax.random.key(3), params)["kernel"])


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
    land = viz.loss_landscape(loss_fn, state.params, batch, dims=1, num=21, span=2.0)
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
    same = viz.loss_landscape(loss_fn, state, batch, dims=1, num=21, span=2.0)
    np.testing.assert_allclose(same.losses, land.losses, rtol=1e-6)


def test_loss_landscape_2d(problem, trained):
    batch, _, loss_fn = problem
    state = trained
    land = viz.loss_landscape(loss_fn, state.params, batch, dims=2, num=9, key=5, batch_size=16)
    assert land.losses.shape == (9, 9) and land.betas is not None and len(land.directions) == 2
    center = float(loss_fn(state.params, batch))
    assert land.losses[4, 4] == pytest.approx(center, rel=1e-5)
    assert land.losses.min() == pytest.approx(center, rel=0.05)
    d1, d2 = land.directions
    moved = jax.tree.map(lambda p, a, b: p + land.alphas[8] * a + land.betas[1] * b, state.params, d1, d2)
    assert land.losses[8, 1] == pytest.approx(float(loss_fn(moved, batch)), rel=1e-5)


def test_loss_landscape_has_aux(problem):
    batch, params, loss_fn = problem
    land = viz.loss_landscape(lambda p, b: (loss_fn(p, b), {"n": 1}), params, batch, num=5, has_aux=True)
    assert land.losses.shape == (5,)


@pytest.mark.parametrize(("kwargs", "match"), [({"dims": 3}, "dims"), ({"num": 1}, "num"),
                                               ({"span": 0.0}, "span")])
def test_loss_landscape_bad_arguments(problem, kwargs, match):
    batch, params, loss_fn = problem
    with pytest.raises(ValueError, match=match):
        viz.loss_landscape(loss_fn, params, batch, **kwargs)


# ---------------------------------------------------------------- plot helpers


def _ax():
    return Figure().add_subplot()


def test_plot_loss_curves():
    ax = _ax()
    curves = {"a": np.linspace(2, 0.1, 50), "runs": np.abs(np.random.default_rng(0).normal(1, 0.1, (3, 50)))}
    assert viz.plot_loss_curves(curves, ax, smooth=0.5, title="t") is ax
    assert len(ax.lines) == 2 and ax.get_yscale() == "log" and ax.get_title() == "t"
    assert len(ax.collections) == 1  # the min-max band of the 2-D curve
    smoothed = np.stack([viz._ema(r, 0.5) for r in curves["runs"]])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), smoothed.mean(axis=0))
    # one bare curve, non-positive values: linear axis
    ax2 = viz.plot_loss_curves(np.array([1.0, 0.0, -1.0]), _ax())
    assert ax2.get_yscale() == "linear"
    # diverged runs (inf / nan) do not break the plot
    viz.plot_loss_curves({"x": np.array([[1.0, np.inf, np.nan], [1.0, 0.5, 0.2]])}, _ax())
    with pytest.raises(ValueError, match="1-D"):
        viz.plot_loss_curves({"bad": np.zeros((2, 2, 2))}, _ax())


def test_plot_loss_curves_draws_a_fit_history(problem):
    batch, params, loss_fn = problem
    state = jloss.TrainState.create(params=params, tx=jloss.optimizer("sgd", 0.1))
    _, history = jloss.fit(state, jloss.make_train_step(loss_fn), batch, epochs=2, batch_size=64, key=0,
                           eval_data=batch, eval_fn=loss_fn, progress=False)
    losses = [r["loss"] for r in history.steps]
    assert len(losses) == 8  # 2 epochs of 256 / 64 steps
    ax = viz.plot_loss_curves(history, _ax())
    train, val = ax.lines
    np.testing.assert_array_equal(train.get_xdata(), np.arange(1, 9))
    np.testing.assert_array_equal(train.get_ydata(), losses)
    # val_loss at the last step of each epoch
    np.testing.assert_array_equal(val.get_xdata(), [4, 8])
    np.testing.assert_array_equal(val.get_ydata(), [r["val_loss"] for r in history.epochs])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loss", "val_loss"]
    assert ax.get_yscale() == "log"
    # in a mapping, next to a plain curve; smoothing applies to the per-step loss
    ax = viz.plot_loss_curves({"fit": history, "other": np.ones(8)}, _ax(), smooth=0.5)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["fit", "fit val_loss", "other"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), viz._ema(np.array(losses), 0.5))
    # without evaluation, only the per-step loss
    _, no_eval = jloss.fit(state, jloss.make_train_step(loss_fn), batch, epochs=1, batch_size=128,
                           progress=False)
    assert len(viz.plot_loss_curves(no_eval, _ax()).lines) == 1
    with pytest.raises(ValueError, match="no per-step loss"):
        viz.plot_loss_curves(jloss.History(), _ax())


def test_plot_loss_curves_without_axes_makes_a_figure():
    ax = viz.plot_loss_curves([3.0, 2.0, 1.0])
    assert isinstance(ax, Axes)
    import matplotlib.pyplot as plt

    plt.close(ax.figure)


def test_plot_lr_finder_and_landscape(problem, tmp_path):
    batch, params, loss_fn = problem
    res = viz.lr_finder(loss_fn, params, batch, min_lr=1e-4, max_lr=1e3, num_steps=40)
    fig = Figure()
    ax = fig.add_subplot()
    assert res.plot(ax) is ax and ax.get_xscale() == "log"
    assert any("suggested" in t.get_text() for t in ax.get_legend().get_texts())
    one = viz.loss_landscape(loss_fn, params, batch, num=7)
    two = viz.loss_landscape(loss_fn, params, batch, dims=2, num=5)
    ax1, ax2 = _ax(), _ax()
    assert one.plot(ax1, label="x") is ax1 and len(ax1.lines) == 1
    assert viz.plot_landscape(two, ax2, log=True, title="2d") is ax2 and ax2.get_title() == "2d"
    path = tmp_path / "plot.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_top_level_exports():
    assert jloss.lr_finder is viz.lr_finder and jloss.loss_landscape is viz.loss_landscape
    for name in ("lr_finder", "loss_landscape", "recommend", "Recommendation"):
        assert name in jloss.__all__


def test_import_jloss_does_not_import_matplotlib():
    code = "import sys, jloss; print('matplotlib' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"

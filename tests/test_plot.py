"""jloss.plot: loss curves, LR range test, landscapes; matplotlib only on the first plot."""

import os
import pathlib
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from _softmax_problem import softmax_regression
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import jloss
from jloss import plot

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def problem():
    return softmax_regression()


def _ax():
    return Figure().add_subplot()


def test_plot_loss_curves():
    ax = _ax()
    curves = {"a": np.linspace(2, 0.1, 50), "runs": np.abs(np.random.default_rng(0).normal(1, 0.1, (3, 50)))}
    assert plot.plot_loss_curves(curves, ax, smooth=0.5, title="t") is ax
    assert len(ax.lines) == 2 and ax.get_yscale() == "log" and ax.get_title() == "t"
    assert len(ax.collections) == 1  # the min-max band of the 2-D curve
    smoothed = np.stack([plot._ema(r, 0.5) for r in curves["runs"]])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), smoothed.mean(axis=0))
    # one bare curve, non-positive values: linear axis
    ax2 = plot.plot_loss_curves(np.array([1.0, 0.0, -1.0]), _ax())
    assert ax2.get_yscale() == "linear"
    # diverged runs (inf / nan) do not break the plot
    plot.plot_loss_curves({"x": np.array([[1.0, np.inf, np.nan], [1.0, 0.5, 0.2]])}, _ax())
    with pytest.raises(ValueError, match="1-D"):
        plot.plot_loss_curves({"bad": np.zeros((2, 2, 2))}, _ax())


def test_plot_loss_curves_draws_a_fit_history(problem):
    batch, params, loss_fn = problem
    state = jloss.TrainState.create(params=params, tx=jloss.optimizer("sgd", 0.1))
    _, history = jloss.fit(state, jloss.make_train_step(loss_fn), batch, epochs=2, batch_size=64, key=0,
                           eval_data=batch, eval_fn=loss_fn, progress=False)
    losses = [r["loss"] for r in history.steps]
    assert len(losses) == 8  # 2 epochs of 256 / 64 steps
    ax = plot.plot_loss_curves(history, _ax())
    train, val = ax.lines
    np.testing.assert_array_equal(train.get_xdata(), np.arange(1, 9))
    np.testing.assert_array_equal(train.get_ydata(), losses)
    # val_loss at the last step of each epoch
    np.testing.assert_array_equal(val.get_xdata(), [4, 8])
    np.testing.assert_array_equal(val.get_ydata(), [r["val_loss"] for r in history.epochs])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loss", "val_loss"]
    assert ax.get_yscale() == "log"
    # in a mapping, next to a plain curve; smoothing applies to the per-step loss
    ax = plot.plot_loss_curves({"fit": history, "other": np.ones(8)}, _ax(), smooth=0.5)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["fit", "fit val_loss", "other"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), plot._ema(np.array(losses), 0.5))
    # without evaluation, only the per-step loss
    _, no_eval = jloss.fit(state, jloss.make_train_step(loss_fn), batch, epochs=1, batch_size=128,
                           progress=False)
    assert len(plot.plot_loss_curves(no_eval, _ax()).lines) == 1
    with pytest.raises(ValueError, match="no per-step loss"):
        plot.plot_loss_curves(jloss.History(), _ax())


def test_plot_loss_curves_without_axes_makes_a_figure():
    ax = plot.plot_loss_curves([3.0, 2.0, 1.0])
    assert isinstance(ax, Axes)
    import matplotlib.pyplot as plt

    plt.close(ax.figure)


def test_plot_lr_finder_and_landscape(problem, tmp_path):
    batch, params, loss_fn = problem
    res = jloss.lr_finder(loss_fn, params, batch, min_lr=1e-4, max_lr=1e3, num_steps=40)
    fig = Figure()
    ax = fig.add_subplot()
    assert res.plot(ax) is ax and ax.get_xscale() == "log"
    assert any("suggested" in t.get_text() for t in ax.get_legend().get_texts())
    one = jloss.loss_landscape(loss_fn, params, batch, num=7)
    two = jloss.loss_landscape(loss_fn, params, batch, dims=2, num=5)
    ax1, ax2 = _ax(), _ax()
    assert one.plot(ax1, label="x") is ax1 and len(ax1.lines) == 1
    assert plot.plot_landscape(two, ax2, log=True, title="2d") is ax2 and ax2.get_title() == "2d"
    path = tmp_path / "plot.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_top_level_exports():
    from jloss.analysis import loss_landscape
    from jloss.train.lr_finder import lr_finder

    assert jloss.lr_finder is lr_finder and jloss.loss_landscape is loss_landscape
    assert jloss.plot_history is plot.plot_history is jloss.train.plot_history
    for name in ("lr_finder", "loss_landscape", "plot_history", "plot", "analysis"):
        assert name in jloss.__all__


def test_import_jloss_does_not_import_matplotlib():
    code = "import sys, jloss; print('matplotlib' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"

"""fit: batching and shuffling, iterables, evaluation, early stopping, progress bar, History, plot_history."""

import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jloss

RNG = np.random.default_rng(0)
N = 64
X = RNG.normal(size=(N, 3)).astype(np.float32)
Y = (X @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * RNG.normal(size=(N, 1))).astype(np.float32)
PARAMS = {"w": jnp.zeros((3, 1)), "b": jnp.zeros(1)}


def loss_fn(params, batch):
    x, y = batch
    return jloss.mean_squared_error(x @ params["w"] + params["b"], y)


def eval_fn(params, batch):
    x, y = batch
    pred = x @ params["w"] + params["b"]
    return {"loss": jloss.mean_squared_error(pred, y), "mae": jloss.metrics.mae(pred, y)}


STEP = jloss.make_train_step(loss_fn)


def fresh(lr=0.1):
    return jloss.TrainState.create(params=PARAMS, tx=jloss.optimizer("sgd", lr))


def manual(state, batches):
    for b in batches:
        state, _ = STEP(state, b)
    return state


def assert_same_params(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --------------------------------------------------------------------------- data


def test_arrays_shuffled_from_the_key_equal_a_manual_loop():
    key = jax.random.key(42)
    state, history = jloss.fit(fresh(), STEP, (X, Y), epochs=3, batch_size=16, key=key, progress=False)
    batches = []
    for epoch in range(1, 4):  # epochs count from 1
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), N))
        batches += [(X[order[i:i + 16]], Y[order[i:i + 16]]) for i in range(0, N, 16)]
    assert_same_params(state, manual(fresh(), batches))
    assert int(state.step) == 12
    assert [r["step"] for r in history.steps] == list(range(1, 13))
    assert [r["epoch"] for r in history.steps] == [1] * 4 + [2] * 4 + [3] * 4
    assert len(history.epochs) == 3
    for e, record in enumerate(history.epochs):
        assert record["loss"] == pytest.approx(np.mean(history.step_values("loss")[4 * e:4 * e + 4]))
        assert record["step"] == 4 * (e + 1) and record["time"] > 0
    assert set(history.steps[0]) == {"step", "epoch", "loss", "grad_norm", "learning_rate"}
    assert history.epoch_values("loss")[-1] < history.epoch_values("loss")[0]
    # the same key shuffles the same way; another key differently
    again, _ = jloss.fit(fresh(), STEP, (X, Y), epochs=3, batch_size=16, key=42, progress=False)
    assert_same_params(again, jloss.fit(fresh(), STEP, (X, Y), epochs=3, batch_size=16, key=key,
                                        progress=False)[0])


def test_no_key_keeps_the_order_and_remainder_handling():
    state, h = jloss.fit(fresh(), STEP, (X[:40], Y[:40]), epochs=1, batch_size=16, progress=False)
    assert len(h.steps) == 2  # 40 = 2 * 16 + 8 dropped
    assert_same_params(state, manual(fresh(), [(X[:16], Y[:16]), (X[16:32], Y[16:32])]))
    state, h = jloss.fit(fresh(), STEP, (X[:40], Y[:40]), epochs=1, batch_size=16, drop_remainder=False,
                         progress=False)
    assert len(h.steps) == 3
    assert_same_params(state, manual(fresh(), [(X[:16], Y[:16]), (X[16:32], Y[16:32]), (X[32:40], Y[32:40])]))


def test_dict_batches():
    step = jloss.make_train_step(lambda p, b: loss_fn(p, (b["x"], b["y"])))
    _, h = jloss.fit(fresh(), step, {"x": X, "y": Y}, batch_size=32, progress=False)
    assert len(h.steps) == 2


def test_iterables_of_batches():
    batches = [(X[i:i + 16], Y[i:i + 16]) for i in range(0, N, 16)]
    state, h = jloss.fit(fresh(), STEP, batches, epochs=2, progress=False)
    assert len(h.steps) == 8
    assert_same_params(state, manual(fresh(), batches * 2))
    # a callable epoch -> iterable
    seen = []

    def loader(epoch):
        seen.append(epoch)
        return iter(batches[::-1] if epoch == 2 else batches)

    state, _ = jloss.fit(fresh(), STEP, loader, epochs=2, progress=False)
    assert seen == [1, 2]
    assert_same_params(state, manual(fresh(), batches + batches[::-1]))
    # a one-shot generator is fine for one epoch, an error for more
    _, h = jloss.fit(fresh(), STEP, (b for b in batches), epochs=1, progress=False)
    assert len(h.steps) == 4
    with pytest.raises(ValueError, match="one-shot iterator"):
        jloss.fit(fresh(), STEP, (b for b in batches), epochs=2, progress=False)


def test_data_errors():
    with pytest.raises(ValueError, match="same leading"):
        jloss.fit(fresh(), STEP, (X, Y[:10]), batch_size=8, progress=False)
    with pytest.raises(ValueError, match="fewer than batch_size=128"):
        jloss.fit(fresh(), STEP, (X, Y), batch_size=128, progress=False)
    with pytest.raises(ValueError, match="shuffle an iterable of batches yourself"):
        jloss.fit(fresh(), STEP, [(X, Y)], key=0, progress=False)
    with pytest.raises(ValueError, match="gave no batches"):
        jloss.fit(fresh(), STEP, [], progress=False)
    with pytest.raises(ValueError, match="mode must be"):
        jloss.fit(fresh(), STEP, [(X, Y)], mode="lowest", progress=False)
    with pytest.raises(ValueError, match="eval_data needs eval_fn"):
        jloss.fit(fresh(), STEP, [(X, Y)], eval_data=(X, Y), progress=False)


# --------------------------------------------------------------------------- evaluation and early stopping


def test_evaluation_each_epoch():
    state, h = jloss.fit(fresh(), STEP, (X, Y), epochs=2, batch_size=16, eval_data=(X[:50], Y[:50]),
                         eval_fn=eval_fn, progress=False)
    expected = jax.jit(eval_fn)(state.params, (X[:50], Y[:50]))
    assert h.epochs[-1]["val_loss"] == pytest.approx(float(expected["loss"]), rel=1e-6)
    assert h.epochs[-1]["val_mae"] == pytest.approx(float(expected["mae"]), rel=1e-6)
    assert h.best_epoch == 2 and h.best_value == h.epochs[1]["val_loss"]
    assert not h.restored_best  # restoring needs patience
    # chunks of 16 (the last one of 2) average to the whole-set mean
    _, chunked = jloss.fit(fresh(), STEP, (X, Y), epochs=2, batch_size=16, eval_data=(X[:50], Y[:50]),
                           eval_fn=eval_fn, eval_batch_size=16, progress=False)
    assert chunked.epochs[-1]["val_loss"] == pytest.approx(h.epochs[-1]["val_loss"], rel=1e-5)
    assert chunked.epochs[-1]["val_mae"] == pytest.approx(h.epochs[-1]["val_mae"], rel=1e-5)
    # a bare loss is recorded as val_loss
    _, bare = jloss.fit(fresh(), STEP, (X, Y), batch_size=32, eval_data=(X, Y), eval_fn=loss_fn,
                        progress=False)
    assert set(bare.epochs[0]) == {"epoch", "step", "loss", "val_loss", "time"}


def scripted(values):
    """An eval_fn(params) returning the next value of ``values`` each epoch."""
    it = iter(values)
    return lambda params: {"score": next(it)}


@pytest.mark.parametrize("mode,values,best,stop_after", [
    ("min", [3.0, 2.0, 2.5, 2.6, 2.7, 1.0], 2, 4),
    ("max", [0.1, 0.5, 0.4, 0.45, 0.2, 0.9], 2, 4),
])
def test_early_stopping_restores_the_best_state(mode, values, best, stop_after):
    snapshots = []
    state, h = jloss.fit(fresh(), STEP, (X, Y), epochs=6, batch_size=32, eval_fn=scripted(values),
                         monitor="val_score", mode=mode, patience=2, progress=False,
                         on_epoch_end=lambda s, r: snapshots.append(s))
    assert len(h.epochs) == stop_after == len(snapshots)
    assert h.stopped_early and h.best_epoch == best and h.best_value == values[best - 1]
    assert h.restored_best
    assert_same_params(state, snapshots[best - 1])
    assert int(state.step) == 2 * best
    # without restore_best the last state comes back
    last, h2 = jloss.fit(fresh(), STEP, (X, Y), epochs=6, batch_size=32, eval_fn=scripted(values),
                         monitor="val_score", mode=mode, patience=2, restore_best=False, progress=False)
    assert not h2.restored_best and int(last.step) == 2 * stop_after


def test_patience_zero_min_delta_and_no_stop_when_improving():
    _, h = jloss.fit(fresh(), STEP, (X, Y), epochs=5, batch_size=32, eval_fn=scripted([3.0, 2.95, 1, 1, 1]),
                     monitor="val_score", patience=0, min_delta=0.1, progress=False)
    assert len(h.epochs) == 2 and h.best_epoch == 1  # 2.95 does not beat 3.0 by 0.1
    _, h = jloss.fit(fresh(), STEP, (X, Y), epochs=4, batch_size=32, eval_data=(X, Y), eval_fn=eval_fn,
                     patience=1, progress=False)
    assert len(h.epochs) == 4 and not h.stopped_early and not h.restored_best and h.best_epoch == 4


def test_monitor_train_loss_and_missing_monitor():
    _, h = jloss.fit(fresh(), STEP, (X, Y), epochs=2, batch_size=32, monitor="loss", patience=3,
                     progress=False)
    assert h.best_epoch == 2
    with pytest.raises(ValueError, match=r"monitor='val_loss' is not among the epoch metrics \['epoch'"):
        jloss.fit(fresh(), STEP, (X, Y), batch_size=32, patience=2, progress=False)


def test_best_state_survives_a_donating_step():
    step = jloss.make_train_step(loss_fn, donate=True)
    own = jax.tree.map(jnp.copy, fresh())  # donation consumes the input state's buffers
    state, h = jloss.fit(own, step, (X, Y), epochs=4, batch_size=32, eval_fn=scripted([2.0, 1.0, 3.0, 4.0]),
                         monitor="val_score", patience=2, progress=False)
    assert h.restored_best and int(state.step) == 4
    np.asarray(state.params["w"])  # still readable: a copy, not the donated buffer


def test_on_epoch_end_can_stop():
    _, h = jloss.fit(fresh(), STEP, (X, Y), epochs=5, batch_size=32, progress=False,
                     on_epoch_end=lambda state, record: record["epoch"] == 2)
    assert len(h.epochs) == 2 and h.stopped_early


# --------------------------------------------------------------------------- parallel steps


@pytest.mark.parametrize("parallel", ["pmap", "mesh"])
def test_fit_with_parallel_steps(parallel):
    ref, ref_h = jloss.fit(fresh(), STEP, (X, Y), epochs=2, batch_size=16, key=1, eval_data=(X, Y),
                           eval_fn=eval_fn, progress=False)
    step = jloss.make_train_step(loss_fn, parallel=parallel)
    state = jloss.replicate(fresh()) if parallel == "pmap" else fresh()
    out, h = jloss.fit(state, step, (X, Y), epochs=2, batch_size=16, key=1, eval_data=(X, Y), eval_fn=eval_fn,
                       progress=False)
    if parallel == "pmap":
        out = jloss.unreplicate(out)
    for key in ("w", "b"):
        np.testing.assert_allclose(np.asarray(out.params[key]), np.asarray(ref.params[key]), atol=1e-5)
    np.testing.assert_allclose(h.step_values("loss"), ref_h.step_values("loss"), rtol=1e-5)
    np.testing.assert_allclose(h.epoch_values("val_loss"), ref_h.epoch_values("val_loss"), rtol=1e-5)


# --------------------------------------------------------------------------- progress bar and plot


def test_progress_bar_shows_the_running_loss(capsys):
    pytest.importorskip("tqdm")
    jloss.fit(fresh(), STEP, (X, Y), epochs=2, batch_size=16, eval_data=(X, Y), eval_fn=loss_fn)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err
    assert "loss=" in err and "val_loss=" in err and "4/4" in err
    jloss.fit(fresh(), STEP, (X, Y), epochs=1, batch_size=16, progress=False)
    assert capsys.readouterr().err == ""


def test_without_tqdm_fit_warns_and_trains(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.warns(UserWarning, match=r"needs tqdm.*pip install 'jloss\[train\]'"):
        _, h = jloss.fit(fresh(), STEP, (X, Y), epochs=1, batch_size=16)
    assert len(h.steps) == 4


def test_aux_metrics_are_recorded_by_name():
    def with_aux(params, batch):
        pred = batch[0] @ params["w"] + params["b"]
        return loss_fn(params, batch), {"mae": jloss.metrics.mae(pred, batch[1]), "vector": jnp.zeros(3)}

    step = jloss.make_train_step(with_aux, has_aux=True)
    _, h = jloss.fit(fresh(), step, (X, Y), batch_size=32, progress=False)
    assert "mae" in h.steps[0] and "vector" not in h.steps[0]


def test_plot_history():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, h = jloss.fit(fresh(), STEP, (X, Y), epochs=3, batch_size=16, eval_data=(X, Y), eval_fn=eval_fn,
                     progress=False)
    _, ax = plt.subplots()
    assert jloss.plot_history(h, ax=ax) is ax
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["loss (step)", "loss (epoch mean)", "val_loss", f"best val_loss (epoch {h.best_epoch})"]
    assert ax.get_lines()[3].get_xdata()[0] == h.epochs[h.best_epoch - 1]["step"]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), h.step_values("loss"))
    np.testing.assert_allclose(ax.get_lines()[2].get_ydata(), h.epoch_values("val_loss"))
    assert ax.get_xlabel() == "step"
    own = jloss.plot_history(h, metric="mae")  # a new figure
    assert own.get_ylabel() == "mae" and own.get_lines()[0].get_label() == "val_mae"
    plt.close("all")


def test_plot_history_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'jloss\[plot\]'"):
        jloss.plot_history(jloss.History())


# --------------------------------------------------------------------------- early stopping unit


def test_early_stopping_tracks_the_best_and_counts_patience():
    stopper = jloss.EarlyStopping(monitor="val_loss", mode="min", patience=2, min_delta=0.1)
    values = [3.0, 2.95, float("nan"), 2.0, 1.95, 1.99]  # 2.95 and 1.95 do not beat the best by 0.1
    stops = [stopper.update(e, {"val_loss": v}, state={"w": np.full(2, v)})
             for e, v in enumerate(values, start=1)]
    assert stops == [False, False, True, False, False, True]
    assert (stopper.best_epoch, stopper.best_value) == (4, 2.0)
    np.testing.assert_array_equal(stopper.best_state["w"], [2.0, 2.0])
    maximise = jloss.EarlyStopping(monitor="accuracy", mode="max", patience=None)
    assert [maximise.update(e, {"accuracy": v}) for e, v in enumerate([0.5, 0.7, 0.6, 0.1], 1)] == [False] * 4
    assert maximise.best_epoch == 2 and maximise.best_state is None  # no patience, no copy
    assert not jloss.EarlyStopping(monitor="val_loss").update(1, {"loss": 1.0})  # untracked without patience
    for kwargs, match in [({"mode": "lowest"}, "mode must be"), ({"patience": -1}, "patience must be"),
                          ({"patience": 1.5}, "patience must be"), ({"min_delta": -0.1}, "min_delta must be"),
                          ({"min_delta": float("nan")}, "min_delta must be")]:
        with pytest.raises(ValueError, match=match):
            jloss.EarlyStopping(**kwargs)


# --------------------------------------------------------------------------- non-finite losses, aux metrics


CX = RNG.normal(size=(32, 3)).astype(np.float32)
CY = np.argmax(CX @ RNG.normal(size=(3, 4)), axis=-1).astype(np.int32)


def classify(params, batch):
    logits = batch[0] @ params
    return (jloss.sparse_categorical_cross_entropy(logits, batch[1]),
            {"accuracy": jloss.metrics.accuracy(logits, batch[1])})


CLASSIFY_STEP = jloss.make_train_step(classify, has_aux=True)


def classifier():
    return jloss.TrainState.create(params=jnp.zeros((3, 4)), tx=jloss.optimizer("sgd", 0.5))


def test_bad_labels_stop_fit_at_the_first_non_finite_loss():
    bad = CY.copy()
    bad[20] = 4  # out of range: NaN under jit; batch 3 of 4 in each epoch
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 3 \(epoch 1, batch 3.*jloss\.checked"):
        jloss.fit(classifier(), CLASSIFY_STEP, (CX, bad), epochs=3, batch_size=8, progress=False)
    with pytest.warns(RuntimeWarning, match=r"loss is nan at step") as caught:
        _, h = jloss.fit(classifier(), CLASSIFY_STEP, (CX, bad), epochs=2, batch_size=8,
                         on_nonfinite="warn", progress=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 2  # once per epoch
    assert "step 3 (epoch 1" in messages[0] and "step 7 (epoch 2" in messages[1]
    assert len(h.steps) == 8 and np.isnan(h.epochs[-1]["loss"])
    with pytest.raises(ValueError, match="on_nonfinite must be"):
        jloss.fit(classifier(), CLASSIFY_STEP, (CX, CY), batch_size=8, on_nonfinite="ignore", progress=False)


def test_aux_metrics_reach_the_epoch_records_and_can_be_monitored():
    _, h = jloss.fit(classifier(), CLASSIFY_STEP, (CX, CY), epochs=3, batch_size=8, monitor="accuracy",
                     mode="max", patience=5, progress=False)
    for e, record in enumerate(h.epochs):
        assert record["accuracy"] == pytest.approx(np.mean(h.step_values("accuracy")[4 * e:4 * e + 4]))
        assert "grad_norm" not in record and "learning_rate" not in record  # optimizer metrics: per step
    assert h.best_value == max(h.epoch_values("accuracy"))
    assert h.best_value == h.epochs[h.best_epoch - 1]["accuracy"]  # epochs count from 1
    assert h.history == {"loss": list(h.epoch_values("loss")), "accuracy": list(h.epoch_values("accuracy"))}
    assert repr(h) == (f"History(epochs=3, steps=12, loss={h.epochs[-1]['loss']:.4g}, "
                       f"accuracy={h.epochs[-1]['accuracy']:.4g}, best_epoch={h.best_epoch} "
                       f"(accuracy={h.best_value:.4g}))")


def test_numpy_int_key_and_option_errors():
    a, _ = jloss.fit(fresh(), STEP, (X, Y), epochs=2, batch_size=np.int64(16), key=np.int64(3),
                     progress=False)
    b, _ = jloss.fit(fresh(), STEP, (X, Y), epochs=2, batch_size=16, key=jax.random.key(3), progress=False)
    assert_same_params(a, b)
    for kwargs, match in [({"eval_data": (X[:0], Y[:0]), "eval_fn": eval_fn}, "eval_data has no examples"),
                          ({"eval_data": (X, Y), "eval_fn": eval_fn, "eval_batch_size": 0},
                           "eval_batch_size must be an int >= 1, got 0"),
                          ({"epochs": 0}, "epochs must be an int >= 1"),
                          ({"batch_size": 2.5}, "batch_size must be an int >= 1")]:
        with pytest.raises(ValueError, match=match):
            jloss.fit(fresh(), STEP, (X, Y), **{"batch_size": 32, **kwargs}, progress=False)


# --------------------------------------------------------------------------- a state with model_state and rng


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CountingState:
    """A state with a model state (a step counter) and a key, as jloss.TrainState carries them."""

    step: jax.Array
    params: dict
    model_state: dict
    rng: jax.Array


@jax.jit
def counting_step(state, batch):
    rng, step_key = jax.random.split(state.rng)
    loss, grads = jax.value_and_grad(loss_fn)(state.params, batch)
    params = jax.tree.map(lambda p, g: p - 0.1 * g, state.params, grads)
    model_state = {"count": state.model_state["count"] + 1, "noise": jax.random.uniform(step_key)}
    return CountingState(state.step + 1, params, model_state, rng), {"loss": loss}


def test_fit_carries_model_state_and_rng_into_eval_and_the_best_state():
    seen = []

    def eval_with_state(params, model_state):
        seen.append(int(model_state["count"]))
        return {"score": [3.0, 1.0, 2.0, 2.5][len(seen) - 1]}

    start = CountingState(jnp.zeros((), jnp.int32), PARAMS, {"count": jnp.zeros((), jnp.int32),
                                                             "noise": jnp.zeros(())}, jax.random.key(0))
    state, h = jloss.fit(start, counting_step, (X, Y), epochs=4, batch_size=32, eval_fn=eval_with_state,
                         monitor="val_score", patience=2, progress=False)
    assert seen == [2, 4, 6, 8] and h.best_epoch == 2 and h.restored_best
    assert int(state.step) == 4 and int(state.model_state["count"]) == 4  # the best epoch's model state
    manual_state = start
    for _ in range(2):
        for i in range(0, N, 32):
            manual_state, _ = counting_step(manual_state, (X[i:i + 32], Y[i:i + 32]))
    np.testing.assert_array_equal(jax.random.key_data(state.rng), jax.random.key_data(manual_state.rng))
    assert float(state.model_state["noise"]) == float(manual_state.model_state["noise"])

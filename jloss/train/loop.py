"""``fit``: epochs of a train step with shuffling, a progress bar, evaluation and early stopping.

Epochs are numbered from 1 everywhere: the epoch records, ``History.best_epoch``,
the progress bar, messages and :func:`plot_history`.

The loop is plain Python around a step built by :func:`jloss.make_train_step`;
it blocks on every step (it reads the step's metrics to record them), which
also keeps CPU collectives from being dispatched many steps ahead.

Progress bar: ``tqdm.auto`` (the ``train`` extra), so it renders as a widget in
notebooks and as text in terminals. If tqdm is not installed, ``fit`` warns
once and trains without a bar: a missing cosmetic dependency never stops a run.
"""

import dataclasses
import math
import time
import warnings

import jax
import numpy as np

from jloss._core import checks
from jloss.train import parallel as par
from jloss.train.early_stopping import EarlyStopping
from jloss.train.step import parallel_mode

__all__ = ["History", "fit"]


# Step metrics that describe the optimizer rather than the model: recorded per
# step only, not averaged into the epoch records.
_STEP_ONLY = ("grad_norm", "learning_rate")


@dataclasses.dataclass(repr=False)
class History:
    """What :func:`fit` recorded.

    Epochs are numbered from 1 everywhere (records, ``best_epoch``, the progress
    bar, messages, :func:`plot_history`); steps are the state's step count
    after each step. ``repr(history)`` is one short line; ``history.history`` is
    Keras's dict of per-epoch lists.

    Attributes:
      steps: one dict per train step: ``step`` (the state's step count after
        it), ``epoch`` and every scalar metric of the step (``loss``,
        ``grad_norm``, ``learning_rate``, scalar entries of ``aux`` by name).
      epochs: one dict per epoch: ``epoch``, ``step``, ``loss`` (mean train
        loss over the epoch), the epoch mean of every scalar ``aux`` metric
        (``accuracy``, ...), ``val_<name>`` for each evaluation metric and
        ``time`` (seconds).
      monitor, mode: the monitored epoch metric and whether lower ("min") or
        higher ("max") is better.
      best_epoch, best_value: the best epoch by ``monitor`` (None if it was
        never recorded).
      stopped_early: whether training stopped before ``epochs`` (patience ran
        out, or ``on_epoch_end`` asked to stop).
      restored_best: whether the returned state is the best epoch's state
        rather than the last one.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> def loss_fn(params, batch):
      ...     return jloss.mse(batch["x"] @ params["w"], batch["y"])
      >>> batch = {"x": jnp.array([[1.0, 1.0], [1.0, 2.0]]), "y": jnp.array([1.0, 2.0])}
      >>> data = {"x": jnp.array([[1.0, 1.0], [1.0, 2.0], [2.0, 1.0], [0.0, 1.0]]),
      ...         "y": jnp.array([1.0, 2.0, 1.0, 1.0])}
      >>> state = jloss.TrainState.create(params={"w": jnp.zeros(2)}, tx=jloss.optimizer("sgd", 0.1))
      >>> state, history = jloss.fit(state, jloss.make_train_step(loss_fn), data, epochs=3,
      ...                            batch_size=2, progress=False)
      >>> len(history.steps), len(history.epoch_values("loss"))
      (6, 3)
    """

    steps: list = dataclasses.field(default_factory=list)
    epochs: list = dataclasses.field(default_factory=list)
    monitor: str = "val_loss"
    mode: str = "min"
    best_epoch: int | None = None
    best_value: float | None = None
    stopped_early: bool = False
    restored_best: bool = False

    def step_values(self, key):
        """``key`` of every step record that has it, as a float array."""
        return np.array([r[key] for r in self.steps if key in r], dtype=np.float64)

    def epoch_values(self, key):
        """``key`` of every epoch record that has it, as a float array."""
        return np.array([r[key] for r in self.epochs if key in r], dtype=np.float64)

    @property
    def history(self):
        """The epoch metrics as Keras's ``History.history``: ``{name: [value per epoch]}``.

        Every key of the epoch records but ``epoch``, ``step`` and ``time``
        (``loss``, ``accuracy``, ``val_loss``, ...); NaN for an epoch without it.
        """
        names = dict.fromkeys(k for r in self.epochs for k in r if k not in ("epoch", "step", "time"))
        return {k: [r.get(k, math.nan) for r in self.epochs] for k in names}

    def __repr__(self):
        parts = [f"epochs={len(self.epochs)}", f"steps={len(self.steps)}"]
        if self.epochs:
            last = self.epochs[-1]
            parts += [f"{k}={last[k]:.4g}" for k in dict.fromkeys(("loss", self.monitor)) if k in last]
        if self.best_epoch is not None:
            parts.append(f"best_epoch={self.best_epoch} ({self.monitor}={self.best_value:.4g})")
        if self.stopped_early:
            parts.append("stopped_early")
        if self.restored_best:
            parts.append("restored_best")
        return f"History({', '.join(parts)})"


# ------------------------------------------------------------------- data


def _num_examples(data, what):
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError(f"{what} has no arrays")
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if None in sizes or len(sizes) != 1:
        shapes = [np.shape(x) for x in leaves]
        raise ValueError(f"every array of {what} needs the same leading (example) axis, got shapes {shapes}")
    return sizes.pop()


def _take(data, idx):
    return jax.tree.map(lambda a: a[idx], data)


class _ArrayBatches:
    """Batches of a pytree of arrays, reshuffled every epoch from ``fold_in(key, epoch)``."""

    def __init__(self, data, batch_size, key, drop_remainder):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.data, self.batch_size, self.key = data, batch_size, key
        self.n = _num_examples(data, "train_data")
        self.stop = self.n - self.n % batch_size if drop_remainder else self.n
        if self.stop == 0:
            raise ValueError(f"train_data has {self.n} examples, fewer than batch_size={batch_size}; "
                             "lower batch_size or pass drop_remainder=False")

    def __len__(self):
        return math.ceil(self.stop / self.batch_size)

    def epoch(self, epoch):
        if self.key is None:
            order = np.arange(self.n)
        else:
            order = np.asarray(jax.random.permutation(jax.random.fold_in(self.key, epoch), self.n))
        for i in range(0, self.stop, self.batch_size):
            yield _take(self.data, order[i:i + self.batch_size])


class _IterableBatches:
    """An iterable of batches (re-iterated every epoch) or a callable ``epoch -> iterable``."""

    def __init__(self, data, epochs):
        if not callable(data) and iter(data) is data and epochs > 1:
            raise ValueError(
                "train_data is a one-shot iterator, which would be empty after the first epoch; pass a "
                "list of batches, a re-iterable loader, a callable epoch -> iterable of batches, or arrays "
                "with batch_size=")
        self.data = data

    def __len__(self):
        return len(self.data)  # TypeError when unknown, caught by the caller

    def epoch(self, epoch):
        return iter(self.data(epoch) if callable(self.data) else self.data)


# ------------------------------------------------------------------- metrics


def _scalar_metrics(metrics, pmap):
    """The scalar metrics of one step as floats (aux entries by their own name)."""
    out = {}
    flat = jax.tree_util.tree_flatten_with_path(jax.device_get(metrics))[0]
    for path, value in flat:
        value = np.asarray(value)
        if pmap:
            value = value[0]  # every device holds the same (pmean'd) value
        if value.size != 1 or not np.issubdtype(value.dtype, np.number):
            continue
        names = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
        if names[0] == "aux" and len(names) > 1:
            names = names[1:]
        name = "/".join(names)
        out["aux/" + name if name in out else name] = float(value.reshape(()))
    return out


def _evaluate(eval_fn, params, model_state, eval_data, eval_batch_size):
    """Evaluation metrics, prefixed ``val_``: chunk means weighted by chunk size."""
    extra = () if model_state is None else (model_state,)
    if eval_data is None:
        results = [(eval_fn(params, *extra), 1)]
    else:
        n = _num_examples(eval_data, "eval_data")
        if n == 0:
            raise ValueError("eval_data has no examples (its arrays have a leading axis of length 0); "
                             "pass eval_data=None to skip evaluation")
        size = n if eval_batch_size is None else eval_batch_size
        results = [(eval_fn(params, _take(eval_data, slice(i, i + size)), *extra), min(size, n - i))
                   for i in range(0, n, size)]
    totals, count = {}, 0
    for value, weight in results:
        value = jax.device_get(value)
        if not isinstance(value, dict):
            value = {"loss": value}
        for k, v in value.items():
            totals[k] = totals.get(k, 0.0) + weight * float(np.asarray(v).reshape(()))
        count += weight
    return {f"val_{k}": v / count for k, v in totals.items()}


def _progress_bar(progress, total, desc):
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        warnings.warn("fit(progress=True) needs tqdm for its progress bar (pip install 'jloss[train]'); "
                      "training without one. Pass progress=False to silence this.", stacklevel=3)
        return None
    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, leave=True)


def _nonfinite_message(loss, step, epoch, batch):
    return (f"the training loss is {loss} at step {step} (epoch {epoch}, batch {batch} of the epoch). "
            "Bad inputs are the usual cause (labels out of range, probabilities outside [0, 1], NaN "
            "features): run the step under jloss.checked, e.g. jloss.checked(train_step)(state, batch) "
            "or jloss.checked(loss_fn)(params, batch), to name the bad input; else lower the learning "
            "rate or clip gradients (optimizer(..., clip_norm=1.0))")


def _epoch_means(step_records):
    """The epoch means of the step metrics that describe the model (loss and aux), not the optimizer."""
    names = dict.fromkeys(k for r in step_records for k in r
                          if k not in ("step", "epoch") and k not in _STEP_ONLY)
    return {k: float(np.mean([r[k] for r in step_records if k in r])) for k in names}


def _as_key(key):
    if isinstance(key, int | np.integer) and not isinstance(key, bool | np.bool_):
        return jax.random.key(int(key))
    return key


# ------------------------------------------------------------------- fit


def fit(state, train_step, train_data, *, epochs=1, batch_size=None, key=None, eval_data=None, eval_fn=None,
        eval_batch_size=None, monitor="val_loss", mode="min", patience=None, min_delta=0.0,
        restore_best=True, progress=True, drop_remainder=True, on_epoch_end=None, on_nonfinite="raise"):
    """Train ``state`` for ``epochs`` with ``train_step``; return ``(state, history)``.

    Epochs are numbered from 1 (the records, ``history.best_epoch``, the
    progress bar, messages and the ``epoch`` given to a data callable).

    Args:
      state: a :class:`jloss.TrainState` (``jloss.replicate(state)`` for a pmap
        step). Its ``model_state`` and ``rng`` travel with it through every step
        (the step updates them) and into the best-state copy.
      train_step: a step from :func:`jloss.make_train_step`. Single-device and
        ``"mesh"`` steps take the batches as they are (for the mesh, a batch
        size that is a multiple of the device count); for a ``"pmap"`` step
        ``fit`` applies :func:`jloss.shard_batch` to every batch, reads the
        metrics of the first device and gives ``eval_fn`` unreplicated params.
      train_data: either a pytree of arrays with a leading example axis (with
        ``batch_size``), or, with ``batch_size=None``, an iterable of batches
        re-iterated every epoch (a list, a data loader) or a callable
        ``epoch -> iterable of batches``.
      epochs: number of passes over ``train_data`` (an int >= 1).
      batch_size: batch size for array data.
      key: a PRNG key (or int seed, Python or NumPy) to reshuffle array data
        every epoch (``fold_in(key, epoch)``); None keeps the data's order.
      eval_data, eval_fn, eval_batch_size: evaluation after every epoch.
        ``eval_fn(params, batch)`` returns a loss or a dict of metrics for
        ``eval_data`` (a pytree of arrays; evaluated whole, or in chunks of
        ``eval_batch_size`` >= 1 averaged by chunk size: exact for means such
        as loss or accuracy, not for ratios such as F1). With
        ``eval_data=None``, ``eval_fn(params)`` does its own iteration. When
        the state has a ``model_state`` (batch statistics, ...), it is passed
        last: ``eval_fn(params, batch, model_state)`` (``eval_fn(params,
        model_state)``). Results are recorded as ``val_<name>`` (a bare loss as
        ``val_loss``); ``eval_fn`` is jitted when it takes a batch.
      monitor, mode, patience, min_delta, restore_best: early stopping (see
        :class:`jloss.EarlyStopping`): the epoch metric to watch (any key of
        an epoch record: ``"val_loss"``, ``"val_accuracy"``, ``"loss"``, or a
        train metric from the step's ``aux`` such as ``"accuracy"``), whether
        lower ("min") or higher ("max") is better, how many epochs without
        improvement to allow (None: never stop), by how much a value must beat
        the best, and whether to return the best epoch's state (kept as a
        copy; needs ``patience``) instead of the last.
      progress: show a ``tqdm.auto`` bar per epoch with the running mean loss
        (and the evaluation metrics at the end of the epoch). Without tqdm,
        ``fit`` warns and trains without a bar.
      drop_remainder: drop the last incomplete batch of array data (keeps
        shapes fixed: no recompilation, and batches divide across devices).
      on_epoch_end: optional ``fn(state, record)`` called after each epoch
        (e.g. to save a checkpoint); return True to stop training.
      on_nonfinite: ``"raise"`` (default) stops at the first NaN or infinite
        training loss with a FloatingPointError naming the step and epoch;
        ``"warn"`` warns (at the first such step of each epoch) and goes on.

    Returns:
      ``(state, history)``: the trained (or best) state and a :class:`History`.

    Raises:
      ValueError: a bad ``mode`` or ``patience``, ``eval_data`` without
        ``eval_fn``, or ``key`` with data that is not arrays.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> def loss_fn(params, batch):
      ...     return jloss.mse(batch["x"] @ params["w"], batch["y"])
      >>> batch = {"x": jnp.array([[1.0, 1.0], [1.0, 2.0]]), "y": jnp.array([1.0, 2.0])}
      >>> data = {"x": jnp.array([[1.0, 1.0], [1.0, 2.0], [2.0, 1.0], [0.0, 1.0]]),
      ...         "y": jnp.array([1.0, 2.0, 1.0, 1.0])}
      >>> state = jloss.TrainState.create(params={"w": jnp.zeros(2)}, tx=jloss.optimizer("sgd", 0.1))
      >>> state, history = jloss.fit(state, jloss.make_train_step(loss_fn), data, epochs=3,
      ...                            batch_size=2, progress=False)
      >>> int(state.step), history.epochs[-1]["loss"] < history.epochs[0]["loss"]
      (6, True)

    References:
      Keras ``Model.fit`` (epochs, validation, ``EarlyStopping`` with
      ``restore_best_weights``).
      ``(state, history)``; see :class:`History`.

    Raises:
      FloatingPointError: a non-finite training loss with ``on_nonfinite="raise"``.
      ValueError: bad options or data (named in the message).
    """
    if on_nonfinite not in ("raise", "warn"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'warn', got {on_nonfinite!r}")
    epochs = checks.check_int("epochs", epochs, low=1)
    if batch_size is not None:
        batch_size = checks.check_int("batch_size", batch_size, low=1)
    if eval_batch_size is not None:
        eval_batch_size = checks.check_int("eval_batch_size", eval_batch_size, low=1)
    stopper = EarlyStopping(monitor, mode, patience, min_delta, restore_best)
    if eval_data is not None and eval_fn is None:
        raise ValueError("eval_data needs eval_fn(params, batch) -> loss or dict of metrics")
    key = _as_key(key)
    if batch_size is not None:
        batches = _ArrayBatches(train_data, batch_size, key, drop_remainder)
    else:
        if key is not None:
            raise ValueError("key= shuffles array data (with batch_size=); "
                             "shuffle an iterable of batches yourself")
        batches = _IterableBatches(train_data, epochs)
    try:
        steps_per_epoch = len(batches)
    except TypeError:
        steps_per_epoch = None

    pmap = parallel_mode(train_step, state) == "pmap"
    if eval_fn is not None and eval_data is not None:
        eval_fn = jax.jit(eval_fn)
    history = History(monitor=monitor, mode=mode)
    step_count = int(np.asarray(jax.device_get(state.step)).ravel()[0])

    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        bar = _progress_bar(progress, steps_per_epoch, f"epoch {epoch}/{epochs}")
        first = len(history.steps)
        loss_sum, warned = 0.0, False
        try:
            for i, batch in enumerate(batches.epoch(epoch), start=1):
                if pmap:
                    batch = par.shard_batch(batch)
                state, metrics = train_step(state, batch)
                record = _scalar_metrics(metrics, pmap)
                step_count += 1
                history.steps.append({"step": step_count, "epoch": epoch, **record})
                if not math.isfinite(record["loss"]):
                    message = _nonfinite_message(record["loss"], step_count, epoch, i)
                    if on_nonfinite == "raise":
                        raise FloatingPointError(message + ". Pass on_nonfinite='warn' to keep training")
                    if not warned:
                        warnings.warn(message + "; further non-finite losses of this epoch are not reported",
                                      RuntimeWarning, stacklevel=2)
                        warned = True
                loss_sum += record["loss"]
                if bar is not None:
                    bar.set_postfix(loss=f"{loss_sum / i:.4g}", refresh=False)
                    bar.update(1)
            if len(history.steps) == first:
                raise ValueError(f"train_data gave no batches in epoch {epoch}")
            record = {"epoch": epoch, "step": step_count, **_epoch_means(history.steps[first:])}
            if eval_fn is not None:
                params = par.unreplicate(state.params) if pmap else state.params
                model_state = getattr(state, "model_state", None)
                if pmap and model_state is not None:
                    model_state = par.unreplicate(model_state)
                record.update(_evaluate(eval_fn, params, model_state, eval_data, eval_batch_size))
            record["time"] = time.perf_counter() - start
            history.epochs.append(record)
            if bar is not None:
                shown = {k: f"{v:.4g}" for k, v in record.items() if k == "loss" or k.startswith("val_")}
                bar.set_postfix(shown, refresh=True)
        finally:
            if bar is not None:
                bar.close()

        stop = stopper.update(epoch, record, state)
        history.best_epoch, history.best_value = stopper.best_epoch, stopper.best_value
        if on_epoch_end is not None and on_epoch_end(state, record):
            stop = True
        if stop:
            history.stopped_early = True
            break

    if stopper.best_state is not None and history.best_epoch != history.epochs[-1]["epoch"]:
        state, history.restored_best = stopper.best_state, True
    return state, history

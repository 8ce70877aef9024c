"""Early stopping: watch one epoch metric, keep the best epoch and its state, stop when patience runs out."""

import math

import jax
import numpy as np

from jloss._core import checks

__all__ = ["EarlyStopping"]


def _copy(tree):
    """A copy of ``tree`` with its own buffers, safe from a step that donates its input."""
    return jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array | np.ndarray) else x, tree)


class EarlyStopping:
    """Track the best value of an epoch metric and say when to stop.

    An epoch improves on the best when its value ``v`` beats the best ``b`` by
    more than ``min_delta``: ``v < b - min_delta`` with ``mode="min"``,
    ``v > b + min_delta`` with ``mode="max"``. A NaN value never improves.
    After ``patience`` epochs in a row without improvement, :meth:`update`
    returns True (as Keras ``EarlyStopping``: ``patience=0`` and ``1`` both stop
    at the first epoch that does not improve). Epochs are numbered as :func:`jloss.fit`
    numbers them, from 1.

    Args:
      monitor: the epoch metric to watch (a key of the epoch records:
        ``"val_loss"``, ``"val_accuracy"``, ``"loss"``, ``"accuracy"``, ...).
      mode: ``"min"`` (lower is better) or ``"max"``.
      patience: epochs without improvement before stopping; None never stops
        (the best epoch is still tracked).
      min_delta: the margin (>= 0) by which a value must beat the best.
      restore_best: keep a copy of the best epoch's state (only with
        ``patience`` set), as :attr:`best_state`.

    Attributes:
      best_epoch, best_value: the best epoch so far and its value (None before
        the first finite value).
      best_state: a copy of the state after the best epoch, or None.
      wait: epochs since the last improvement.

    Raises:
      ValueError: for a bad ``mode``, ``patience`` or ``min_delta``.

    Examples:
      >>> from jloss.train.early_stopping import EarlyStopping
      >>> stopper = EarlyStopping(monitor="val_loss", patience=1)
      >>> [stopper.update(e, {"val_loss": v}) for e, v in enumerate([3.0, 2.0, 2.5], start=1)]
      [False, False, True]
      >>> stopper.best_epoch, stopper.best_value
      (2, 2.0)
    """

    def __init__(self, monitor="val_loss", mode="min", patience=None, min_delta=0.0, restore_best=True):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be the name of an epoch metric (a str), got {monitor!r}")
        self.patience = None if patience is None else checks.check_int("patience", patience, low=0)
        self.min_delta = checks.check_number("min_delta", min_delta, low=0)
        self.monitor, self.mode = monitor, mode
        self.restore_best = bool(restore_best)
        self.best_epoch = self.best_value = self.best_state = None
        self.wait = 0

    def improves(self, value):
        """Whether ``value`` beats the best so far by more than ``min_delta``."""
        if math.isnan(value):
            return False
        if self.best_value is None:
            return True
        if self.mode == "min":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    def update(self, epoch, record, state=None):
        """Record ``epoch``'s metrics; return True when training should stop.

        Args:
          epoch: the epoch number.
          record: the epoch's metrics (a dict with ``monitor`` among its keys).
          state: the state after the epoch, copied as :attr:`best_state` when
            the epoch is the best so far and ``restore_best`` and ``patience``
            are set.

        Raises:
          ValueError: when ``monitor`` is not in ``record`` and ``patience`` is
            set (stopping on a metric that is never recorded would never stop).
        """
        if self.monitor not in record:
            if self.patience is None:
                return False
            raise ValueError(f"monitor={self.monitor!r} is not among the epoch metrics {sorted(record)}; "
                             "set monitor= to one of them (evaluation metrics need eval_fn)")
        value = float(record[self.monitor])
        if self.improves(value):
            self.best_epoch, self.best_value, self.wait = epoch, value, 0
            if self.restore_best and self.patience is not None and state is not None:
                self.best_state = _copy(state)
            return False
        self.wait += 1
        return self.patience is not None and self.wait >= self.patience

"""Optax optimizers by name, with schedules, clipping, weight decay, skipping and accumulation."""

import optax

from jloss._core import checks
from jloss.train.lr_state import inject_learning_rate


# Explicit signatures: optax.inject_hyperparams reads them (a ``**kw`` would be
# taken for a hyperparameter named "kw").
def _momentum(learning_rate, momentum=0.9, accumulator_dtype=None):
    """SGD with heavy-ball momentum (``optax.sgd(momentum=...)``)."""
    return optax.sgd(learning_rate, momentum=momentum, accumulator_dtype=accumulator_dtype)


def _nesterov(learning_rate, momentum=0.9, accumulator_dtype=None):
    """SGD with Nesterov momentum (``optax.sgd(momentum=..., nesterov=True)``)."""
    return optax.sgd(learning_rate, momentum=momentum, nesterov=True, accumulator_dtype=accumulator_dtype)


OPTIMIZERS = {
    "sgd": optax.sgd,
    "momentum": _momentum,
    "nesterov": _nesterov,
    "adam": optax.adam,
    "adamw": optax.adamw,
    "rmsprop": optax.rmsprop,
    "adagrad": optax.adagrad,
    "lion": optax.lion,
    "adafactor": optax.adafactor,
    "adamax": optax.adamax,
    "nadam": optax.nadam,
    "lamb": optax.lamb,
    "adabelief": optax.adabelief,
}

_DECOUPLED_DECAY = ("adamw", "lion", "lamb")

SCHEDULES = ("constant", "cosine", "warmup_cosine", "linear", "exponential")


def make_schedule(name, learning_rate, *, decay_steps=None, warmup_steps=0, end_value=0.0,
                  decay_rate=0.1):
    """A learning-rate schedule by name, after an optional linear warm-up.

    With ``warmup_steps > 0`` the rate first rises linearly from 0 to
    ``learning_rate`` over ``warmup_steps``; the named schedule follows. For
    the decaying schedules ``decay_steps`` counts the whole schedule, warm-up
    included (as ``optax.warmup_cosine_decay_schedule``):

    - ``constant``: ``learning_rate``.
    - ``cosine``: cosine decay to ``end_value`` at step ``decay_steps``.
    - ``warmup_cosine``: the same as ``cosine`` (the name says there is a warm-up).
    - ``linear``: linear decay to ``end_value`` at step ``decay_steps``.
    - ``exponential``: ``learning_rate * decay_rate ** (t / decay_steps)``, ``t``
      counted from the end of the warm-up.

    Args:
      name: one of ``"constant"``, ``"cosine"``, ``"warmup_cosine"``, ``"linear"``,
        ``"exponential"``.
      learning_rate: the peak rate (a float).
      decay_steps: the length of the whole schedule (decaying schedules).
      warmup_steps: steps of the linear warm-up from 0 (an int ``>= 0``).
      end_value: the final rate of ``cosine`` and ``linear``.
      decay_rate: the factor of ``exponential`` per ``decay_steps``.

    Returns:
      An optax schedule: a function of the step count.

    Raises:
      ValueError: an unknown name, a missing or too short ``decay_steps``, or a
        bad ``warmup_steps``.

    Examples:
      >>> import jloss
      >>> schedule = jloss.make_schedule("warmup_cosine", 1.0, warmup_steps=10, decay_steps=110)
      >>> [round(float(schedule(t)), 4) for t in (0, 5, 10, 60, 110)]
      [0.0, 0.5, 1.0, 0.5, 0.0]

    References:
      optax ``warmup_cosine_decay_schedule``; Loshchilov, I. and Hutter, F.
      (2017). SGDR: Stochastic Gradient Descent with Warm Restarts. ICLR.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known schedules: {', '.join(SCHEDULES)}")
    learning_rate = checks.check_number("learning_rate", learning_rate, low=0)
    warmup_steps = checks.check_int("warmup_steps", warmup_steps, low=0)
    end_value = checks.check_number("end_value", end_value)
    if name == "constant":
        decay = optax.constant_schedule(learning_rate)
    else:
        if decay_steps is None:
            raise ValueError(f"schedule {name!r} needs decay_steps > 0, got None")
        decay_steps = checks.check_int("decay_steps", decay_steps, low=1)
        length = decay_steps - warmup_steps
        if name != "exponential" and length <= 0:
            raise ValueError(f"schedule {name!r} needs decay_steps > warmup_steps (decay_steps counts the "
                             f"whole schedule, warm-up included), got {decay_steps} and {warmup_steps}")
        if name in ("cosine", "warmup_cosine"):
            decay = optax.cosine_decay_schedule(
                learning_rate, length, alpha=end_value / learning_rate if learning_rate else 0.0)
        elif name == "linear":
            decay = optax.linear_schedule(learning_rate, end_value, length)
        else:
            decay_rate = checks.check_number("decay_rate", decay_rate, low=0, low_open=True)
            decay = optax.exponential_decay(learning_rate, decay_steps, decay_rate)
    if not warmup_steps:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, learning_rate, warmup_steps), decay],
                                [warmup_steps])


def optimizer(name, learning_rate, *, schedule=None, decay_steps=None, warmup_steps=0,
              end_value=0.0, clip_norm=None, weight_decay=None, skip_nonfinite=False,
              max_consecutive_errors=5, accumulate_steps=1, **options):
    """An ``optax.GradientTransformation`` by name.

    Args:
      name: one of ``sorted(jloss.train.optim.OPTIMIZERS)`` ("sgd", "momentum",
        "nesterov", "adam", "adamw", "rmsprop", "adagrad", "lion", ...).
      learning_rate: a float or an optax schedule (a callable of the step).
      schedule: a schedule name (see :func:`make_schedule`) applied to a float
        ``learning_rate``, with ``decay_steps``, ``warmup_steps``, ``end_value``.
        ``warmup_steps`` without a schedule warms up to the constant rate;
        ``decay_steps`` or ``end_value`` without a decaying schedule raise
        ValueError, as do any of the three with a schedule passed as
        ``learning_rate``.
      clip_norm: clip gradients by global norm (> 0) first.
      weight_decay: decoupled decay for adamw / lion / lamb, L2 added to the
        gradient (``optax.add_decayed_weights``) for the others (>= 0).
      skip_nonfinite: skip gradients that are not finite. Without
        accumulation, the update is skipped (``optax.apply_if_finite``, giving
        up after ``max_consecutive_errors`` skips in a row). With
        ``accumulate_steps``, the bad gradient is dropped before it reaches the
        accumulator (``optax.MultiSteps(should_skip_update_fn=
        optax.skip_not_finite)``): the window fills with the next good
        gradients, so a bad batch costs at most one window and never poisons
        the accumulated gradient (``max_consecutive_errors`` does not apply).
      accumulate_steps: average gradients over k calls (a positive int) before
        one update (``optax.MultiSteps``).
      **options: passed to the optax constructor (``b1``, ``momentum``, ...).

    The learning rate (only it) is injected as a hyperparameter, so train
    steps can report it (``jloss.learning_rate(opt_state)``) and callers can change it
    (``jloss.set_learning_rate``; see :mod:`jloss.train.lr_state`). Numeric options
    are checked here: a NaN, infinite or negative ``learning_rate``,
    ``clip_norm <= 0``, a NaN or negative ``weight_decay``, schedule numbers
    out of range or an ``accumulate_steps`` that is not a positive int raise
    ValueError naming the option; NumPy numbers are accepted.

    Returns:
      An ``optax.GradientTransformation``: clipping, weight decay, the optimizer,
      non-finite skipping and accumulation, chained in that order.

    Raises:
      ValueError: an unknown name (the message lists the known ones), or options
        that contradict each other (a schedule name with a schedule as
        ``learning_rate``, ``decay_steps`` without a decaying schedule, ...).

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> tx = jloss.optimizer("momentum", 0.1, clip_norm=1.0)
      >>> params = jnp.array([1.0, 1.0])
      >>> updates, _ = tx.update(jnp.array([3.0, 4.0]), tx.init(params))  # clipped to norm 1
      >>> [round(v, 4) for v in updates.tolist()]
      [-0.06, -0.08]

    References:
      optax (``optax.adamw``, ``optax.clip_by_global_norm``, ``optax.MultiSteps``,
      ``optax.apply_if_finite``); Loshchilov, I. and Hutter, F. (2019). Decoupled
      Weight Decay Regularization. ICLR.
    """
    if not isinstance(name, str) or name.lower() not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known optimizers: {', '.join(sorted(OPTIMIZERS))}")
    name = name.lower()
    accumulate_steps = checks.check_int("accumulate_steps", accumulate_steps, low=1)
    if skip_nonfinite:
        max_consecutive_errors = checks.check_int("max_consecutive_errors", max_consecutive_errors, low=0)
    if clip_norm is not None:
        clip_norm = checks.check_number("clip_norm", clip_norm, low=0, low_open=True)
    if weight_decay is not None:
        weight_decay = checks.check_number("weight_decay", weight_decay, low=0)
    if not callable(learning_rate):
        learning_rate = checks.check_number("learning_rate", learning_rate, low=0)
    shaping = [k for k, v in [("warmup_steps", warmup_steps), ("decay_steps", decay_steps),
                              ("end_value", end_value)] if v not in (0, None)]
    if callable(learning_rate):
        if schedule is not None:
            raise ValueError("pass either a schedule name or a schedule as learning_rate, not both")
        if shaping:
            raise ValueError(f"learning_rate is already a schedule, so {', '.join(shaping)} cannot shape "
                             "it: build them into it (a warm-up with optax.join_schedules)")
    elif schedule in (None, "constant"):
        unused = [k for k in shaping if k != "warmup_steps"]
        if unused:
            raise ValueError(f"{' and '.join(unused)} {'apply' if len(unused) > 1 else 'applies'} only to "
                             f"a named schedule: pass schedule= one of {', '.join(SCHEDULES[1:])} (the "
                             "constant rate does not decay)")
        # A warm-up to the constant rate is a schedule; the constant rate alone
        # stays a number (settable in the state, no step count to carry).
        schedule = "constant" if shaping else None
    if schedule is not None:
        learning_rate = make_schedule(schedule, learning_rate, decay_steps=decay_steps,
                                      warmup_steps=warmup_steps, end_value=end_value)
    if weight_decay is not None and name in _DECOUPLED_DECAY:
        options["weight_decay"] = weight_decay
    tx = inject_learning_rate(OPTIMIZERS[name], learning_rate, **options)
    if weight_decay is not None and name not in _DECOUPLED_DECAY:
        tx = optax.chain(optax.add_decayed_weights(weight_decay), tx)
    if clip_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(clip_norm), tx)
    if accumulate_steps > 1:
        # Skipping inside MultiSteps keeps a bad gradient out of the accumulator;
        # apply_if_finite around the inner optimizer would only see the poisoned mean.
        skip = optax.skip_not_finite if skip_nonfinite else None
        tx = optax.MultiSteps(tx, every_k_schedule=accumulate_steps,
                              should_skip_update_fn=skip).gradient_transformation()
    elif skip_nonfinite:
        tx = optax.apply_if_finite(tx, max_consecutive_errors)
    return tx

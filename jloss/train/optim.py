"""Optax optimizers by name, with schedules, clipping, weight decay, skipping and accumulation."""

import inspect

import jax
import jax.numpy as jnp
import optax

from jloss._core import checks


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
    steps can report it (``jloss.learning_rate(opt_state)``). Numeric options
    are checked here: a NaN, infinite or negative ``learning_rate``,
    ``clip_norm <= 0``, a NaN or negative ``weight_decay``, schedule numbers
    out of range or an ``accumulate_steps`` that is not a positive int raise
    ValueError naming the option; NumPy numbers are accepted.
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
    factory = OPTIMIZERS[name]
    # Only the learning rate is injected (an array in opt_state, readable by
    # learning_rate()); the other hyperparameters stay compile-time constants,
    # as in the plain optax optimizer, so the step carries no extra arrays.
    static = tuple(p for p in inspect.signature(factory).parameters if p != "learning_rate")
    tx = optax.inject_hyperparams(factory, static_args=static)(learning_rate=learning_rate, **options)
    if not callable(learning_rate):
        tx = _without_step_count(tx)
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


def _without_step_count(tx):
    """``tx``, an ``optax.inject_hyperparams`` transformation of numbers only, without its step count.

    Only schedules read that count; with a numeric learning rate it is one more
    array in and out of every step for nothing (1.5% of the wall-clock time of a
    0.12 ms CPU step, 3.5% of its CPU time). The state keeps ``count=None``; the
    update hands optax a zero, which it does not read.
    """
    def init(params):
        return tx.init(params)._replace(count=None)

    def update(updates, state, params=None, **extra_args):
        updates, state = tx.update(updates, state._replace(count=jnp.zeros([], jnp.int32)), params,
                                   **extra_args)
        return updates, state._replace(count=None)

    return optax.GradientTransformationExtraArgs(init, update)


def learning_rate(opt_state):
    """The current learning rate stored in ``opt_state``, or None if it has none."""
    found = []

    def visit(node):
        hp = getattr(node, "hyperparams", None)
        if isinstance(hp, dict) and "learning_rate" in hp:
            found.append(hp["learning_rate"])
            return True
        return False

    jax.tree_util.tree_leaves(opt_state, is_leaf=visit)
    return found[0] if found else None

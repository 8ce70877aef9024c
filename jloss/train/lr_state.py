"""The learning rate inside an optax state: how it is stored, read and overwritten.

:func:`jloss.optimizer` stores its learning rate in the optimizer state (an
``optax.inject_hyperparams`` hyperparameter), so a train step can report the
rate of every update and a caller (the LR range test, a per-run rate in a
sweep) can change it between steps without rebuilding the optimizer. The
three questions (what is the rate, set it, can it be set) are answered here,
in one place, for every optimizer state of the package.
"""

import inspect

import jax
import jax.numpy as jnp
import optax

__all__ = ["inject_learning_rate", "learning_rate", "learning_rate_settable", "set_learning_rate"]


def _injected(node):
    """Whether ``node`` is an ``inject_hyperparams`` state holding a ``learning_rate``."""
    hp = getattr(node, "hyperparams", None)
    return isinstance(hp, dict) and "learning_rate" in hp


def _injected_states(opt_state):
    """Every ``inject_hyperparams`` state in ``opt_state`` that holds a learning rate, in tree order."""
    return [node for node in jax.tree_util.tree_leaves(opt_state, is_leaf=_injected) if _injected(node)]


def inject_learning_rate(factory, learning_rate, **options):
    """``factory(learning_rate, **options)`` with its learning rate stored in the optimizer state.

    The learning rate is the only injected hyperparameter (an array in the
    state, readable by :func:`learning_rate`); the other options stay
    compile-time constants, as in the plain optax optimizer. A numeric rate
    keeps no step count: only schedules read it, and it would be one more
    array in and out of every step for nothing (1.5% of the wall-clock time
    of a 0.12 ms CPU step).

    Args:
      factory: an optax optimizer constructor taking ``learning_rate`` (``optax.adam``, ...).
      learning_rate: a float (then settable, see :func:`set_learning_rate`) or an
        optax schedule (a callable of the step count; recomputed every update).
      **options: the factory's other arguments.

    Returns:
      An ``optax.GradientTransformation``.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> from jloss.train.lr_state import inject_learning_rate, learning_rate
      >>> tx = inject_learning_rate(optax.sgd, 0.1, momentum=0.9)
      >>> round(float(learning_rate(tx.init({"w": jnp.zeros(2)}))), 4)
      0.1
    """
    static = tuple(p for p in inspect.signature(factory).parameters if p != "learning_rate")
    tx = optax.inject_hyperparams(factory, static_args=static)(learning_rate=learning_rate, **options)
    if callable(learning_rate):
        return tx

    def init(params):
        return tx.init(params)._replace(count=None)

    def update(updates, state, params=None, **extra_args):
        # optax reads the count only for schedules: a zero stands in for it
        updates, state = tx.update(updates, state._replace(count=jnp.zeros([], jnp.int32)), params,
                                   **extra_args)
        return updates, state._replace(count=None)

    return optax.GradientTransformationExtraArgs(init, update)


def learning_rate(opt_state):
    """The current learning rate stored in ``opt_state``, or None if it has none.

    Args:
      opt_state: the state of an optimizer from :func:`jloss.optimizer` (or any
        ``optax.inject_hyperparams`` optimizer), e.g. ``state.opt_state``.

    Returns:
      The learning rate as a scalar array, or None for an optimizer that does
      not store it.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> tx = jloss.optimizer("adam", 3e-4)
      >>> round(float(jloss.learning_rate(tx.init(jnp.zeros(2)))), 6)
      0.0003

    References:
      optax ``inject_hyperparams``.
    """
    states = _injected_states(opt_state)
    return states[0].hyperparams["learning_rate"] if states else None


def learning_rate_settable(opt_state):
    """Whether :func:`set_learning_rate` changes the rate the next update of ``opt_state`` uses.

    True when the state stores a learning rate (every :func:`jloss.optimizer`
    does) that is a number. A schedule is recomputed from the step count at
    every update, so a value written into the state would be ignored: False,
    as for a state that stores no rate (a plain optax optimizer).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> from jloss.train.lr_state import learning_rate_settable
      >>> params = {"w": jnp.zeros(2)}
      >>> learning_rate_settable(jloss.optimizer("sgd", 0.1).init(params))
      True
      >>> learning_rate_settable(jloss.optimizer("sgd", 0.1, schedule="cosine", decay_steps=10).init(params))
      False
    """
    states = _injected_states(opt_state)
    return bool(states) and all("learning_rate" not in (getattr(node, "hyperparams_states", None) or {})
                                for node in states)


def set_learning_rate(opt_state, value):
    """A copy of ``opt_state`` whose stored learning rate is ``value``.

    Every injected ``learning_rate`` in the state (one per
    :func:`jloss.optimizer`) is replaced, keeping its dtype; the state passed
    in is not changed. The next update uses ``value`` when
    :func:`learning_rate_settable` is True (a schedule overwrites it). Works
    under ``jax.jit`` and ``jax.vmap`` (a traced ``value``): a sweep can give
    each of its runs its own rate.

    Args:
      opt_state: an optimizer state from :func:`jloss.optimizer`.
      value: the new rate, a float or a scalar array.

    Returns:
      The new optimizer state.

    Raises:
      ValueError: if ``opt_state`` stores no learning rate (a plain optax optimizer).

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> opt_state = jloss.optimizer("adam", 1e-3).init({"w": jnp.zeros(2)})
      >>> round(float(jloss.learning_rate(jloss.set_learning_rate(opt_state, 0.5))), 4)
      0.5

    References:
      optax ``inject_hyperparams``.
    """
    if not _injected_states(opt_state):
        raise ValueError("opt_state stores no learning rate to set; build the optimizer with "
                         "jloss.optimizer(name, learning_rate)")

    def replace(node):
        if not _injected(node):
            return node
        hp = dict(node.hyperparams)
        hp["learning_rate"] = jnp.asarray(value, jnp.asarray(hp["learning_rate"]).dtype)
        return node._replace(hyperparams=hp)

    return jax.tree_util.tree_map(replace, opt_state, is_leaf=_injected)

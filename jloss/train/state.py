"""TrainState: step, parameters, optimizer state, and a model's non-trained state and PRNG key."""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """Training state: a pytree of ``step``, ``params``, ``opt_state``, ``model_state`` and ``rng``.

    The optimizer ``tx`` is static data (not a leaf), so a state passes
    through ``jax.jit``, ``jax.pmap`` and checkpointing like any pytree.

    ``model_state`` is the model's non-trained state (Flax Linen
    ``batch_stats``, the non-``Param`` state of an NNX model) and ``rng`` a
    PRNG key that the train step splits every step (dropout); both are None
    when unused. With either one set, :func:`jloss.make_train_step` calls
    ``loss_fn(params, batch, model_state, rng)`` and stores the new model state
    that ``loss_fn`` returns.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> import optax
      >>> state = jloss.TrainState.create(params={"w": jnp.array(1.0)}, tx=optax.sgd(0.1))
      >>> state = state.apply_gradients({"w": jnp.array(2.0)})
      >>> int(state.step), round(float(state.params["w"]), 4)
      (1, 0.8)
    """

    step: jax.Array
    params: Any
    opt_state: Any
    tx: optax.GradientTransformation = dataclasses.field(metadata={"static": True})
    model_state: Any = None
    rng: Any = None

    @property
    def stateful(self):
        """Whether the train step passes ``model_state`` and ``rng`` to ``loss_fn``."""
        return self.model_state is not None or self.rng is not None

    @classmethod
    def create(cls, *, params, tx, model_state=None, rng=None):
        """A fresh state at step 0 with ``tx.init(params)``.

        Args:
          params: the trained parameters (a pytree of float arrays).
          tx: an ``optax.GradientTransformation`` (e.g. :func:`jloss.optimizer`).
          model_state: non-trained model state (any pytree), or None.
          rng: a PRNG key, or an int seed (``jax.random.key(seed)``), or None.

        Returns:
          A :class:`TrainState` at step 0.

        Raises:
          TypeError: ``rng`` is neither None, an int nor a PRNG key.

        Examples:
          >>> import jax.numpy as jnp, jloss
          >>> tx = jloss.optimizer("sgd", 0.1)
          >>> state = jloss.TrainState.create(params={"w": jnp.zeros(2)}, tx=tx, rng=0)
          >>> int(state.step), state.model_state, state.stateful
          (0, None, True)
        """
        if isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_)):
            rng = jax.random.key(int(rng))
        elif rng is not None and not _is_key(rng):
            raise TypeError(f"rng must be None, an int seed or a PRNG key (jax.random.key(seed)), "
                            f"got {type(rng).__name__} {getattr(rng, 'dtype', '')}".rstrip())
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), tx=tx,
                   model_state=model_state, rng=rng)

    def apply_gradients(self, grads):
        """One optimizer update: ``params <- params + tx.update(grads)``; step + 1."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return dataclasses.replace(self, step=self.step + 1,
                                   params=optax.apply_updates(self.params, updates),
                                   opt_state=opt_state)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _is_key(x):
    """A typed PRNG key (``jax.random.key``) or a raw uint32 one (``jax.random.PRNGKey``)."""
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return False
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        return True
    return dtype == jnp.uint32 and jnp.shape(x)[-1:] == (2,)

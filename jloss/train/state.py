"""TrainState: step, parameters and optimizer state in one pytree."""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """Training state: a pytree of ``step``, ``params`` and ``opt_state``.

    The optimizer ``tx`` is static data (not a leaf), so a state passes
    through ``jax.jit``, ``jax.pmap`` and checkpointing like any pytree.

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

    @classmethod
    def create(cls, *, params, tx):
        """A fresh state at step 0 with ``tx.init(params)``."""
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), tx=tx)

    def apply_gradients(self, grads):
        """One optimizer update: ``params <- params + tx.update(grads)``; step + 1."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return dataclasses.replace(self, step=self.step + 1,
                                   params=optax.apply_updates(self.params, updates),
                                   opt_state=opt_state)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

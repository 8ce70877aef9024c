"""Helpers for data parallelism: replicate / unreplicate / shard_batch, and the data mesh.

Built on ``jax.device_put`` with shardings (``jax.device_put_replicated`` is gone
from JAX).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def _devices(devices):
    return list(jax.local_devices() if devices is None else devices)


def replicate(tree, devices=None):
    """Copy every leaf onto each local device, with a leading device axis (for ``pmap``)."""
    devices = _devices(devices)
    sharding = NamedSharding(Mesh(np.array(devices), ("devices",)), PartitionSpec("devices"))
    stacked = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(devices), *jnp.shape(x))), tree)
    return jax.device_put(stacked, sharding)


def unreplicate(tree):
    """The first device's copy of a replicated tree (drops the leading device axis)."""
    return jax.tree.map(lambda x: x[0], tree)


def check_divisible(batch, count, what):
    for leaf in jax.tree_util.tree_leaves(batch):
        n = jnp.shape(leaf)[0] if jnp.ndim(leaf) else None
        if n is None or n % count:
            raise ValueError(
                f"batch size {n} does not divide across {count} {what}; "
                f"use a batch size that is a multiple of {count} (or drop the remainder)"
            )


def shard_batch(batch, devices=None):
    """Split the leading batch axis ``B`` into ``(num_devices, B // num_devices)`` for ``pmap``.

    Raises ValueError when ``B`` is not a multiple of the device count.
    """
    n = len(_devices(devices))
    check_divisible(batch, n, "devices")
    return jax.tree.map(lambda x: jnp.reshape(x, (n, x.shape[0] // n, *x.shape[1:])), batch)


def data_mesh(devices=None, axis_name="data"):
    """A 1-D mesh over all (global) devices for data parallelism."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.array(devices), (axis_name,))


def is_replicated(state):
    """Whether ``state`` (a :class:`jloss.TrainState`) has a leading device axis, as ``replicate`` gives."""
    return jnp.ndim(state.step) == 1

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
    """Copy every leaf onto each local device, with a leading device axis (for ``pmap``).

    Args:
      tree: a pytree of arrays (a :class:`jloss.TrainState`, params).
      devices: the devices (default: ``jax.local_devices()``).

    Returns:
      The tree with a leading axis of size ``len(devices)``, sharded over it.

    Raises:
      ValueError: (from JAX) an empty ``devices``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> import jax
      >>> tree = jloss.replicate({"w": jnp.ones(3)})
      >>> tree["w"].shape == (jax.local_device_count(), 3)
      True

    References:
      ``flax.jax_utils.replicate``.
    """
    devices = _devices(devices)
    sharding = NamedSharding(Mesh(np.array(devices), ("devices",)), PartitionSpec("devices"))
    stacked = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(devices), *jnp.shape(x))), tree)
    return jax.device_put(stacked, sharding)


def unreplicate(tree):
    """The first device's copy of a replicated tree (drops the leading device axis).

    Args:
      tree: a pytree whose leaves have a leading device axis (from :func:`replicate`
        or a ``pmap`` step).

    Returns:
      The tree without the leading axis.

    Raises:
      IndexError: a leaf without a leading axis.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> jloss.unreplicate(jloss.replicate({"w": jnp.ones(3)}))["w"].tolist()
      [1.0, 1.0, 1.0]

    References:
      ``flax.jax_utils.unreplicate``.
    """
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

    Args:
      batch: a pytree of arrays with a leading batch axis ``B``.
      devices: the devices (default: ``jax.local_devices()``).

    Returns:
      The batch with leaves of shape ``(num_devices, B // num_devices, ...)``.

    Raises:
      ValueError: ``B`` is not a multiple of the device count.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> import jax
      >>> n = jax.local_device_count()
      >>> jloss.shard_batch(jnp.zeros((4 * n, 2))).shape == (n, 4, 2)
      True

    References:
      ``flax.training.common_utils.shard``.
    """
    n = len(_devices(devices))
    check_divisible(batch, n, "devices")
    return jax.tree.map(lambda x: jnp.reshape(x, (n, x.shape[0] // n, *x.shape[1:])), batch)


def data_mesh(devices=None, axis_name="data"):
    """A 1-D mesh over all (global) devices for data parallelism.

    For ``make_train_step(..., parallel="mesh", mesh=...)``: the batch is
    sharded over ``axis_name``, the parameters replicated.

    Args:
      devices: the devices (default: ``jax.devices()``, every process's).
      axis_name: the name of the mesh axis.

    Returns:
      A ``jax.sharding.Mesh`` of shape ``(len(devices),)``.

    Raises:
      ValueError: (from JAX) an empty ``devices``.

    Examples:
      >>> import jax
      >>> import jloss
      >>> mesh = jloss.data_mesh()
      >>> mesh.axis_names, mesh.size == jax.device_count()
      (('data',), True)

    References:
      ``jax.sharding.Mesh``; the JAX guide "Distributed arrays and automatic
      parallelization".
    """
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.array(devices), (axis_name,))


def is_replicated(state):
    """Whether ``state`` (a :class:`jloss.TrainState`) has a leading device axis, as ``replicate`` gives."""
    return jnp.ndim(state.step) == 1

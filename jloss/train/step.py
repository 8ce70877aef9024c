"""Train steps: single device (jit), pmap, and a global-view jit over a device mesh.

All three paths compute the same update: the gradient of the mean loss over
the whole batch. Under ``pmap`` each device takes the gradient of its shard's
mean and ``lax.pmean`` averages them (equal shards make that the global mean);
under ``"mesh"`` one ``jax.jit`` program sees the global batch sharded over the
"data" axis and XLA inserts the all-reduce itself.
"""

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from jloss.train import parallel as par
from jloss.train.optim import learning_rate


def per_example_grads(loss_fn, *, has_aux=False):
    """``f(params, batch) -> grads`` with a leading batch axis on every leaf.

    Each example is given to ``loss_fn`` as a batch of one, so ``loss_fn`` is
    written for batches as usual: ``vmap(grad(loss_fn), in_axes=(None, 0))``.
    With ``has_aux`` the result is ``(grads, aux)``, aux per example.
    """
    def one(params, example):
        batch = jax.tree.map(lambda x: x[None], example)
        return jax.grad(loss_fn, has_aux=has_aux)(params, batch)

    return jax.vmap(one, in_axes=(None, 0))


def _per_example_losses_and_grads(loss_fn, has_aux):
    def one(params, example):
        batch = jax.tree.map(lambda x: x[None], example)
        return jax.value_and_grad(loss_fn, has_aux=has_aux)(params, batch)

    return jax.vmap(one, in_axes=(None, 0))


def _private_grads(loss_fn, has_aux, clip_norm, noise_multiplier, key):
    """DP-SGD: clip each example's gradient to ``clip_norm``, sum, add Gaussian noise, average."""
    per_example = _per_example_losses_and_grads(loss_fn, has_aux)

    def grads_fn(params, batch, step):
        out, grads = per_example(params, batch)
        loss, aux = out if has_aux else (out, None)
        norms = jax.vmap(optax.global_norm)(grads)
        scale = jnp.minimum(1.0, clip_norm / jnp.maximum(norms, 1e-12))
        summed = jax.tree.map(lambda g: jnp.tensordot(scale.astype(g.dtype), g, axes=1), grads)
        leaves, treedef = jax.tree_util.tree_flatten(summed)
        keys = jax.random.split(jax.random.fold_in(key, step), len(leaves))
        n = norms.shape[0]
        noisy = [(g + noise_multiplier * clip_norm * jax.random.normal(k, g.shape, g.dtype)) / n
                 for g, k in zip(leaves, keys, strict=False)]
        aux = None if aux is None else jax.tree.map(lambda a: jnp.mean(a, axis=0), aux)
        return (jnp.mean(loss), aux), jax.tree_util.tree_unflatten(treedef, noisy)

    return grads_fn


def make_train_step(loss_fn, *, has_aux=False, parallel=None, mesh=None, axis_name="data",
                    dp_clip_norm=None, dp_noise_multiplier=0.0, dp_key=None, donate=False):
    """Build ``step(state, batch) -> (state, metrics)``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> loss`` or ``(loss, aux)`` with ``has_aux``;
        the loss is the mean over the batch.
      parallel: None (one jitted device), ``"pmap"`` (``jax.pmap`` over a leading
        device axis: pass ``replicate(state)`` and ``shard_batch(batch)``;
        gradients are averaged across devices) or ``"mesh"`` (``jax.jit`` over
        ``mesh``, default all devices on a "data" axis: the batch is sharded on
        its leading axis, params replicated; works multi-process after
        ``jax.distributed.initialize()``, each process passing its local batch).
      dp_clip_norm, dp_noise_multiplier, dp_key: DP-SGD. Each example's
        gradient is clipped to ``dp_clip_norm`` (via :func:`per_example_grads`),
        the sum gets Gaussian noise of std ``dp_noise_multiplier * dp_clip_norm``
        drawn from ``fold_in(dp_key, state.step)``, and is divided by the batch size.
      donate: donate the input state's buffers to the step.

    Returns ``metrics`` with ``loss``, ``grad_norm``, ``learning_rate`` (when the
    optimizer stores it, as :func:`jloss.optimizer` does) and ``aux``.
    """
    if parallel not in (None, "pmap", "mesh"):
        raise ValueError(f"parallel must be None, 'pmap' or 'mesh', got {parallel!r}")
    if dp_clip_norm is not None:
        if dp_clip_norm <= 0:
            raise ValueError(f"dp_clip_norm must be > 0, got {dp_clip_norm}")
        key = jax.random.key(0) if dp_key is None else dp_key
        grads_fn = _private_grads(loss_fn, has_aux, dp_clip_norm, dp_noise_multiplier, key)
    else:
        vg = jax.value_and_grad(loss_fn, has_aux=has_aux)

        def grads_fn(params, batch, step):
            out, grads = vg(params, batch)
            return (out if has_aux else (out, None)), grads

    def update(state, batch, reduce=lambda t: t):
        (loss, aux), grads = grads_fn(state.params, batch, state.step)
        loss, aux, grads = reduce((loss, aux, grads))
        new_state = state.apply_gradients(grads)
        metrics = {"loss": loss, "grad_norm": optax.global_norm(grads)}
        lr = learning_rate(state.opt_state)
        if lr is not None:
            metrics["learning_rate"] = lr
        if aux is not None:
            metrics["aux"] = aux
        return new_state, metrics

    donate_args = (0,) if donate else ()
    if parallel is None:
        return jax.jit(update, donate_argnums=donate_args)

    if parallel == "pmap":
        pstep = jax.pmap(
            lambda s, b: update(s, b, lambda t: jax.lax.pmean(t, axis_name)),
            axis_name=axis_name, donate_argnums=donate_args)

        def pmap_step(state, batch):
            n = jax.local_device_count()
            for leaf in jax.tree_util.tree_leaves(batch):
                if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != n:
                    raise ValueError(
                        f"parallel='pmap' needs a batch with a leading axis of {n} devices, got "
                        f"shape {jnp.shape(leaf)}; use jloss.shard_batch(batch)")
            return pstep(state, batch)

        return pmap_step

    mesh = par.data_mesh(axis_name=axis_name) if mesh is None else mesh
    axis = mesh.axis_names[0]
    data = NamedSharding(mesh, PartitionSpec(axis))
    replicated = NamedSharding(mesh, PartitionSpec())
    jstep = jax.jit(update, in_shardings=(replicated, data), out_shardings=replicated,
                    donate_argnums=donate_args)
    local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)

    def mesh_step(state, batch):
        par.check_divisible(batch, local_devices, f"devices of mesh axis {axis!r}")
        if jax.process_count() > 1:
            batch = jax.tree.map(lambda x: jax.make_array_from_process_local_data(data, x), batch)
        return jstep(state, batch)

    return mesh_step

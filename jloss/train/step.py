"""Train steps: single device (jit), pmap, and a global-view jit over a device mesh.

All three paths compute the same update: the gradient of the mean loss over
the whole batch. Under ``pmap`` each device takes the gradient of its shard's
loss and ``lax.pmean`` averages them; while the step traces ``loss_fn``, every
jloss ``"mean"`` divides by the count over all devices (see
:func:`jloss._core.reduce.global_mean_over`), so masks and weights that make
devices count different numbers of examples still give the global weighted
mean. Under ``"mesh"`` one ``jax.jit`` program sees the global batch sharded
over the "data" axis and XLA inserts the all-reduce itself.

A state with a ``model_state`` or an ``rng`` (:class:`jloss.TrainState`) makes
the step call ``loss_fn(params, batch, model_state, rng)`` with a fresh key
each step and keep the new model state that ``loss_fn`` returns.
"""

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from jloss._core.checks import concrete
from jloss._core.reduce import global_mean_over
from jloss.train import parallel as par
from jloss.train.lr_state import learning_rate

# Up to this many gradient entries the norm is taken over one concatenated
# vector: one reduction kernel instead of one per leaf, which is most of the
# cost of the norm for small models (step 1.06x instead of 1.2x a hand-written
# step without the norm, 7k-parameter MLP, single-threaded CPU time). Above it,
# per-leaf sums: XLA's CPU concatenate is slow (break-even near 50k entries,
# 2x the step time at 200k), and they avoid a copy of every gradient.
_CONCAT_NORM_MAX_SIZE = 1 << 15


def _global_norm(tree):
    """The L2 norm of all leaves of ``tree`` together (as ``optax.tree.norm``), in float32."""
    leaves = [x.astype(jnp.float32).ravel() for x in jax.tree_util.tree_leaves(tree)]
    if not leaves:
        return jnp.zeros((), jnp.float32)
    if sum(x.size for x in leaves) <= _CONCAT_NORM_MAX_SIZE:
        flat = jnp.concatenate(leaves)
        return jnp.sqrt(jnp.dot(flat, flat))
    # The barrier keeps XLA from sharing ``g * g`` with Adam's second-moment
    # update, which would write it out as a full array instead of fusing it
    # (step 1.03x instead of 1.08x, 670k-parameter MLP).
    leaves = jax.lax.optimization_barrier(leaves)
    return jnp.sqrt(sum(jnp.sum(x * x) for x in leaves))


def per_example_grads(loss_fn, *, has_aux=False):
    r"""The gradient of each example's loss: a jitted ``f(params, batch) -> grads``.

    .. math::
        g_i = \nabla_\theta\, \ell(\theta; x_i), \quad i = 1, \dots, B

    Each example is given to ``loss_fn`` as a batch of one, so ``loss_fn`` is
    written for batches as usual: ``jit(vmap(grad(loss_fn), in_axes=(None, 0)))``.
    Per-example gradients are what DP-SGD clips (``dp_clip_norm`` of
    :func:`make_train_step`); as JAX's per-example gradient recipe.

    Args:
      loss_fn: ``loss_fn(params, batch) -> loss`` (or ``(loss, aux)`` with ``has_aux``).
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.

    Returns:
      A jitted function ``f(params, batch)`` returning ``grads`` (``params``'
      structure, each leaf with a leading batch axis ``B``), or
      ``(grads, aux)`` with ``has_aux`` (aux per example).

    Raises:
      ValueError: (when called) leaves of ``batch`` with different leading sizes.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> f = jloss.per_example_grads(lambda w, b: jnp.mean((b[0] * w - b[1]) ** 2))
      >>> [round(float(g), 4) for g in f(jnp.float32(1.0), (jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0])))]
      [2.0, 8.0]

    References:
      Abadi et al., "Deep Learning with Differential Privacy", CCS 2016.
    """
    def one(params, example):
        batch = jax.tree.map(lambda x: x[None], example)
        return jax.grad(loss_fn, has_aux=has_aux)(params, batch)

    return jax.jit(jax.vmap(one, in_axes=(None, 0)))


def _per_example_losses_and_grads(loss_fn, has_aux):
    def one(params, example):
        batch = jax.tree.map(lambda x: x[None], example)
        return jax.value_and_grad(loss_fn, has_aux=has_aux)(params, batch)

    return jax.vmap(one, in_axes=(None, 0))


def _clipped_mean_grads(loss_fn, has_aux, clip_norm):
    """DP-SGD, first half: clip each example's gradient to ``clip_norm``, then average.

    The Gaussian noise is added by the step after gradients are reduced across
    devices, so that it is drawn once per step, not once per device.
    """
    per_example = _per_example_losses_and_grads(loss_fn, has_aux)

    def grads_fn(params, batch):
        out, grads = per_example(params, batch)
        loss, aux = out if has_aux else (out, None)
        norms = jax.vmap(optax.tree.norm)(grads)
        scale = jnp.minimum(1.0, clip_norm / jnp.maximum(norms, 1e-12))
        n = norms.shape[0]
        mean = jax.tree.map(lambda g: jnp.tensordot(scale.astype(g.dtype), g, axes=1) / n, grads)
        aux = None if aux is None else jax.tree.map(lambda a: jnp.mean(a, axis=0), aux)
        return (jnp.mean(loss), aux), mean

    return grads_fn


def _add_noise(grads, key, step, std):
    """``grads + std * N(0, 1)`` from ``fold_in(key, step)``.

    One draw for the whole tree (then split per leaf): a single random-bits
    kernel compiles much faster on CPU than one per leaf.
    """
    leaves, treedef = jax.tree_util.tree_flatten(grads)
    sizes = [g.size for g in leaves]
    z = jax.random.normal(jax.random.fold_in(key, step), (sum(sizes),), jnp.float32)
    parts = jnp.split(z, np.cumsum(sizes)[:-1]) if len(sizes) > 1 else [z]
    noisy = [g + (std * part).reshape(g.shape).astype(g.dtype) for g, part in zip(leaves, parts, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, noisy)


def _batch_size(batch):
    leaves = jax.tree_util.tree_leaves(batch)
    return jnp.shape(leaves[0])[0]


@dataclasses.dataclass(frozen=True)
class TrainStep:
    """A train step built by :func:`make_train_step`: ``step(state, batch) -> (state, metrics)``.

    Attributes:
      fn: the function that runs the step.
      parallel: its parallel mode, None, ``"pmap"`` or ``"mesh"``; :func:`jloss.fit`
        reads it (through wrappers that set ``__wrapped__``, such as
        ``functools.wraps`` and ``jax.jit``) to shard batches for ``"pmap"``.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> step = jloss.make_train_step(lambda w, batch: jloss.mse(batch * w, batch))
      >>> isinstance(step, jloss.TrainStep), step.parallel
      (True, None)
    """

    fn: Callable
    parallel: str | None = None

    def __call__(self, state, batch):
        return self.fn(state, batch)


def parallel_mode(train_step, state):
    """The parallel mode a loop must feed ``train_step`` in: None, ``"pmap"`` or ``"mesh"``.

    The ``parallel`` of the :class:`TrainStep` found by following ``__wrapped__``
    from ``train_step``; for any other callable (a lambda around a step),
    ``"pmap"`` when ``state`` is replicated (a leading device axis) and None
    otherwise (a mesh step shards its batch itself).
    """
    fn = train_step
    while fn is not None:
        if isinstance(fn, TrainStep):
            return fn.parallel
        fn = getattr(fn, "__wrapped__", None)
    return "pmap" if par.is_replicated(state) else None


def _dp_number(name, value, *, positive):
    """A DP-SGD option: a finite Python or NumPy real number, > 0 or >= 0; as a float."""
    v = concrete(value)
    if v is None or v.ndim or v.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real number (a Python or NumPy scalar), got {value!r}")
    v = float(v)
    if not math.isfinite(v) or (v <= 0 if positive else v < 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'} and finite, got {v}")
    return v


def _stateful_out(out, has_aux):
    """``(loss, new_model_state, aux)`` from a stateful ``loss_fn``'s result."""
    shape = "(loss, (new_model_state, aux))" if has_aux else "(loss, new_model_state)"
    if not (isinstance(out, tuple) and len(out) == 2) or (
            has_aux and not (isinstance(out[1], tuple) and len(out[1]) == 2)):
        raise TypeError(
            f"with a state that has model_state or rng, the step calls loss_fn(params, batch, "
            f"model_state, rng), which must return {shape}; got {type(out).__name__}")
    loss, rest = out
    return (loss, *rest) if has_aux else (loss, rest, None)


def _check_model_state(new, old):
    """The new model state must have the old one's structure, shapes and dtypes."""
    def spec(tree):
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        return treedef, [(jnp.shape(x), jnp.asarray(x).dtype) for x in leaves]

    (new_def, new_leaves), (old_def, old_leaves) = spec(new), spec(old)
    if new_def != old_def or new_leaves != old_leaves:
        raise ValueError(
            "loss_fn returned a new model state unlike state.model_state (tree structure, shapes or "
            f"dtypes differ): got {new_def} with {new_leaves}, expected {old_def} with {old_leaves}")


def _from_first_device(x, axis):
    """Device 0's value of a non-float leaf, on every device of ``axis``."""
    first = jax.lax.axis_index(axis) == 0
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = jax.random.key_data(x)
        data = jax.lax.psum(jnp.where(first, data, jnp.zeros_like(data)), axis)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    as_int = x.astype(jnp.int32) if x.dtype == jnp.bool_ else x
    return jax.lax.psum(jnp.where(first, as_int, jnp.zeros_like(as_int)), axis).astype(x.dtype)


def _sync_model_state(tree, axis):
    """Under pmap: float leaves averaged over devices, the others (counters, keys) device 0's."""
    def one(x):
        x = jnp.asarray(x)
        if jnp.issubdtype(x.dtype, jnp.inexact):
            return jax.lax.pmean(x, axis)
        return _from_first_device(x, axis)

    return jax.tree.map(one, tree)


def make_train_step(loss_fn, *, has_aux=False, parallel=None, mesh=None, axis_name="data",
                    dp_clip_norm=None, dp_noise_multiplier=0.0, dp_key=None, donate=False):
    r"""Build a train step ``step(state, batch) -> (state, metrics)``: one optimizer update.

    .. math::
        \theta \leftarrow \theta + \mathrm{tx}\big(\nabla_\theta L(\theta; \text{batch})\big)

    with ``L`` the loss of the whole (global) batch on every path, as a
    hand-written ``jax.value_and_grad`` + ``optax`` step.

    ``loss_fn(params, batch)`` returns the loss (the mean over the batch) or
    ``(loss, aux)`` with ``has_aux``. When the state has a ``model_state`` or
    an ``rng`` (:meth:`jloss.TrainState.create`), the step calls
    ``loss_fn(params, batch, model_state, rng)`` instead, which returns
    ``(loss, new_model_state)`` or ``(loss, (new_model_state, aux))``:
    ``rng`` is a fresh key each step (``rng, key = jax.random.split(state.rng)``;
    None when the state has no rng), different on every device under ``"pmap"``
    (``fold_in(key, device index)``) and one key for the global batch under
    ``"mesh"``; the step stores ``new_model_state`` (same structure as
    ``model_state``) and the split ``rng`` in the new state. Under ``"pmap"``
    the float leaves of the new model state are averaged over devices, the
    others (counters, keys) taken from device 0.

    Args:
      loss_fn: the loss, as above.
      has_aux: whether ``loss_fn`` returns auxiliary outputs (averaged over
        devices under ``"pmap"``).
      parallel: None (one jitted device), ``"pmap"`` (``jax.pmap`` over a leading
        device axis: pass ``replicate(state)`` and ``shard_batch(batch)``;
        gradients are averaged across devices, and jloss ``"mean"`` losses
        traced in ``loss_fn`` divide by the count over all devices, so masks
        and weights give the global weighted mean) or ``"mesh"`` (``jax.jit``
        over ``mesh``, default all devices on a "data" axis: the batch is
        sharded on its leading axis, the state replicated; works multi-process
        after ``jax.distributed.initialize()``, each process passing its local
        batch).
      mesh, axis_name: the mesh of ``"mesh"`` and the device axis name.
      dp_clip_norm, dp_noise_multiplier, dp_key: DP-SGD. Each example's
        gradient is clipped to ``dp_clip_norm`` (> 0, finite; via
        :func:`per_example_grads`) and the clipped gradients are averaged; then
        Gaussian noise of std ``dp_noise_multiplier * dp_clip_norm / B``
        (``dp_noise_multiplier`` >= 0, finite; ``B`` the global batch size)
        drawn from ``fold_in(dp_key, state.step)`` is added, once per step on
        every path (the same noise on every device). ``dp_key`` is required
        when, and only when, ``dp_noise_multiplier > 0``. Not for a state with
        ``model_state`` or ``rng``.
      donate: donate the input state's buffers to the step.

    Returns:
      A :class:`TrainStep` (callable as ``step(state, batch)``, with
      ``step.parallel``) returning the new state and ``metrics``: ``loss``,
      ``grad_norm`` (of the gradient handed to the optimizer, before its own
      clipping), ``learning_rate`` (the rate used by this update, when the
      optimizer stores it, as :func:`jloss.optimizer` does) and ``aux``. Under
      ``"pmap"`` every metric has a leading device axis.

    Raises:
      ValueError: a bad ``parallel``, a DP option out of range or without its
        partner; when called, a pmap step given an unreplicated state (or
        another step a replicated one), a batch that does not divide across
        devices, a new model state unlike the old one, DP-SGD with a stateful
        state.
      TypeError: a DP option that is not a real number; a stateful ``loss_fn``
        that does not return ``(loss, new_model_state)``.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> loss_fn = lambda w, batch: jloss.mean_squared_error(batch[0] * w, batch[1])
      >>> state = jloss.TrainState.create(params=jnp.float32(0.0), tx=jloss.optimizer("sgd", 0.25))
      >>> step = jloss.make_train_step(loss_fn)
      >>> state, metrics = step(state, (jnp.array([1.0, 2.0]), jnp.array([2.0, 4.0])))
      >>> round(float(metrics["loss"]), 4), round(float(state.params), 4), step.parallel
      (10.0, 2.5, None)

    References:
      Abadi et al., "Deep Learning with Differential Privacy", CCS 2016 (DP-SGD).
    """
    if parallel not in (None, "pmap", "mesh"):
        raise ValueError(f"parallel must be None, 'pmap' or 'mesh', got {parallel!r}")
    noise_std = None
    if dp_clip_norm is not None:
        dp_clip_norm = _dp_number("dp_clip_norm", dp_clip_norm, positive=True)
        dp_noise_multiplier = _dp_number("dp_noise_multiplier", dp_noise_multiplier, positive=False)
        if dp_noise_multiplier > 0 and dp_key is None:
            raise ValueError("DP-SGD noise needs a PRNG key: pass dp_key=jax.random.key(seed)")
        if dp_noise_multiplier == 0 and dp_key is not None:
            raise ValueError("dp_key is only used for noise: it needs dp_noise_multiplier > 0")
        noise_std = dp_noise_multiplier * dp_clip_norm if dp_noise_multiplier > 0 else None
        clipped_grads = _clipped_mean_grads(loss_fn, has_aux, dp_clip_norm)
    else:
        if dp_noise_multiplier is not None and _dp_number(
                "dp_noise_multiplier", dp_noise_multiplier, positive=False) != 0:
            raise ValueError("dp_noise_multiplier needs dp_clip_norm (per-example clipping)")
        if dp_key is not None:
            raise ValueError("dp_key needs dp_clip_norm and dp_noise_multiplier > 0 (DP-SGD noise)")
        clipped_grads = None
    value_and_grad = jax.value_and_grad(loss_fn, has_aux=has_aux)

    def loss_and_grads(state, batch, key):
        """``(loss, aux, new_model_state, grads)`` of this device's batch."""
        if state.stateful:
            if clipped_grads is not None:
                raise ValueError("DP-SGD (dp_clip_norm) does not support a state with model_state or rng")

            def stateful_loss(params, model_state):
                # Rebuilt inside the differentiated function: containers that check
                # where they are mutated (NNX variables) then belong to this trace.
                model_state = jax.tree.map(lambda x: x, model_state)
                loss, new_model_state, aux = _stateful_out(loss_fn(params, batch, model_state, key), has_aux)
                return loss, (new_model_state, aux)

            (loss, (new_model_state, aux)), grads = jax.value_and_grad(stateful_loss, has_aux=True)(
                state.params, state.model_state)
            _check_model_state(new_model_state, state.model_state)
            return loss, aux, new_model_state, grads
        if clipped_grads is not None:
            (loss, aux), grads = clipped_grads(state.params, batch)
        else:
            out, grads = value_and_grad(state.params, batch)
            loss, aux = out if has_aux else (out, None)
        return loss, aux, None, grads

    def update(state, batch, axis=None):
        """One step; ``axis``: the pmap axis (None on one device and over the mesh)."""
        rng, key = (None, None) if state.rng is None else jax.random.split(state.rng)
        if axis is not None and key is not None:
            key = jax.random.fold_in(key, jax.lax.axis_index(axis))
        if axis is not None and clipped_grads is None:
            # Per-example (DP) losses are batches of one: their mean is not the global one.
            with global_mean_over(axis):
                loss, aux, model_state, grads = loss_and_grads(state, batch, key)
        else:
            loss, aux, model_state, grads = loss_and_grads(state, batch, key)
        if axis is not None:
            loss, aux, grads = jax.lax.pmean((loss, aux, grads), axis)
            model_state = _sync_model_state(model_state, axis)
        if noise_std is not None:
            num_shards = 1 if axis is None else jax.lax.psum(1, axis)
            grads = _add_noise(grads, dp_key, state.step, noise_std / (_batch_size(batch) * num_shards))
        new_state = state.apply_gradients(grads)
        if state.stateful:
            new_state = new_state.replace(model_state=model_state, rng=rng)
        metrics = {"loss": loss, "grad_norm": _global_norm(grads)}
        # inject_hyperparams stores the rate it used into the new state.
        lr = learning_rate(new_state.opt_state)
        if lr is not None:
            metrics["learning_rate"] = lr
        if aux is not None:
            metrics["aux"] = aux
        return new_state, metrics

    def check_unreplicated(state):
        if par.is_replicated(state):
            raise ValueError(f"parallel={parallel!r} needs an unreplicated state, got one with a leading "
                             "device axis; use jloss.unreplicate(state) (or build the step with "
                             "parallel='pmap')")

    donate_args = (0,) if donate else ()
    if parallel is None:
        jstep = jax.jit(update, donate_argnums=donate_args)

        def single_step(state, batch):
            check_unreplicated(state)
            return jstep(state, batch)

        return TrainStep(single_step, None)

    if parallel == "pmap":
        pstep = jax.pmap(lambda s, b: update(s, b, axis_name), axis_name=axis_name,
                         donate_argnums=donate_args)

        def pmap_step(state, batch):
            n = jax.local_device_count()
            if not par.is_replicated(state) or jnp.shape(state.step)[0] != n:
                raise ValueError(
                    f"parallel='pmap' needs a state replicated over the {n} local devices (a leading "
                    f"device axis), got step of shape {jnp.shape(state.step)}; use jloss.replicate(state)")
            for leaf in jax.tree_util.tree_leaves(batch):
                if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != n:
                    raise ValueError(
                        f"parallel='pmap' needs a batch with a leading axis of {n} devices, got "
                        f"shape {jnp.shape(leaf)}; use jloss.shard_batch(batch)")
            return pstep(state, batch)

        return TrainStep(pmap_step, "pmap")

    mesh = par.data_mesh(axis_name=axis_name) if mesh is None else mesh
    axis = mesh.axis_names[0]
    data = NamedSharding(mesh, PartitionSpec(axis))
    replicated = NamedSharding(mesh, PartitionSpec())
    jstep = jax.jit(update, in_shardings=(replicated, data), out_shardings=replicated,
                    donate_argnums=donate_args)
    # Each process passes its own share of the batch: it must split over that
    # process's shards of the data axis.
    local_shards = max(1, mesh.shape[axis] // jax.process_count())

    def mesh_step(state, batch):
        check_unreplicated(state)
        par.check_divisible(batch, local_shards, f"devices of mesh axis {axis!r}")
        if jax.process_count() > 1:
            batch = jax.tree.map(lambda x: jax.make_array_from_process_local_data(data, x), batch)
        return jstep(state, batch)

    return TrainStep(mesh_step, "mesh")

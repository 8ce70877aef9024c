"""Save and restore a TrainState with orbax-checkpoint (the ``train`` extra).

A checkpoint directory holds one sub-directory per saved step (an orbax
``CheckpointManager`` layout). Only the arrays are stored: the optimizer
(static data of the state) comes from the target state given to
:func:`restore_checkpoint`, so restore into a state built with the same
``TrainState.create(params=..., tx=...)`` as the saved one.
"""

import os

import jax
import numpy as np

from jloss._core import checks


def _orbax():
    try:
        import orbax.checkpoint as ocp
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "checkpoints need orbax-checkpoint: pip install 'jloss[train]' (or orbax-checkpoint)"
        ) from e
    return ocp


def _manager(directory, max_to_keep=None):
    ocp = _orbax()
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)), options=options)


def _step_of(state):
    # a pmap-replicated state has a step per device; they are equal
    return int(np.asarray(jax.device_get(state.step)).ravel()[0])


def save_checkpoint(directory, state, step=None, *, max_to_keep=None, overwrite=False):
    """Save ``state`` under ``directory/<step>`` and wait until it is written.

    Args:
      directory: the checkpoint directory (created if missing).
      state: a :class:`jloss.TrainState` (its ``model_state`` and ``rng`` are
        saved with it) or any pytree of arrays.
      step: the step number to save under (an int >= 0); default ``state.step``.
      max_to_keep: keep only this many most recent checkpoints (None: all).
      overwrite: replace a checkpoint of ``step`` that exists (it is deleted
        first) instead of raising.

    Returns:
      The step number saved.

    Raises:
      ImportError: orbax-checkpoint is not installed (``pip install "jloss[train]"``).
      FileExistsError: ``directory`` holds a checkpoint of ``step`` and
        ``overwrite`` is False (a checkpoint never silently keeps stale data).

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> import tempfile
      >>> state = jloss.TrainState.create(params={"w": jnp.ones(2)}, tx=jloss.optimizer("sgd", 0.1))
      >>> with tempfile.TemporaryDirectory() as directory:
      ...     saved = jloss.save_checkpoint(directory, state)
      ...     restored = jloss.restore_checkpoint(directory, state)
      >>> saved, restored.params["w"].tolist()
      (0, [1.0, 1.0])

    References:
      orbax-checkpoint ``CheckpointManager``.
    """
    ocp = _orbax()
    step = _step_of(state) if step is None else checks.check_int("step", step, low=0)
    manager = _manager(directory, max_to_keep)
    try:
        if step in manager.all_steps():
            if not overwrite:
                raise FileExistsError(
                    f"{_where(directory, step)} already exists; pass overwrite=True to replace it, or save "
                    "under another step or directory")
            manager.delete(step)
        # force: orbax would otherwise skip, without a word, a step below the latest one
        if not manager.save(step, args=ocp.args.StandardSave(state), force=True):
            raise RuntimeError(f"orbax did not save {_where(directory, step)}")
        manager.wait_until_finished()
    finally:
        manager.close()
    return step


def checkpoint_steps(directory):
    """The saved step numbers in ``directory``, ascending (empty if none)."""
    if not os.path.isdir(directory):
        return []
    manager = _manager(directory)
    try:
        return sorted(manager.all_steps())
    finally:
        manager.close()


def restore_checkpoint(directory, target_state, step=None):
    """Restore the checkpoint of ``step`` (default: the latest) into ``target_state``'s structure.

    ``target_state`` supplies the tree structure, dtypes, shapes, shardings and
    the optimizer; its values are not used.

    Args:
      directory: the checkpoint directory.
      target_state: a state of the saved structure (built with the same
        ``TrainState.create(params=..., tx=...)``).
      step: the step to restore; default the latest.

    Returns:
      A state like ``target_state`` holding the saved arrays.

    Raises:
      FileNotFoundError: ``directory`` holds no checkpoint, or not of ``step``.
      ValueError: the checkpoint cannot be read into ``target_state`` (a
        truncated, corrupted or incomplete checkpoint, or one saved from a
        state of another structure); the message names the directory and step
        and the original error is chained.
      ImportError: orbax-checkpoint is not installed.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> import tempfile
      >>> state = jloss.TrainState.create(params={"w": jnp.ones(2)}, tx=jloss.optimizer("sgd", 0.1))
      >>> with tempfile.TemporaryDirectory() as directory:
      ...     _ = jloss.save_checkpoint(directory, state, step=1)
      ...     _ = jloss.save_checkpoint(directory, state.replace(params={"w": jnp.zeros(2)}), step=2)
      ...     first = jloss.restore_checkpoint(directory, state, step=1)
      ...     latest = jloss.restore_checkpoint(directory, state)
      >>> first.params["w"].tolist(), latest.params["w"].tolist()
      ([1.0, 1.0], [0.0, 0.0])

    References:
      orbax-checkpoint ``CheckpointManager``.
    """
    ocp = _orbax()
    steps = checkpoint_steps(directory)
    step = None if step is None else checks.check_int("step", step, low=0)
    if not steps:
        wanted = "" if step is None else f" (looking for step {step})"
        raise FileNotFoundError(f"no checkpoint found in {os.fspath(directory)!r}{wanted}")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise FileNotFoundError(
            f"no checkpoint of step {step} in {os.fspath(directory)!r}; saved steps: {steps}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
    manager = _manager(directory)
    try:
        return manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax, tensorstore and json raise many types for a damaged checkpoint
        detail = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise ValueError(
            f"cannot restore {_where(directory, step)}: it is truncated, corrupted or incomplete, or was "
            f"saved from a state of another structure ({type(e).__name__}: {detail})") from e
    finally:
        manager.close()


def _where(directory, step):
    return f"the checkpoint of step {step} in {os.fspath(directory)!r}"

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


def save_checkpoint(directory, state, step=None, *, max_to_keep=None):
    """Save ``state`` under ``directory/<step>`` and wait until it is written.

    Args:
      directory: the checkpoint directory (created if missing).
      state: a :class:`jloss.TrainState` (or any pytree of arrays).
      step: the step number to save under; default ``state.step``.
      max_to_keep: keep only this many most recent checkpoints (None: all).

    Returns the step number saved. Saving a step that exists raises
    (orbax's error); pick another step or directory.
    """
    ocp = _orbax()
    step = _step_of(state) if step is None else int(step)
    manager = _manager(directory, max_to_keep)
    try:
        manager.save(step, args=ocp.args.StandardSave(state))
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
    the optimizer; its values are not used. Raises FileNotFoundError when
    ``directory`` holds no checkpoint (or not that step).
    """
    ocp = _orbax()
    steps = checkpoint_steps(directory)
    if not steps:
        raise FileNotFoundError(f"no checkpoint found in {os.fspath(directory)!r}")
    step = steps[-1] if step is None else int(step)
    if step not in steps:
        raise FileNotFoundError(
            f"no checkpoint of step {step} in {os.fspath(directory)!r}; saved steps: {steps}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
    manager = _manager(directory)
    try:
        return manager.restore(step, args=ocp.args.StandardRestore(abstract))
    finally:
        manager.close()

"""Training: optimizers by name, TrainState, train steps (jit / pmap / mesh), fit, checkpoints."""

from jloss.plot import plot_history
from jloss.train.checkpoint import checkpoint_steps, restore_checkpoint, save_checkpoint
from jloss.train.early_stopping import EarlyStopping
from jloss.train.loop import History, fit
from jloss.train.lr_state import learning_rate, set_learning_rate
from jloss.train.optim import make_schedule, optimizer
from jloss.train.parallel import data_mesh, replicate, shard_batch, unreplicate
from jloss.train.state import TrainState
from jloss.train.step import TrainStep, make_train_step, per_example_grads

__all__ = ["EarlyStopping", "History", "TrainState", "TrainStep", "checkpoint_steps", "data_mesh", "fit",
           "learning_rate", "make_schedule", "make_train_step", "optimizer", "per_example_grads",
           "plot_history", "replicate", "restore_checkpoint", "save_checkpoint", "set_learning_rate",
           "shard_batch", "unreplicate"]

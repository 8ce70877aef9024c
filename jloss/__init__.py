"""jloss: loss functions and training steps for JAX.

Every loss shares one calling convention::

    loss(predictions, targets, *, <options>, weights=None, where=None, reduction="mean")

The contract every loss follows (weights, where, reductions, dtypes, errors and
value checks) is the "Conventions" page of the documentation (docs/conventions.md);
each function's docstring gives its formula, shapes, an example and its reference.
"""

from jloss import analysis, metrics, plot
from jloss._core.checks import InputWarning, LossInputError, checked
from jloss.analysis import loss_landscape
from jloss.heads.linear_cross_entropy import linear_cross_entropy, linear_log_probs
from jloss.losses.classification import (
    binary_cross_entropy,
    binary_focal_loss,
    categorical_cross_entropy,
    categorical_focal_loss,
    sparse_categorical_cross_entropy,
)
from jloss.losses.contrastive import info_nce, sigmoid_contrastive
from jloss.losses.divergence import kl_divergence
from jloss.losses.labels import one_hot, smooth_labels
from jloss.losses.margin import hinge, multiclass_hinge, squared_hinge
from jloss.losses.regression import (
    gaussian_nll,
    huber,
    log_cosh,
    mae,
    mean_absolute_error,
    mean_squared_error,
    mse,
    pinball,
    poisson_nll,
    smooth_l1,
)
from jloss.losses.sequence import ctc
from jloss.plot import plot_history
from jloss.recommend import Recommendation, recommend
from jloss.train import (
    EarlyStopping,
    History,
    TrainState,
    TrainStep,
    data_mesh,
    fit,
    learning_rate,
    make_schedule,
    make_train_step,
    optimizer,
    per_example_grads,
    replicate,
    restore_checkpoint,
    save_checkpoint,
    set_learning_rate,
    shard_batch,
    unreplicate,
)
from jloss.train.lr_finder import lr_finder

__version__ = "0.1.0"

__all__ = [
    "EarlyStopping",
    "History",
    "InputWarning",
    "LossInputError",
    "Recommendation",
    "TrainState",
    "TrainStep",
    "analysis",
    "binary_cross_entropy",
    "binary_focal_loss",
    "categorical_cross_entropy",
    "categorical_focal_loss",
    "checked",
    "ctc",
    "data_mesh",
    "fit",
    "gaussian_nll",
    "hinge",
    "huber",
    "info_nce",
    "kl_divergence",
    "learning_rate",
    "linear_cross_entropy",
    "linear_log_probs",
    "log_cosh",
    "loss_landscape",
    "lr_finder",
    "mae",
    "make_schedule",
    "make_train_step",
    "mean_absolute_error",
    "mean_squared_error",
    "metrics",
    "mse",
    "multiclass_hinge",
    "one_hot",
    "optimizer",
    "per_example_grads",
    "pinball",
    "plot",
    "plot_history",
    "poisson_nll",
    "recommend",
    "replicate",
    "restore_checkpoint",
    "save_checkpoint",
    "set_learning_rate",
    "shard_batch",
    "sigmoid_contrastive",
    "smooth_l1",
    "smooth_labels",
    "sparse_categorical_cross_entropy",
    "squared_hinge",
    "unreplicate",
]

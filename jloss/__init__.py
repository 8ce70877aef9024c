"""jloss: loss functions and training steps for JAX.

Every loss shares one calling convention::

    loss(predictions, targets, *, <options>, weights=None, where=None, reduction="mean")

The contract every loss follows (weights, where, reductions, dtypes, errors and
value checks) is the "Conventions" page of the documentation (docs/conventions.md);
each function's docstring gives its formula, shapes, an example and its reference.
"""

from jloss import metrics
from jloss._core.checks import LossInputError, checked
from jloss.heads.distillation import linear_jensen_shannon, linear_kl_divergence
from jloss.heads.linear_cross_entropy import linear_cross_entropy, linear_log_probs
from jloss.losses.classification import (
    binary_cross_entropy,
    binary_focal_loss,
    categorical_cross_entropy,
    categorical_focal_loss,
    sparse_categorical_cross_entropy,
)
from jloss.losses.divergence import kl_divergence
from jloss.losses.labels import one_hot, smooth_labels
from jloss.losses.margin import hinge, multiclass_hinge, squared_hinge
from jloss.losses.preference import cpo, dpo, kto, orpo, sequence_log_probs, simpo
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
from jloss.recommend import Recommendation, recommend
from jloss.train import (
    History,
    TrainState,
    data_mesh,
    fit,
    learning_rate,
    make_schedule,
    make_train_step,
    optimizer,
    per_example_grads,
    plot_history,
    replicate,
    restore_checkpoint,
    save_checkpoint,
    shard_batch,
    unreplicate,
)
from jloss.viz import loss_landscape, lr_finder

__version__ = "0.1.0"

__all__ = [
    "History",
    "LossInputError",
    "Recommendation",
    "TrainState",
    "binary_cross_entropy",
    "binary_focal_loss",
    "categorical_cross_entropy",
    "categorical_focal_loss",
    "checked",
    "cpo",
    "data_mesh",
    "dpo",
    "fit",
    "gaussian_nll",
    "hinge",
    "huber",
    "kl_divergence",
    "kto",
    "learning_rate",
    "linear_cross_entropy",
    "linear_jensen_shannon",
    "linear_kl_divergence",
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
    "orpo",
    "per_example_grads",
    "pinball",
    "plot_history",
    "poisson_nll",
    "recommend",
    "replicate",
    "restore_checkpoint",
    "save_checkpoint",
    "sequence_log_probs",
    "shard_batch",
    "simpo",
    "smooth_l1",
    "smooth_labels",
    "sparse_categorical_cross_entropy",
    "squared_hinge",
    "unreplicate",
]

"""jloss: loss functions and training steps for JAX.

Every loss shares one calling convention::

    loss(predictions, targets, *, <options>, weights=None, where=None, reduction="mean")

See the README and the documentation under ``docs/`` for the contract.
"""

from jloss import metrics
from jloss._core.checks import LossInputError, checked
from jloss.heads.linear_cross_entropy import linear_cross_entropy
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
    "plot_history",
    "poisson_nll",
    "recommend",
    "replicate",
    "restore_checkpoint",
    "save_checkpoint",
    "shard_batch",
    "sigmoid_contrastive",
    "smooth_l1",
    "smooth_labels",
    "sparse_categorical_cross_entropy",
    "squared_hinge",
    "unreplicate",
]

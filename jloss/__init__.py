"""jloss: loss functions and training steps for JAX.

Every loss shares one calling convention::

    loss(predictions, targets, *, <options>, weights=None, where=None, reduction="mean")

See the README and ``shared/API.md`` for the contract.
"""

from jloss._checks import LossInputError, checked
from jloss.classification import (
    binary_cross_entropy,
    binary_focal_loss,
    categorical_cross_entropy,
    categorical_focal_loss,
    hinge,
    multiclass_hinge,
    sparse_categorical_cross_entropy,
    squared_hinge,
)
from jloss.divergence import kl_divergence
from jloss.helpers import one_hot, smooth_labels
from jloss.recommend import Recommendation, recommend
from jloss.regression import (
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
from jloss.train import (
    TrainState,
    data_mesh,
    learning_rate,
    make_schedule,
    make_train_step,
    optimizer,
    per_example_grads,
    replicate,
    shard_batch,
    unreplicate,
)
from jloss.viz import loss_landscape, lr_finder

__version__ = "0.1.0"

__all__ = [
    "LossInputError",
    "Recommendation",
    "TrainState",
    "binary_cross_entropy",
    "binary_focal_loss",
    "categorical_cross_entropy",
    "categorical_focal_loss",
    "checked",
    "data_mesh",
    "gaussian_nll",
    "hinge",
    "huber",
    "kl_divergence",
    "learning_rate",
    "log_cosh",
    "loss_landscape",
    "lr_finder",
    "mae",
    "make_schedule",
    "make_train_step",
    "mean_absolute_error",
    "mean_squared_error",
    "mse",
    "multiclass_hinge",
    "one_hot",
    "optimizer",
    "per_example_grads",
    "pinball",
    "poisson_nll",
    "recommend",
    "replicate",
    "shard_batch",
    "smooth_l1",
    "smooth_labels",
    "sparse_categorical_cross_entropy",
    "squared_hinge",
    "unreplicate",
]

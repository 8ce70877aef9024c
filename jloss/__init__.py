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
    generalized_cross_entropy,
    poly_cross_entropy,
    sparse_categorical_cross_entropy,
)
from jloss.losses.divergence import generalized_kl_divergence, kl_divergence
from jloss.losses.embedding import (
    cosine_distance,
    cosine_embedding,
    hinge_embedding,
    margin_ranking,
    ntxent,
    triplet_margin,
)
from jloss.losses.labels import one_hot, smooth_labels
from jloss.losses.margin import (
    crammer_singer_hinge,
    hinge,
    multiclass_hinge,
    multiclass_perceptron,
    multilabel_margin,
    multilabel_soft_margin,
    perceptron,
    soft_margin,
    squared_hinge,
)
from jloss.losses.ranking import ranking_softmax
from jloss.losses.regression import (
    gaussian_nll,
    huber,
    log_cosh,
    mae,
    mape,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    mean_squared_logarithmic_error,
    mse,
    msle,
    pinball,
    poisson_nll,
    smooth_l1,
)
from jloss.losses.segmentation import dice, generalized_dice
from jloss.losses.sparsemax import binary_sparsemax_loss, sparsemax, sparsemax_loss
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
    "binary_sparsemax_loss",
    "categorical_cross_entropy",
    "categorical_focal_loss",
    "checked",
    "cosine_distance",
    "cosine_embedding",
    "crammer_singer_hinge",
    "data_mesh",
    "dice",
    "fit",
    "gaussian_nll",
    "generalized_cross_entropy",
    "generalized_dice",
    "generalized_kl_divergence",
    "hinge",
    "hinge_embedding",
    "huber",
    "kl_divergence",
    "learning_rate",
    "linear_cross_entropy",
    "log_cosh",
    "loss_landscape",
    "lr_finder",
    "mae",
    "make_schedule",
    "make_train_step",
    "mape",
    "margin_ranking",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "mean_squared_error",
    "mean_squared_logarithmic_error",
    "metrics",
    "mse",
    "msle",
    "multiclass_hinge",
    "multiclass_perceptron",
    "multilabel_margin",
    "multilabel_soft_margin",
    "ntxent",
    "one_hot",
    "optimizer",
    "per_example_grads",
    "perceptron",
    "pinball",
    "plot_history",
    "poisson_nll",
    "poly_cross_entropy",
    "ranking_softmax",
    "recommend",
    "replicate",
    "restore_checkpoint",
    "save_checkpoint",
    "shard_batch",
    "smooth_l1",
    "smooth_labels",
    "soft_margin",
    "sparse_categorical_cross_entropy",
    "sparsemax",
    "sparsemax_loss",
    "squared_hinge",
    "triplet_margin",
    "unreplicate",
]

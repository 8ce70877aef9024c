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
from jloss.heads.distillation import linear_jensen_shannon, linear_kl_divergence
from jloss.heads.linear_cross_entropy import linear_cross_entropy, linear_log_probs
from jloss.losses.ce_variants import generalized_cross_entropy, poly_cross_entropy
from jloss.losses.classification import (
    binary_cross_entropy,
    binary_focal_loss,
    categorical_cross_entropy,
    categorical_focal_loss,
    sparse_categorical_cross_entropy,
)
from jloss.losses.contrastive import info_nce, sigmoid_contrastive
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
from jloss.losses.likelihood import gaussian_nll, poisson_nll
from jloss.losses.margin import (
    crammer_singer_hinge,
    hinge,
    multiclass_hinge,
    multiclass_perceptron,
    perceptron,
    soft_margin,
    squared_hinge,
)
from jloss.losses.multilabel import multilabel_margin, multilabel_soft_margin
from jloss.losses.preference import cpo, dpo, kto, orpo, sequence_log_probs, simpo
from jloss.losses.ranking import ranking_softmax
from jloss.losses.regression import (
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
    smooth_l1,
)
from jloss.losses.segmentation import dice, generalized_dice
from jloss.losses.sequence import ctc
from jloss.losses.sparsemax import binary_sparsemax_loss, sparsemax, sparsemax_loss
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
    "binary_sparsemax_loss",
    "categorical_cross_entropy",
    "categorical_focal_loss",
    "checked",
    "cosine_distance",
    "cosine_embedding",
    "cpo",
    "crammer_singer_hinge",
    "ctc",
    "data_mesh",
    "dice",
    "dpo",
    "fit",
    "gaussian_nll",
    "generalized_cross_entropy",
    "generalized_dice",
    "generalized_kl_divergence",
    "hinge",
    "hinge_embedding",
    "huber",
    "info_nce",
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
    "orpo",
    "per_example_grads",
    "perceptron",
    "pinball",
    "plot",
    "plot_history",
    "poisson_nll",
    "poly_cross_entropy",
    "ranking_softmax",
    "recommend",
    "replicate",
    "restore_checkpoint",
    "save_checkpoint",
    "sequence_log_probs",
    "set_learning_rate",
    "shard_batch",
    "sigmoid_contrastive",
    "simpo",
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

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
from jloss.fused import linear_cross_entropy
from jloss.helpers import one_hot, smooth_labels
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

__version__ = "0.1.0"

__all__ = [
    "LossInputError",
    "binary_cross_entropy",
    "binary_focal_loss",
    "categorical_cross_entropy",
    "categorical_focal_loss",
    "checked",
    "gaussian_nll",
    "hinge",
    "huber",
    "kl_divergence",
    "linear_cross_entropy",
    "log_cosh",
    "mae",
    "mean_absolute_error",
    "mean_squared_error",
    "mse",
    "multiclass_hinge",
    "one_hot",
    "pinball",
    "poisson_nll",
    "smooth_l1",
    "smooth_labels",
    "sparse_categorical_cross_entropy",
    "squared_hinge",
]

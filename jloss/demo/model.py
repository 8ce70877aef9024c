"""The demo's model: a small ReLU MLP as a list of ``(weight, bias)`` pairs."""

import itertools
import math

import jax
import numpy as np


def init_mlp(rng, sizes):
    """He-normal weights, zero biases, for layer sizes ``sizes`` (NumPy: nothing to compile)."""
    return [(rng.standard_normal((a, b)).astype(np.float32) * np.float32(math.sqrt(2.0 / a)),
             np.zeros((b,), np.float32)) for a, b in itertools.pairwise(sizes)]


def mlp(params, x):
    """The MLP's outputs (logits or regression values) for inputs ``x``."""
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return x @ w + b


# the outputs of R models (params with a leading run axis) on R inputs, in one compiled program
predict = jax.jit(jax.vmap(mlp))

"""A small softmax-regression problem shared by the LR-finder, landscape and plot tests."""

import numpy as np

import jloss


def softmax_regression():
    """``(batch, params, loss_fn)``: 256 examples, 5 features, 3 classes, a linear model."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 5)).astype(np.float32)
    true_w = rng.standard_normal((5, 3)).astype(np.float32)
    y = np.argmax(x @ true_w, -1).astype(np.int32)
    params = {"w": (0.1 * rng.standard_normal((5, 3))).astype(np.float32), "b": np.zeros(3, np.float32)}

    def loss_fn(params, batch):
        logits = batch["x"] @ params["w"] + params["b"]
        return jloss.sparse_categorical_cross_entropy(logits, batch["y"])

    return {"x": x, "y": y}, params, loss_fn

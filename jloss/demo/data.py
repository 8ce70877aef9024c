"""The demo's data: scikit-learn's bundled data sets (nothing downloaded), split and standardised."""

import jax
import numpy as np

from jloss.demo.model import init_mlp


def load(name):
    """``(x, y)`` of ``"digits"``, ``"breast_cancer"`` or ``"diabetes"`` as NumPy arrays."""
    from sklearn import datasets

    loader = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer,
              "diabetes": datasets.load_diabetes}[name]
    data = loader()
    return np.asarray(data.data, np.float64), np.asarray(data.target)


def standardize(train, test):
    """Both sets scaled by the training set's per-feature mean and standard deviation (float32)."""
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 0, std, 1.0)
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def split(x, y, seed, test_size, stratify=True):
    """``x_train, x_test, y_train, y_test`` (scikit-learn's ``train_test_split``)."""
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=test_size, random_state=seed,
                            stratify=y if stratify else None)


def stack(trees):
    """One pytree with a leading run axis from a list of pytrees of the same structure."""
    return jax.tree.map(lambda *xs: np.stack(xs), *trees)


def digits(cfg, hidden=64):
    """``cfg.repeats`` splits of digits (80/20, stratified) with a fresh 64-hidden-10 MLP each, stacked."""
    x_all, y_all = load("digits")
    runs = []
    for r in range(cfg.repeats):
        xtr, xte, ytr, yte = split(x_all, y_all, cfg.seed + r, 0.2)
        xtr, xte = standardize(xtr, xte)
        rng = np.random.default_rng(cfg.seed + r)
        runs.append({"x": xtr, "y": ytr.astype(np.int32),
                     "test": {"x": xte, "y": yte.astype(np.int32)},
                     "params": init_mlp(rng, (64, hidden, 10))})
    return stack(runs)

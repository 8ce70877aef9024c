"""jloss.recommend: the loss-selection guide as a function."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jloss
from jloss.recommend import TASKS, guide_rows


@pytest.mark.parametrize(
    ("task", "options", "loss", "activation"),
    [
        ("binary", {}, jloss.binary_cross_entropy, "sigmoid"),
        ("multilabel", {}, jloss.binary_cross_entropy, "sigmoid"),
        ("multiclass", {}, jloss.sparse_categorical_cross_entropy, "softmax"),
        ("multiclass", {"integer_labels": False}, jloss.categorical_cross_entropy, "softmax"),
        ("multiclass", {"imbalance": True}, jloss.categorical_focal_loss, "softmax"),
        ("regression", {}, jloss.mean_squared_error, "identity"),
        ("regression", {"noisy": True}, jloss.mean_absolute_error, "identity"),
        ("regression", {"outliers": True}, jloss.huber, "identity"),
        ("regression", {"quantile": 0.9}, jloss.pinball, "identity"),
        ("distribution", {}, jloss.kl_divergence, "softmax"),
        ("segmentation", {}, jloss.dice, "softmax"),
        ("segmentation", {"imbalance": True}, jloss.dice, "softmax"),
        ("ranking", {}, jloss.ranking_softmax, "softmax"),
        ("learning-to-rank", {}, jloss.ranking_softmax, "softmax"),
        ("representation", {}, jloss.ntxent, "identity"),
        ("contrastive", {}, jloss.ntxent, "identity"),
    ],
)
def test_guide(task, options, loss, activation):
    rec = jloss.recommend(task, **options)
    assert isinstance(rec, jloss.Recommendation)
    assert rec.loss is loss
    assert rec.activation == activation
    assert isinstance(rec.reason, str) and len(rec.reason) > 20
    assert rec.name == loss.__name__


def test_outliers_win_over_noisy_and_quantile_over_both():
    assert jloss.recommend("regression", outliers=True, noisy=True).loss is jloss.huber
    rec = jloss.recommend("regression", outliers=True, quantile=0.1)
    assert rec.loss is jloss.pinball and rec.options["quantile"] == 0.1


def test_huber_options():
    assert dict(jloss.recommend("regression", outliers=True).options) == {"delta": 1.0}


def test_imbalanced_binary_is_weighted_bce():
    rec = jloss.recommend("binary", imbalance=True, positive_fraction=0.05)
    assert rec.loss is jloss.binary_cross_entropy
    assert rec.options["pos_weight"] == pytest.approx(19.0)
    bare = jloss.recommend("binary", imbalance=True)
    assert bare.loss is jloss.binary_cross_entropy and "pos_weight" in bare.reason
    assert "focal" in bare.reason


def test_aliases():
    assert jloss.recommend("multi-class").loss is jloss.sparse_categorical_cross_entropy
    assert jloss.recommend("Multi-Label").loss is jloss.binary_cross_entropy
    assert jloss.recommend("distributions").loss is jloss.kl_divergence


@pytest.mark.parametrize("task", ["clustering", "", None, 3])
def test_unknown_task_lists_the_tasks(task):
    with pytest.raises(ValueError, match="unknown task") as err:
        jloss.recommend(task)
    for name in TASKS:
        assert name in str(err.value)


def test_bad_options():
    with pytest.raises(ValueError, match="quantile"):
        jloss.recommend("regression", quantile=1.5)
    with pytest.raises(ValueError, match="positive_fraction"):
        jloss.recommend("binary", imbalance=True, positive_fraction=0.0)


def test_frozen_and_read_only_options():
    rec = jloss.recommend("regression", outliers=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.loss = jloss.mse
    with pytest.raises(TypeError):
        rec.options["delta"] = 2.0
    assert rec == jloss.recommend("regression", outliers=True)
    assert hash(rec) == hash(jloss.recommend("regression", outliers=True))


def test_bind_calls_the_loss_with_its_options():
    pred, target = jnp.array([0.0, 3.0]), jnp.array([0.0, 0.0])
    rec = jloss.recommend("regression", outliers=True)
    np.testing.assert_allclose(rec.bind()(pred, target), jloss.huber(pred, target, delta=1.0))
    weighted = jloss.recommend("binary", imbalance=True, positive_fraction=0.2)
    logits, labels = jnp.array([0.3, -1.0]), jnp.array([1.0, 0.0])
    np.testing.assert_allclose(weighted.bind()(logits, labels),
                               jloss.binary_cross_entropy(logits, labels, pos_weight=4.0), rtol=1e-6)


def test_str_mentions_loss_and_activation():
    text = str(jloss.recommend("binary"))
    assert "binary_cross_entropy" in text and "sigmoid" in text


def test_guide_rows_cover_every_task():
    rows = guide_rows()
    assert {r[0].split(",")[0] for r in rows} == set(TASKS)
    assert all(len(r) == 4 for r in rows)


def test_segmentation_imbalance_is_tversky_and_binds():
    rec = jloss.recommend("segmentation", imbalance=True)
    assert dict(rec.options) == {"alpha": 0.3, "beta": 0.7}
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 3)), jnp.float32)
    masks = jax.nn.one_hot(jnp.array([[0, 1, 2, 0], [1, 1, 0, 2]]), 3)
    np.testing.assert_allclose(float(rec.bind()(logits, masks)),
                               float(jloss.dice(logits, masks, alpha=0.3, beta=0.7)), rtol=1e-6)
    assert jloss.recommend("retrieval").loss is jloss.info_nce
    assert jloss.recommend("sequence-labelling").loss is jloss.ctc
    assert "sigmoid_contrastive" in jloss.recommend("retrieval").reason

"""Hypothesis property tests for the cross-entropy family.

For any logits (up to +-1e4 for softmax losses, +-1e9 for sigmoid losses)
and any valid labels / targets / hyperparameters: the loss is finite and
>= 0, softmax gradients' rows sum to 0, softmax losses are shift invariant,
focal <= cross-entropy, and the sparse gradient is the closed form.
Functions are jitted once with traced hyperparameters so examples reuse
one compilation; example counts stay small to keep the suite fast.
"""

import jax
import numpy as np
from _registry import log_sigmoid, log_softmax
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import jloss

N, C = 4, 6
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
EPS32 = float(np.finfo(np.float32).eps)


def _floats(bound):
    return st.floats(-bound, bound, allow_nan=False, width=32)


LOGITS = hnp.arrays(np.float32, (N, C), elements=_floats(1e4))
LABELS = hnp.arrays(np.int32, (N,), elements=st.integers(0, C - 1))
PROBS = hnp.arrays(np.float32, (N, C), elements=st.floats(0, 1, width=32)).filter(
    lambda t: np.all(t.sum(-1) > 0.1)).map(lambda t: t / t.sum(-1, keepdims=True))
SMOOTHING = st.floats(0, 1)
GAMMA = st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0]) | st.floats(0, 5)


@jax.jit
def _sparse(x, y, s):
    def f(x):
        return jloss.sparse_categorical_cross_entropy(
            x, y, label_smoothing=s, reduction="none")
    return f(x), jax.grad(lambda x: f(x).sum())(x)


@jax.jit
def _dense(x, t, s):
    def f(x):
        return jloss.categorical_cross_entropy(
            x, t, label_smoothing=s, reduction="none")
    return f(x), jax.grad(lambda x: f(x).sum())(x)


@jax.jit
def _focal(x, y, gamma):
    def f(x):
        return jloss.categorical_focal_loss(x, y, gamma=gamma, reduction="none")
    return f(x), jax.grad(lambda x: f(x).sum())(x)


def _shift_tol(x, c):
    return 16 * EPS32 * (1 + np.max(np.abs(x)) + abs(c))


def _check_softmax_properties(fn, x, t, hyper, shift):
    loss, grad = fn(x, t, hyper)
    loss, grad = np.asarray(loss), np.asarray(grad)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    assert np.all(loss >= 0)
    np.testing.assert_allclose(grad.sum(-1), 0.0, atol=1e-5)
    shifted, _ = fn(x + np.float32(shift), t, hyper)
    # x + c rounds each logit by up to ulp(|x| + |c|)
    np.testing.assert_allclose(np.asarray(shifted), loss, rtol=1e-5, atol=_shift_tol(x, shift))
    return loss, grad


@SETTINGS
@given(LOGITS, LABELS, SMOOTHING, _floats(1e3))
def test_sparse_ce_properties(x, y, s, shift):
    _, grad = _check_softmax_properties(_sparse, x, y, s, shift)
    # closed form: (1 - s) (p - one_hot) + s (p - 1/C), in float64
    p = np.exp(log_softmax(x))
    expected = (1 - s) * (p - np.eye(C)[y]) + s * (p - 1 / C)
    np.testing.assert_allclose(grad, expected, atol=1e-6)


@SETTINGS
@given(LOGITS, PROBS, SMOOTHING, _floats(1e3))
def test_dense_ce_properties(x, t, s, shift):
    _check_softmax_properties(_dense, x, t, s, shift)


@SETTINGS
@given(LOGITS, LABELS, GAMMA, _floats(1e3))
def test_categorical_focal_properties(x, y, gamma, shift):
    loss, _ = _check_softmax_properties(_focal, x, y, gamma, shift)
    ce, _ = _sparse(x, y, 0.0)
    assert np.all(loss <= np.asarray(ce) * (1 + 1e-6) + 1e-6)  # (1 - p_y)^gamma <= 1


@SETTINGS
@given(LOGITS, LABELS)
def test_sparse_equals_dense_one_hot(x, y):
    sparse, g_sparse = _sparse(x, y, 0.1)
    dense, g_dense = _dense(x, jax.nn.one_hot(y, C), 0.1)
    np.testing.assert_allclose(np.asarray(sparse), np.asarray(dense), rtol=1e-5,
                               atol=_shift_tol(x, np.max(np.abs(x))))
    np.testing.assert_allclose(np.asarray(g_sparse), np.asarray(g_dense), atol=1e-6)


BIN = hnp.arrays(np.float32, (N, 3), elements=_floats(1e9))
BIN_LABELS = hnp.arrays(np.float32, (N, 3), elements=st.sampled_from([0.0, 1.0])
                        | st.floats(0, 1, width=32))


@jax.jit
def _binary(x, y, s, gamma):
    def bce(x):
        return jloss.binary_cross_entropy(
            x, y, label_smoothing=s, reduction="none")
    def focal(x):
        return jloss.binary_focal_loss(
            x, y, gamma=gamma, alpha=None, reduction="none")
    return (bce(x), jax.grad(lambda x: bce(x).sum())(x),
            focal(x), jax.grad(lambda x: focal(x).sum())(x))


@SETTINGS
@given(BIN, BIN_LABELS, SMOOTHING, GAMMA)
def test_binary_properties(x, y, s, gamma):
    bce, g_bce, focal, g_focal = (np.asarray(a) for a in _binary(x, y, s, gamma))
    for a in (bce, g_bce, focal, g_focal):
        assert np.all(np.isfinite(a))
    assert np.all(bce >= 0) and np.all(focal >= 0)
    # BCE gradient: sigmoid(x) - y', in float64
    ys = y.astype(np.float64) * (1 - s) + s / 2
    x64 = x.astype(np.float64)
    expected = (1 - ys) * np.exp(log_sigmoid(x64)) - ys * np.exp(log_sigmoid(-x64))
    np.testing.assert_allclose(g_bce, expected, rtol=1e-5, atol=1e-7)
    # the focal factor (1 - p_t)^gamma <= 1
    plain, *_ = _binary(x, y, 0.0, gamma)
    assert np.all(focal <= np.asarray(plain) * (1 + 1e-6) + 1e-6)

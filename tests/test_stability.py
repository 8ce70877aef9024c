"""Extreme values for the cross-entropy family (issue items 4 and 5).

Saturated logits (BCE at +-1e9, softmax at +-1e8), -inf logits for masked
classes, focal gradients and second derivatives at saturation for every
gamma, float16 over 131072 classes, the closed-form sparse gradient, and the
memory of the custom-VJP backward (no float32 copy of bf16 logits).
References are float64 NumPy.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import log_sigmoid, log_softmax, logsumexp

import jloss

GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)


def _softmax(x):
    return np.exp(log_softmax(x))


# ----------------------------------------------------------- saturated BCE

BCE_X = np.array([-1e9, -1e9, -1e9, 1e9, 1e9, 1e9, -30.0, 30.0, 0.0])
BCE_Y = np.array([0.0, 1.0, 0.5, 0.0, 1.0, 0.5, 1.0, 0.0, 1.0])


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_bce_at_logits_1e9_is_finite_and_exact(smoothing):
    x = jnp.asarray(BCE_X, jnp.float32)
    y = jnp.asarray(BCE_Y, jnp.float32)
    pw = jnp.asarray(2.0)
    value, (gx, gy) = jax.value_and_grad(
        lambda x, y: jloss.binary_cross_entropy(x, y, pos_weight=pw, label_smoothing=smoothing,
                                                reduction="sum"), argnums=(0, 1))(x, y)
    ys = BCE_Y * (1 - smoothing) + smoothing / 2
    per = -(2.0 * ys * log_sigmoid(BCE_X) + (1 - ys) * log_sigmoid(-BCE_X))
    np.testing.assert_allclose(float(value), per.sum(), rtol=1e-6)
    sig = np.exp(log_sigmoid(BCE_X))
    dx = (1 - ys) * sig - 2.0 * ys * (1 - sig)
    np.testing.assert_allclose(np.asarray(gx), dx, rtol=1e-6, atol=1e-30)
    dy = (1 - smoothing) * (-2.0 * log_sigmoid(BCE_X) + log_sigmoid(-BCE_X))
    np.testing.assert_allclose(np.asarray(gy), dy, rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(gx))) and np.all(np.isfinite(np.asarray(gy)))


# ------------------------------------------------------- saturated softmax

CE_X = np.array([[1e8, -1e8, 0.0, 5.0, -5.0],
                 [-1e8, -1e8, 1e8, 1e8, 0.0],
                 [1e8, 1e8 - 64, 0.0, 0.0, 0.0]])  # 1e8 - 64 is a distinct float32


@pytest.mark.parametrize("label", range(5))
def test_sparse_and_dense_ce_at_logits_1e8(label):
    x = jnp.asarray(CE_X, jnp.float32)
    xr = np.asarray(x, np.float64)
    labels = np.full(3, label)
    one_hot = np.eye(5)[labels]
    s, z = 0.1, 1e-4
    lsm = log_softmax(xr)
    expected = (-(1 - s) * lsm[np.arange(3), labels] - s / 5 * lsm.sum(-1)
                + z * logsumexp(xr) ** 2)
    a = (1 - s) * one_hot + s / 5
    grad = (1 + 2 * z * logsumexp(xr))[:, None] * _softmax(xr) - a
    for fn, t in ((jloss.sparse_categorical_cross_entropy, jnp.asarray(labels)),
                  (jloss.categorical_cross_entropy, jnp.asarray(one_hot, jnp.float32))):
        value, g = jax.value_and_grad(lambda x, fn=fn, t=t: fn(
            x, t, label_smoothing=s, z_loss=z, reduction="none").sum())(x)
        np.testing.assert_allclose(float(value), expected.sum(), rtol=1e-6)
        assert np.all(np.isfinite(np.asarray(g)))
        np.testing.assert_allclose(np.asarray(g), grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_categorical_focal_at_logits_1e8(gamma):
    x = jnp.asarray(CE_X, jnp.float32)
    for label in range(5):
        labels = jnp.full((3,), label)
        def f(x, labels=labels):
            return jloss.categorical_focal_loss(
                    x, labels, gamma=gamma, reduction="sum")
        value, g = jax.value_and_grad(f)(x)
        lp = log_softmax(np.asarray(x, np.float64))[:, label]
        expected = np.sum(-(-np.expm1(lp)) ** gamma * lp)
        np.testing.assert_allclose(float(value), expected, rtol=1e-6)
        assert np.all(np.isfinite(np.asarray(g)))


# ------------------------------------------------------------ -inf classes

NEG = -np.inf
MASKED_X = np.array([[2.0, NEG, 0.5, -1.0, NEG],
                     [NEG, 0.3, 0.3, NEG, 4.0],
                     [1e8, NEG, -1e8, 0.0, NEG]])
MASKED_Y = np.array([0, 4, 3])


def _masked_class_reference(s, z):
    """(1-s) nll_y + s/C sum over finite classes of nll_c + z lse^2; float64."""
    lsm = log_softmax(MASKED_X)
    finite = np.isfinite(MASKED_X)
    smooth = np.where(finite, -lsm, 0).sum(-1)
    loss = (1 - s) * -lsm[np.arange(3), MASKED_Y] + s / 5 * smooth + z * logsumexp(MASKED_X) ** 2
    a = (1 - s) * np.eye(5)[MASKED_Y] + np.where(finite, s / 5, 0)
    grad = (a.sum(-1) + 2 * z * logsumexp(MASKED_X))[:, None] * _softmax(MASKED_X) - a
    return loss, grad


@pytest.mark.parametrize("s,z", [(0.0, 0.0), (0.2, 0.0), (0.1, 1e-3)])
def test_minus_inf_logits_are_masked_classes(s, z):
    x = jnp.asarray(MASKED_X, jnp.float32)
    loss, grad = _masked_class_reference(s, z)
    for fn, t in ((jloss.sparse_categorical_cross_entropy, jnp.asarray(MASKED_Y)),
                  (jloss.categorical_cross_entropy, jnp.asarray(np.eye(5)[MASKED_Y],
                                                                jnp.float32))):
        value, g = jax.value_and_grad(lambda x, fn=fn, t=t: fn(
            x, t, label_smoothing=s, z_loss=z, reduction="none").sum())(x)
        np.testing.assert_allclose(float(value), loss.sum(), rtol=1e-6)
        g = np.asarray(g)
        assert np.all(np.isfinite(g))
        assert np.all(g[np.isinf(MASKED_X)] == 0.0), "a masked class got a gradient"
        np.testing.assert_allclose(g, grad, rtol=1e-5, atol=1e-7)
        none = fn(x, t, label_smoothing=s, z_loss=z, reduction="none")
        np.testing.assert_allclose(np.asarray(none), loss, rtol=1e-6)


def test_minus_inf_logits_in_categorical_focal():
    x = jnp.asarray(MASKED_X, jnp.float32)
    for gamma in (0.0, 2.0):
        value, g = jax.value_and_grad(lambda x, gamma=gamma: jloss.categorical_focal_loss(
            x, jnp.asarray(MASKED_Y), gamma=gamma, reduction="sum"))(x)
        lp = log_softmax(MASKED_X)[np.arange(3), MASKED_Y]
        np.testing.assert_allclose(float(value), np.sum(-(-np.expm1(lp)) ** gamma * lp),
                                   rtol=1e-6)
        g = np.asarray(g)
        assert np.all(np.isfinite(g)) and np.all(g[np.isinf(MASKED_X)] == 0.0)


def test_target_mass_on_a_masked_class_is_inf():
    x = jnp.asarray(MASKED_X, jnp.float32)
    targets = np.eye(5)[[1, 4, 3]]  # row 0 puts its mass on a -inf class
    none = jloss.categorical_cross_entropy(x, jnp.asarray(targets, jnp.float32),
                                           label_smoothing=0.1, reduction="none")
    none = np.asarray(none)
    assert none[0] == np.inf and np.all(np.isfinite(none[1:]))
    sparse = jloss.sparse_categorical_cross_entropy(x, jnp.array([1, 4, 3]), reduction="none")
    assert np.asarray(sparse)[0] == np.inf and np.all(np.isfinite(np.asarray(sparse)[1:]))


def test_fully_masked_row_of_minus_inf_logits_is_ignored_by_where():
    x = jnp.asarray(np.concatenate([MASKED_X, np.full((1, 5), NEG)]), jnp.float32)
    labels = jnp.asarray(np.append(MASKED_Y, 0))
    where = jnp.array([True, True, True, False])
    value, g = jax.value_and_grad(lambda x: jloss.sparse_categorical_cross_entropy(
        x, labels, where=where, label_smoothing=0.1))(x)
    loss, _ = _masked_class_reference(0.1, 0.0)
    np.testing.assert_allclose(float(value), loss.mean(), rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g)[3] == 0.0)


# ------------------------------------------------- focal at saturation

FOCAL_X = np.array([-1e9, -100.0, -30.0, -5.0, 0.0, 5.0, 30.0, 100.0, 1e9])


def _binary_focal_grad(x, y, gamma):
    """d/dx of softplus(-x) q^gamma, q = sigmoid(-x) (y = 1), float64, log space."""
    if y == 0:
        return -_binary_focal_grad(-x, 1, gamma)
    ce = np.logaddexp(0, -x)
    log_q = log_sigmoid(-x)
    q = np.exp(log_q)
    with np.errstate(divide="ignore", invalid="ignore"):
        mod = np.exp(gamma * log_q)  # q^gamma, 1 when gamma = 0
        second = np.where(gamma == 0, 0.0, gamma * ce * mod * (1 - q))
    return -q * mod - second


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("y", [0.0, 1.0])
def test_binary_focal_gradients_and_second_derivatives_at_saturation(gamma, y):
    x = jnp.asarray(FOCAL_X, jnp.float32)
    labels = jnp.full(x.shape, y, jnp.float32)

    def f(x):
        return jloss.binary_focal_loss(x, labels, gamma=gamma, alpha=None, reduction="sum")

    g = np.asarray(jax.grad(f)(x))
    h = np.asarray(jax.jacrev(jax.jacrev(f))(x))
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    expected = _binary_focal_grad(FOCAL_X, y, gamma)
    np.testing.assert_allclose(g, expected, rtol=2e-5, atol=1e-30)
    assert np.all(h[~np.eye(len(FOCAL_X), dtype=bool)] == 0.0)  # elementwise: diagonal
    moderate = np.abs(FOCAL_X) <= 30
    step = 1e-4
    fd = (_binary_focal_grad(FOCAL_X + step, y, gamma)
          - _binary_focal_grad(FOCAL_X - step, y, gamma)) / (2 * step)
    np.testing.assert_allclose(np.diag(h)[moderate], fd[moderate], rtol=1e-3, atol=1e-6)
    # the second derivative vanishes where the loss is flat (well classified)
    flat = FOCAL_X * (2 * y - 1) >= 100
    np.testing.assert_allclose(np.diag(h)[flat], 0.0, atol=1e-30)
    # jax.hessian (forward over reverse) agrees; forward mode applied directly raises
    np.testing.assert_allclose(np.asarray(jax.hessian(f)(x)), h, rtol=1e-5, atol=1e-7)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jacfwd(f)(x)


SAT_ROWS = np.array([[100.0, 0.0, -100.0], [1e8, -1e8, 0.0], [30.0, 30.0, -30.0],
                     [2.0, -1.0, 0.5]])


def _categorical_focal_grad(x, y, gamma):
    """d/dx of -(1 - p_y)^gamma log p_y for one row, float64, in log space."""
    lsm = log_softmax(x)
    log_q = np.logaddexp.reduce(np.delete(lsm, y))  # log(1 - p_y)
    q = np.exp(log_q)
    log_p = np.log1p(-q) if q < 0.5 else lsm[y]
    p = np.exp(log_p)
    ratio = log_p / q if q > 1e-8 else -1.0 - q / 2  # log(1 - q) / q
    mod = np.exp(gamma * log_q) if gamma > 0 else 1.0
    grad = np.exp(lsm) * mod * (1 - gamma * p * ratio)
    grad[y] = -mod * q + gamma * mod * log_p * p
    return grad


@pytest.mark.parametrize("gamma", GAMMAS)
def test_categorical_focal_gradients_and_second_derivatives_at_saturation(gamma):
    x = jnp.asarray(SAT_ROWS, jnp.float32)
    rows = np.asarray(x, np.float64)
    for label in range(3):
        labels = jnp.full((len(rows),), label)

        def f(x, labels=labels):
            return jloss.categorical_focal_loss(x, labels, gamma=gamma, reduction="sum")

        g = np.asarray(jax.grad(f)(x))
        h = np.asarray(jax.jacrev(jax.jacrev(f))(x))
        assert np.all(np.isfinite(g)), (label, g)
        assert np.all(np.isfinite(h)), (label, h)
        for i, row in enumerate(rows):
            np.testing.assert_allclose(g[i], _categorical_focal_grad(row, label, gamma),
                                       rtol=1e-4, atol=1e-30, err_msg=f"row {i} label {label}")
            step = 1e-4
            fd = np.stack([(_categorical_focal_grad(row + step * e, label, gamma)
                            - _categorical_focal_grad(row - step * e, label, gamma)) / (2 * step)
                           for e in np.eye(3)])
            np.testing.assert_allclose(h[i, :, i, :], fd, rtol=2e-3, atol=1e-6,
                                       err_msg=f"row {i} label {label}")
    np.testing.assert_allclose(np.asarray(jax.hessian(f)(x)), h, rtol=1e-5, atol=1e-7)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jacfwd(f)(x)


# ----------------------------------------------------- dtypes at extremes


def test_float16_over_131072_equal_classes_is_log_v_not_inf():
    num = 131072
    x = jnp.full((2, num), 3.0, jnp.float16)
    labels = jnp.array([0, num - 1])
    value, g = jax.value_and_grad(
        lambda x: jloss.sparse_categorical_cross_entropy(x, labels))(x)
    assert value.dtype == jnp.float32 and g.dtype == jnp.float16
    np.testing.assert_allclose(float(value), math.log(num), rtol=1e-6)
    g = np.asarray(g, np.float64)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g[0, 1], 1 / num / 2, rtol=2e-2)  # f16 subnormal: coarse
    np.testing.assert_allclose(g[[0, 1], [0, num - 1]], (1 / num - 1) / 2, rtol=1e-3)


def test_sparse_gradient_is_softmax_minus_one_hot_to_float32_round_off():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(scale=4.0, size=(16, 50)), jnp.float32)
    labels = rng.integers(0, 50, size=16)
    g = jax.grad(lambda x: jloss.sparse_categorical_cross_entropy(
        x, jnp.asarray(labels), reduction="sum"))(x)
    expected = _softmax(np.asarray(x, np.float64)) - np.eye(50)[labels]
    eps32 = np.finfo(np.float32).eps
    np.testing.assert_allclose(np.asarray(g), expected, rtol=8 * eps32, atol=2 * eps32)


# -------------------------------------------------- backward pass memory

N, V = 8, 1024


def _residuals(f, x):
    _, vjp_fn = jax.vjp(f, x)
    return [leaf for leaf in jax.tree_util.tree_leaves(vjp_fn) if hasattr(leaf, "dtype")]


def _big(leaves):
    return [(str(leaf.dtype), leaf.shape) for leaf in leaves if np.size(leaf) >= N * V]


_rng = np.random.default_rng(0)
_X = jnp.asarray(_rng.normal(size=(N, V)), jnp.bfloat16)
_Y = jnp.asarray(_rng.integers(0, V, size=N))
_T = jax.nn.one_hot(_Y, V, dtype=jnp.bfloat16)
_B = jnp.asarray(_rng.integers(0, 2, size=(N, V)), jnp.bfloat16)
_IGN = _Y.at[::3].set(-100)
_ROWS = jnp.arange(N) % 2 == 0
BACKWARDS = {
    "sparse": (lambda x: jloss.sparse_categorical_cross_entropy(x, _Y), 1),
    "sparse+ignore+options": (lambda x: jloss.sparse_categorical_cross_entropy(
        x, _IGN, ignore_index=-100, label_smoothing=0.1, z_loss=1e-4,
        class_weights=jnp.ones(V), weights=jnp.ones(N)), 1),
    "sparse+where": (lambda x: jloss.sparse_categorical_cross_entropy(x, _Y, where=_ROWS), 1),
    "dense+where": (lambda x: jloss.categorical_cross_entropy(x, _T, label_smoothing=0.1,
                                                              where=_ROWS), 2),
    "categorical_focal+ignore": (lambda x: jloss.categorical_focal_loss(
        x, _IGN, ignore_index=-100, alpha=0.25), 1),
    "binary_cross_entropy": (lambda x: jloss.binary_cross_entropy(
        x, _B, label_smoothing=0.1, pos_weight=2.0), 2),
    "binary_focal": (lambda x: jloss.binary_focal_loss(x, _B, gamma=2.0, alpha=0.25), 2),
}


@pytest.mark.parametrize("name", BACKWARDS)
def test_backward_keeps_no_float32_copy_of_bf16_logits(name):
    """The jax.vjp closure holds the V-sized inputs in bf16 and per-example stats only.

    Softmax losses keep exactly one (N, V) tensor, the logits; dense CE and
    the binary losses also need their (N, V) targets, kept in their own dtype.
    """
    f, n_big = BACKWARDS[name]
    leaves = _residuals(f, _X)
    big = _big(leaves)
    assert not [b for b in big if b[0] == "float32"], f"float32 (N, V) residual: {big}"
    assert len(big) == n_big, f"expected {n_big} (N, V) residual(s), got {big}"
    assert all(b == ("bfloat16", (N, V)) for b in big), big
    _, vjp_fn = jax.vjp(f, _X)
    (g,) = vjp_fn(jnp.ones((), jnp.float32))
    assert g.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(g, np.float32)))


@pytest.mark.parametrize("options", [{}, {"z_loss": 1e-4, "class_weights": jnp.ones(4096)}],
                         ids=["plain", "z_loss+class_weights"])
def test_bf16_sparse_value_and_grad_writes_no_float32_copy(options):
    """Compiled value-and-grad of bf16 sparse CE needs less scratch than one float32 (N, V) array.

    XLA merges the float32 upcasts of the forward and the backward unless the
    kernel keeps them apart (``_stable._upcast``); merged, it writes a float32
    copy of the logits (4 N V bytes of scratch, twice the time).
    """
    x, y = jnp.zeros((64, 4096), jnp.bfloat16), jnp.zeros((64,), jnp.int32)
    fn = jax.jit(jax.value_and_grad(
        lambda x: jloss.sparse_categorical_cross_entropy(x, y, **options)))
    scratch = fn.lower(x).compile().memory_analysis().temp_size_in_bytes
    assert scratch < x.size * 4, f"{scratch} bytes of scratch: a float32 (N, V) copy was written"

"""dtype policy (issue item 5): float16 / bfloat16 inputs are computed in
float32, the loss comes back as float32 and gradients in the input dtype.

float64 under x64 (loss and gradients float64, to 1e-10 of the reference)
is covered for every row and option by
``test_convention.py::test_reductions_weights_where``.
"""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import as_f64, grads_of, opt_id, params, reference, to_jax

import jloss

HALF = {"float16": jnp.float16, "bfloat16": jnp.bfloat16}


@pytest.mark.parametrize("case,opts", **params(which="rich"))
def test_half_precision_is_computed_in_float32(case, opts):
    """float16 and bfloat16: the loss is float32 and equals the float64 reference of
    the rounded inputs to float32 precision; gradients come back in the input
    dtype and equal the float32 gradient of the same inputs, rounded once."""
    rng = np.random.default_rng(zlib.crc32(f"{case.name}|{opt_id(opts)}".encode()))
    args = case.make(rng, (4,), opts)
    half = {name: to_jax(case, args, dtype) for name, dtype in HALF.items()}
    single = {name: tuple(a.astype(jnp.float32) if i in case.float_args else a
                          for i, a in enumerate(h)) for name, h in half.items()}

    def value_and_grads(a):
        return case.fn(*a, **opts), grads_of(case, lambda *b: case.fn(*b, **opts), a)

    results = jax.jit(lambda h, s: {name: (value_and_grads(h[name]), value_and_grads(s[name]))
                                    for name in HALF})(half, single)
    for name, dtype in HALF.items():
        (v_half, g_half), (v_single, g_single) = results[name]
        assert v_half.dtype == jnp.float32
        np.testing.assert_allclose(float(v_half), reference(case, as_f64(half[name]), opts),
                                   rtol=2e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(float(v_half), float(v_single), rtol=1e-6, err_msg=name)
        eps = float(jnp.finfo(dtype).eps)
        for gh, gs, i in zip(g_half, g_single, case.diff_args, strict=False):
            assert gh.dtype == half[name][i].dtype == dtype
            np.testing.assert_allclose(np.asarray(gh, np.float64),
                                       np.asarray(gs.astype(dtype), np.float64), rtol=2 * eps,
                                       atol=float(jnp.finfo(dtype).tiny), err_msg=name)


@pytest.mark.parametrize("case,opts", **params(which="rich"))
def test_float32_stays_float32_under_x64(case, opts, x64):
    """Python-float options and float64 NumPy weights do not promote float32 inputs."""
    rng = np.random.default_rng(zlib.crc32(f"{case.name}|{opt_id(opts)}|x64".encode()))
    args = to_jax(case, case.make(rng, (4,), opts), jnp.float32)
    opts = {k: (np.asarray(v, np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f"
                else v) for k, v in opts.items()}
    weights = rng.uniform(0.5, 2.0, size=case.loss_shape(args))  # float64 NumPy

    def f(*a):
        return case.fn(*a, **opts, weights=weights)

    value, grads = jax.jit(lambda a: (f(*a), grads_of(case, f, a)))(args)
    assert value.dtype == jnp.float32
    for g in grads:
        assert g.dtype == jnp.float32


# Values that overflow or lose everything when computed in float16.
OVERFLOW = [
    ("mse", lambda: jloss.mse(jnp.array([300.0], jnp.float16), jnp.array([0.0], jnp.float16)),
     300.0**2),
    ("huber", lambda: jloss.huber(jnp.array([6e4], jnp.float16), jnp.array([-6e4], jnp.float16),
                                  delta=6e4), 6e4 * (1.2e5 - 3e4)),
    ("log_cosh", lambda: jloss.log_cosh(jnp.array([6e4], jnp.float16),
                                        jnp.array([-6e4], jnp.float16)), 1.2e5 - np.log(2)),
    ("poisson_nll", lambda: jloss.poisson_nll(jnp.array([12.0], jnp.float16),
                                              jnp.array([2.0], jnp.float16)),
     np.exp(12.0) - 24.0),
    ("gaussian_nll", lambda: jloss.gaussian_nll(jnp.array([10.0], jnp.float16),
                                                jnp.array([0.0], jnp.float16),
                                                jnp.array([1e-3], jnp.float16)),
     0.5 * (np.log(np.float64(np.float16(1e-3))) + 100 / np.float64(np.float16(1e-3)))),
    ("squared_hinge", lambda: jloss.squared_hinge(jnp.array([-300.0], jnp.float16),
                                                  jnp.array([1.0], jnp.float16)), 301.0**2),
    ("multiclass_hinge", lambda: jloss.multiclass_hinge(
        jnp.array([[-300.0, 0.0]], jnp.float16), jnp.array([0]), p=2), 301.0**2 / 2),
    ("z_loss", lambda: jloss.sparse_categorical_cross_entropy(
        jnp.array([[300.0, 0.0]], jnp.float16), jnp.array([0]), z_loss=1.0), 300.0**2),
]


@pytest.mark.parametrize("name,fn,expected", OVERFLOW, ids=[o[0] for o in OVERFLOW])
def test_float16_results_beyond_float16_range(name, fn, expected):
    value = fn()
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(float(value), expected, rtol=1e-6)


def test_bfloat16_probabilities_pass_the_value_checks():
    """bf16 rounding of a softmax does not trip the 'sums to 1' check."""
    rng = np.random.default_rng(0)
    probs = jax.nn.softmax(jnp.asarray(rng.normal(size=(6, 7)), jnp.float32)).astype(jnp.bfloat16)
    labels = jnp.asarray(rng.integers(0, 7, size=6))
    targets = jax.nn.one_hot(labels, 7, dtype=jnp.bfloat16)
    for value in (
        jloss.categorical_cross_entropy(probs, targets, from_logits=False),
        jloss.sparse_categorical_cross_entropy(probs, labels, from_logits=False),
        jloss.kl_divergence(probs, probs, from_logits=False),
        jloss.categorical_cross_entropy(jnp.zeros((6, 7), jnp.bfloat16), probs),
    ):
        assert value.dtype == jnp.float32 and np.isfinite(float(value))


def test_mixed_dtypes_binary_cross_entropy():
    """bf16 logits with float32, bool or int labels: float32 loss, each gradient in its dtype."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, 3)), jnp.bfloat16)
    y = rng.integers(0, 2, size=(4, 3))
    expected = jloss.binary_cross_entropy(x.astype(jnp.float32), jnp.asarray(y, jnp.float32),
                                          label_smoothing=0.1)
    for labels in (jnp.asarray(y, jnp.float32), jnp.asarray(y, bool), jnp.asarray(y, jnp.int32)):
        def f(x, labels=labels):
            return jloss.binary_cross_entropy(
                    x, labels, label_smoothing=0.1)
        value, gx = jax.value_and_grad(f)(x)
        assert value.dtype == jnp.float32 and gx.dtype == jnp.bfloat16
        np.testing.assert_allclose(float(value), float(expected), rtol=1e-6)
        focal = jloss.binary_focal_loss(x, labels)
        assert focal.dtype == jnp.float32 and np.isfinite(float(focal))
    gy = jax.grad(jloss.binary_cross_entropy, argnums=1)(x, jnp.asarray(y, jnp.float32))
    assert gy.dtype == jnp.float32

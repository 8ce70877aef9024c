"""Gradients of every loss against finite differences, in float64.

``jax.test_util.check_grads(order=2, modes=["rev"])`` for every row and its
``grad_options`` (one call per row: the options are stacked into one vector
output). Reverse mode of order 2 runs through the custom-VJP backward rules.
``jax.hessian`` (forward over reverse) must work on every loss, while forward
mode applied directly (``jax.jvp``, ``jax.jacfwd``) fails with a TypeError
on custom-VJP losses, as JAX's rule for custom VJPs says.
"""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import CASES, to_jax
from jax.test_util import check_grads

IDS = [c.name for c in CASES]


def _setup(case, opts, salt=0):
    """float64 args, diff args, and a loss of the diff args (mean, weights, where)."""
    rng = np.random.default_rng(zlib.crc32(f"{case.name}|{sorted(opts)}|{salt}".encode()))
    args = to_jax(case, case.make(rng, (4,), opts), np.float64)
    shape = case.loss_shape(args)
    weights = rng.uniform(0.5, 2.0, size=shape)
    where = np.ones(shape, bool)
    where.flat[1] = False

    def loss(*diff):
        full = list(args)
        for i, d in zip(case.diff_args, diff, strict=False):
            full[i] = d
        return case.fn(*full, **opts, weights=weights, where=where)

    return loss, tuple(args[i] for i in case.diff_args)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_check_grads_order_2(case, x64):
    setups = [_setup(case, opts) for opts in case.opts_for_grads()]

    def stacked(per_option_args):
        # value checks cannot run on traced values: the finite differences may
        # leave the simplex by 1e-4, which is what they are meant to do
        return jnp.stack([loss(*a) for (loss, _), a in zip(setups, per_option_args, strict=False)])

    args = tuple(a for _, a in setups)
    check_grads(jax.jit(stacked), (args,), order=2, modes=["rev"])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hessian(case, x64):
    """jax.hessian (forward over reverse) works on every loss and equals
    jacrev(jacrev); forward mode applied directly to a custom-VJP loss raises."""
    loss, diff = _setup(case, case.options[0], salt=1)
    x0 = diff[0]

    def f(x):
        return loss(x, *diff[1:])

    rev_rev, hess = jax.jit(lambda x: (jax.jacrev(jax.jacrev(f))(x), jax.hessian(f)(x)))(x0)
    h = np.asarray(rev_rev).reshape(x0.size, x0.size)
    assert np.all(np.isfinite(h))
    np.testing.assert_allclose(h, h.T, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(hess), np.asarray(rev_rev), rtol=1e-10, atol=1e-12)
    if case.custom_vjp:
        with pytest.raises(TypeError, match="custom_vjp"):
            jax.jacfwd(f)(x0)
        with pytest.raises(TypeError, match="custom_vjp"):
            jax.jvp(f, (x0,), (x0,))

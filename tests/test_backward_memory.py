"""bfloat16 inputs: the backward of the losses without their own kernel keeps the inputs only.

The float32 math (upcasts, intermediates) is rematerialised in the backward
(:func:`jloss.kernels.common.keep_inputs`): the ``jax.vjp`` closure holds no
float32 array of the inputs' size, only the bfloat16 inputs themselves.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jloss

N, C = 8, 512
_rng = np.random.default_rng(0)
_X = jnp.asarray(_rng.normal(size=(N, C)), jnp.bfloat16)
_T = jnp.asarray(_rng.normal(size=(N, C)), jnp.bfloat16)
_P = jnp.asarray(_rng.uniform(0.1, 0.9, size=(N, C)), jnp.bfloat16)
_SOFT = jnp.asarray(_rng.uniform(size=(N, C)), jnp.bfloat16)
_SIGNS = jnp.asarray(2 * _rng.integers(0, 2, size=(N, C)) - 1, jnp.bfloat16)
_DIST = jax.nn.softmax(_T.astype(jnp.float32), axis=-1).astype(jnp.bfloat16)

# name: (loss of the bf16 first argument, number of (N, C) inputs it keeps)
LOSSES = {
    "mean_squared_error": (lambda x: jloss.mean_squared_error(x, _T), 2),
    "mean_absolute_error": (lambda x: jloss.mean_absolute_error(x, _T), 2),
    "huber": (lambda x: jloss.huber(x, _T), 2),
    "log_cosh": (lambda x: jloss.log_cosh(x, _T), 2),
    "gaussian_nll": (lambda x: jloss.gaussian_nll(x, _T, _P), 3),
    "poisson_nll": (lambda x: jloss.poisson_nll(x, _P), 2),
    "kl_divergence": (lambda x: jloss.kl_divergence(x, _DIST), 2),
    "hinge": (lambda x: jloss.hinge(x, _SIGNS), 2),
    "multiclass_hinge": (lambda x: jloss.multiclass_hinge(x, jnp.arange(N), p=2), 1),
    "binary_cross_entropy(probabilities)": (
        lambda p: jloss.binary_cross_entropy(p, _SOFT, from_logits=False), 2),
}


@pytest.mark.parametrize("name", LOSSES)
def test_bf16_backward_keeps_the_inputs_only(name):
    f, n_inputs = LOSSES[name]
    x = _P if "probabilities" in name else _X
    _, vjp_fn = jax.vjp(f, x)
    big = [(str(leaf.dtype), leaf.shape) for leaf in jax.tree_util.tree_leaves(vjp_fn)
           if hasattr(leaf, "dtype") and np.size(leaf) >= N * C]
    assert big == [("bfloat16", (N, C))] * n_inputs, big
    (g,) = vjp_fn(jnp.ones((), jnp.float32))
    assert g.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(g, np.float32)))

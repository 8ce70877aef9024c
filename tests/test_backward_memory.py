"""bfloat16 inputs: the backward of every loss keeps the bfloat16 inputs, no float32 copies.

Half-precision inputs are computed in float32. Differentiated as is, the
backward would keep the upcast inputs and float32 intermediates of the
inputs' size; every loss either rematerialises its float32 math in the
backward (:func:`jloss.kernels.common.keep_inputs`) or has a custom VJP whose
residuals are the inputs themselves. So the ``jax.vjp`` closure of every loss
of the registry holds no float array other than bfloat16 as large as an
input (boolean and integer masks and per-example statistics may be kept).

The closure is traced with ``jax.eval_shape`` (nothing is compiled); the
values of these bfloat16 gradients, through the same rematerialised backward,
are checked in ``test_dtypes.py::test_half_precision_is_computed_in_float32``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import CASES, to_jax

BATCH = (16,)  # per-example statistics (16,) stay smaller than every input

# Kept by design, not a copy of an input: CTC's forward variables over the lattice of the
# blank-extended labels, states first and sequences last, (T, 2S + 1, batch), as large as the
# logits when 2S + 1 >= K.
STATE = {"ctc": lambda logits, labels: (logits.shape[-2], 2 * labels.shape[-1] + 1, *labels.shape[:-1])}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bf16_backward_keeps_no_float32_copy(case):
    opts = case.options[0]
    args = to_jax(case, case.make(np.random.default_rng(0), BATCH, opts), jnp.bfloat16)
    first = case.float_args[0]
    size = min(np.size(args[i]) for i in case.float_args)
    state = STATE[case.name](*args) if case.name in STATE else None

    def backward(*args):
        def loss(x):
            return case.fn(*args[:first], x, *args[first + 1:], **opts)

        _, vjp_fn = jax.vjp(loss, args[first])
        return vjp_fn, vjp_fn(jnp.ones((), jnp.float32))[0]

    vjp_fn, grad = jax.eval_shape(backward, *args)
    kept = [(str(leaf.dtype), leaf.shape) for leaf in jax.tree_util.tree_leaves(vjp_fn)
            if math.prod(leaf.shape) >= size]
    copies = [(dtype, shape) for dtype, shape in kept
              if jnp.issubdtype(dtype, jnp.floating) and dtype != "bfloat16" and shape != state]
    assert not copies, (f"{case.name}: the backward of bfloat16 inputs of size {size} keeps "
                        f"{copies} (every leaf of that size: {kept})")
    assert grad.dtype == jnp.bfloat16, f"{case.name}: gradient of dtype {grad.dtype}"

"""dtype policy: half-precision inputs are computed in float32."""

import jax.numpy as jnp


def compute_dtype(*arrays):
    """The float dtype a loss computes in: float32, or float64 for x64 inputs.

    float16 / bfloat16 inputs are promoted to float32 so sums and logs keep
    their precision; the caller's gradients still come back in the input dtype
    because the cast is part of the differentiated program.
    """
    dtype = jnp.float32
    for a in arrays:
        if a is not None and jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating):
            dtype = jnp.promote_types(dtype, jnp.asarray(a).dtype)
    return dtype


"""One process of the 2-process vocabulary-parallel head run in test_fused_multiprocess.py.

Usage: python _multiprocess_head_worker.py PROCESS_ID PORT NUM_PROCESSES

Builds global arrays on a data x model = 2 x 2 mesh over both processes' CPU
devices, takes value and gradients of ``linear_cross_entropy(...,
vocab_axis="model", batch_axes=("data",))`` and prints them (gathered) as one
JSON line.
"""

import sys

import numpy as np

N, D, V, BLOCK = 8, 6, 40, 7
OPTIONS = {"label_smoothing": 0.1, "z_loss": 1e-3, "temperature": 0.9, "block_size": BLOCK}


def problem():
    """``hidden, weight, bias, labels`` as NumPy arrays, identical in every process."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, V, size=N).astype(np.int32)
    labels[:2] = [1, V - 1]  # labels in both vocabulary shards
    return (rng.normal(size=(N, D)).astype(np.float32), rng.normal(size=(D, V)).astype(np.float32),
            rng.normal(size=(V,)).astype(np.float32), labels)


def main():
    process_id, port, num_processes = (int(a) for a in sys.argv[1:4])
    import json

    import jax
    from jax.experimental import multihost_utils
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import jloss

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes,
                               process_id=process_id)
    mesh = jax.make_mesh((2, 2), ("data", "model"))
    hidden, weight, bias, labels = problem()
    specs = (P("data", None), P(None, "model"), P("model"), P("data"))
    arrays = [jax.make_array_from_callback(x.shape, NamedSharding(mesh, s), lambda i, x=x: x[i])
              for x, s in zip((hidden, weight, bias, labels), specs, strict=True)]

    def loss(h, w, b, y):
        return jloss.linear_cross_entropy(h, w, y, bias=b, vocab_axis="model",
                                          batch_axes=("data",), **OPTIONS)

    with jax.set_mesh(mesh):
        value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(*arrays)
        jax.block_until_ready(grads)
    out = {"process_count": jax.process_count(), "dweight_spec": str(grads[1].sharding.spec),
           "value": float(value.addressable_data(0)),  # replicated on every device
           "grads": [multihost_utils.process_allgather(g, tiled=True).tolist() for g in grads]}
    print("RESULT " + json.dumps(out), flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()

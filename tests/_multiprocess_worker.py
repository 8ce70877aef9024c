"""One process of the 2-process CPU training run in test_train_multiprocess.py.

Usage: python _multiprocess_worker.py PROCESS_ID PORT NUM_PROCESSES NUM_STEPS

The caller sets JAX_PLATFORMS=cpu and XLA_FLAGS (local device count). Each
process feeds its own slice of every global batch to the "mesh" train step,
and prints one JSON line with its final parameters.
"""

import json
import sys

import numpy as np

GLOBAL_BATCH = 8


def problem():
    """Initial parameters, loss and the global batches, identical in every process."""
    import jax.numpy as jnp

    import jloss

    rng = np.random.default_rng(0)
    params = {"w1": rng.normal(size=(3, 4)).astype(np.float32) / 2, "b1": np.zeros(4, np.float32),
              "w2": rng.normal(size=(4, 1)).astype(np.float32) / 2, "b2": np.zeros(1, np.float32)}

    def loss_fn(p, batch):
        x, y = batch
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        return jloss.mean_squared_error(h @ p["w2"] + p["b2"], y)

    def batches(n_steps):
        return [(rng.normal(size=(GLOBAL_BATCH, 3)).astype(np.float32),
                 rng.normal(size=(GLOBAL_BATCH, 1)).astype(np.float32)) for _ in range(n_steps)]

    return params, loss_fn, batches


def train(optimizer_name, n_steps, parallel=None, process_id=0, num_processes=1):
    """Train ``n_steps``; each process uses its slice of every global batch."""
    import jax

    import jloss

    params, loss_fn, batches = problem()
    state = jloss.TrainState.create(params=params, tx=jloss.optimizer(optimizer_name, 0.1))
    step = jloss.make_train_step(loss_fn, parallel=parallel)
    share = GLOBAL_BATCH // num_processes
    losses = []
    for x, y in batches(n_steps):
        mine = slice(process_id * share, (process_id + 1) * share)
        local = (x[mine], y[mine])
        state, metrics = step(state, local)
        jax.block_until_ready(state)
        losses.append(float(metrics["loss"]))
    return {k: np.asarray(v).tolist() for k, v in state.params.items()}, losses


def main():
    process_id, port, num_processes, n_steps = (int(a) for a in sys.argv[1:5])
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes,
                               process_id=process_id)
    out = {"process_index": jax.process_index(), "process_count": jax.process_count(),
           "device_count": jax.device_count(), "local_device_count": jax.local_device_count()}
    for name in ("sgd", "adam"):
        params, losses = train(name, n_steps, "mesh", process_id, num_processes)
        out[name] = {"params": params, "losses": losses}
    print("RESULT " + json.dumps(out), flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()

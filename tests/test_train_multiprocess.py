"""The "mesh" train step across 2 CPU processes (jax.distributed on 127.0.0.1, gloo collectives).

Each process has 2 local CPU devices (4 global); both must end with the same
parameters as the single-process, single-device run. Subprocesses have a
timeout, so the suite cannot hang.
"""

import pathlib
import sys

import numpy as np
from _multiprocess import launch as launch_workers

HERE = pathlib.Path(__file__).resolve().parent
WORKER = HERE / "_multiprocess_worker.py"
NUM_PROCESSES, LOCAL_DEVICES, STEPS, TIMEOUT_S = 2, 2, 5, 180


def launch():
    return launch_workers(WORKER, NUM_PROCESSES, LOCAL_DEVICES, [STEPS], TIMEOUT_S)


def test_mesh_step_across_two_processes_matches_single_process():
    sys.path.insert(0, str(HERE))
    try:
        import _multiprocess_worker as worker
    finally:
        sys.path.remove(str(HERE))

    results = launch()
    assert [r["process_index"] for r in results] == [0, 1]
    for r in results:
        assert r["process_count"] == NUM_PROCESSES
        assert r["local_device_count"] == LOCAL_DEVICES
        assert r["device_count"] == NUM_PROCESSES * LOCAL_DEVICES
    for name in ("sgd", "adam"):
        first, second = (r[name] for r in results)
        assert first == second, f"{name}: the two processes ended with different parameters"
        ref_params, ref_losses = worker.train(name, STEPS)  # one process, one device
        for key, value in ref_params.items():
            np.testing.assert_allclose(np.asarray(first["params"][key]), np.asarray(value), atol=1e-5,
                                       err_msg=f"{name} {key}")
        np.testing.assert_allclose(first["losses"], ref_losses, rtol=1e-5)
        assert ref_losses[-1] != ref_losses[0]

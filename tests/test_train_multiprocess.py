"""The "mesh" train step across 2 CPU processes (jax.distributed on 127.0.0.1, gloo collectives).

Each process has 2 local CPU devices (4 global); both must end with the same
parameters as the single-process, single-device run. Subprocesses have a
timeout, so the suite cannot hang.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
WORKER = HERE / "_multiprocess_worker.py"
NUM_PROCESSES, LOCAL_DEVICES, STEPS, TIMEOUT_S = 2, 2, 5, 180


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch():
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={LOCAL_DEVICES}",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    args = [str(port), str(NUM_PROCESSES), str(STEPS)]
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(i), *args], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(NUM_PROCESSES)]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=TIMEOUT_S))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        for p in procs:
            p.communicate()
        pytest.fail(f"multi-process training did not finish within {TIMEOUT_S} s")
    results = []
    for p, (out, err) in zip(procs, outputs, strict=True):
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        assert p.returncode == 0 and lines, f"worker failed (rc={p.returncode}):\n{err[-3000:]}"
        results.append(json.loads(lines[-1][len("RESULT "):]))
    return results


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

"""Run a worker script in several CPU processes joined by ``jax.distributed`` on 127.0.0.1.

Each worker gets ``PROCESS_ID PORT NUM_PROCESSES *args``, uses gloo CPU
collectives, and prints one line ``RESULT <json>``; :func:`launch` returns
the parsed results in process order. Subprocesses have a timeout, so the
suite cannot hang.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(worker, num_processes, local_devices, args=(), timeout_s=180):
    """Start ``worker`` in ``num_processes`` processes of ``local_devices`` CPU devices each."""
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={local_devices}",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    args = [str(port), str(num_processes), *(str(a) for a in args)]
    procs = [subprocess.Popen([sys.executable, str(worker), str(i), *args], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(num_processes)]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=timeout_s))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        for p in procs:
            p.communicate()
        pytest.fail(f"the {num_processes} processes did not finish within {timeout_s} s")
    results = []
    for p, (out, err) in zip(procs, outputs, strict=True):
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        assert p.returncode == 0 and lines, f"worker failed (rc={p.returncode}):\n{err[-3000:]}"
        results.append(json.loads(lines[-1][len("RESULT "):]))
    return results

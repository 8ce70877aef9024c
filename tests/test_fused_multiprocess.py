"""The vocabulary-parallel head across 2 CPU processes (jax.distributed on 127.0.0.1, gloo).

Each process has 2 local CPU devices; the data x model = 2 x 2 mesh spans
both. Value and gradients must equal the single-process, unsharded call.
"""

import pathlib

import jax
import numpy as np
from _multiprocess import launch
from _multiprocess_head_worker import OPTIONS, problem

import jloss

WORKER = pathlib.Path(__file__).resolve().parent / "_multiprocess_head_worker.py"


def test_vocab_parallel_head_across_two_processes_matches_one_device():
    results = launch(WORKER, num_processes=2, local_devices=2)
    hidden, weight, bias, labels = problem()
    value, grads = jax.value_and_grad(
        lambda h, w, b: jloss.linear_cross_entropy(h, w, labels, bias=b, **OPTIONS),
        argnums=(0, 1, 2))(hidden, weight, bias)
    for r in results:
        assert r["process_count"] == 2
        assert r["dweight_spec"] == "P(None, 'model')"  # dweight stays sharded
        np.testing.assert_allclose(r["value"], float(value), rtol=1e-5)
        for got, want in zip(r["grads"], grads, strict=True):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4,
                                       atol=1e-6 * float(np.max(np.abs(want))))

"""examples/tiny_gpt.py: data- and vocabulary-parallel training on a 2 x 2 mesh of CPU devices
follows the single-device loss curve to float round-off."""

import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "examples"))

import tiny_gpt


def test_mesh_2x2_training_matches_one_device():
    steps, batch, context = 20, 8, 16
    _, single, _, _ = tiny_gpt.train(steps, batch, context, log_every=0)
    mesh = tiny_gpt.parse_mesh("2x2")
    params, sharded, _, _ = tiny_gpt.train(steps, batch, context, mesh=mesh, log_every=0)
    assert params["embed"].sharding.spec[0] == "model"  # the head stays vocabulary-sharded
    assert sharded[-1] < sharded[0] - 0.5  # it learns
    np.testing.assert_allclose(sharded, single, rtol=2e-5)

"""The fused head on a mesh: vocabulary- and data-parallel calls equal the unsharded call.

Meshes data x model = 1x4, 2x2 and 4x1 over the 4 forced CPU devices. Inside
``jax.shard_map`` the weight is this device's slice of the vocabulary; under
``jax.jit`` on global arrays with ``jax.set_mesh`` the head shards itself. The
compiled programs are checked too: scratch memory and collectives (from the
HLO text), never a gathered weight.
"""

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import jloss

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))

from linear_cross_entropy import collectives

D, V, BLOCK = 8, 96, 10  # 24, 48 or 96 classes per device: never a multiple of the block
BATCH = (4, 6)
MESHES = [(1, 4), (2, 2), (4, 1)]


def _inputs():
    rng = np.random.default_rng(0)
    hidden = jnp.asarray(rng.normal(size=(*BATCH, D)), jnp.float32)
    weight = jnp.asarray(rng.normal(size=(D, V)) * 0.8, jnp.float32)
    bias = jnp.asarray(rng.normal(size=(V,)), jnp.float32)
    labels = rng.integers(0, V, size=BATCH)
    labels[0, :4] = [0, 30, 60, 95]  # labels in every shard of every mesh
    labels[1, 0] = labels[2, 1] = 5  # ignore_index hits
    arrays = {
        "class_weights": jnp.asarray(rng.uniform(0.2, 3, size=(V,)), jnp.float32),
        "weights": jnp.asarray(rng.uniform(0, 2, size=BATCH), jnp.float32),
        "where": jnp.asarray(rng.uniform(size=BATCH) > 0.25),
        "cotangent": jnp.asarray(rng.normal(size=BATCH), jnp.float32),
    }
    return hidden, weight, bias, jnp.asarray(labels, jnp.int32), arrays


# name -> (static options, array options, bias used)
CASES = {
    "mean_everything": ({"ignore_index": 5, "label_smoothing": 0.2, "z_loss": 1e-3,
                         "logit_softcap": 3.0, "temperature": 0.8},
                        ("class_weights", "weights", "where"), True),
    "sum_no_bias": ({"label_smoothing": 0.1, "reduction": "sum"},
                    ("class_weights", "weights"), False),
    "none": ({"ignore_index": 5, "z_loss": 1e-3, "temperature": 1.3, "reduction": "none"},
             ("where",), True),
}


def _values_and_grads(hidden, weight, bias, labels, arrays, axes, psum_axis=None, cases=CASES):
    """{case: (value, (dhidden, dweight, dbias))} for ``cases`` and ``linear_log_probs``.

    ``axes`` are the head's ``vocab_axis`` / ``batch_axes`` (empty: unsharded);
    per-token outputs are reduced with the cotangent, and summed over
    ``psum_axis`` inside ``shard_map``.
    """
    out = {}
    total = (lambda x: x) if psum_axis is None else (lambda x: jax.lax.psum(x, psum_axis))
    for name in cases:
        options, array_names, use_bias = CASES[name]
        extra = {k: arrays[k] for k in array_names}

        def f(h, w, b, options=options, extra=extra):
            loss = jloss.linear_cross_entropy(h, w, labels, bias=b, block_size=BLOCK, **options,
                                              **extra, **axes)
            return total(jnp.sum(loss * arrays["cotangent"])) if loss.ndim else loss

        out[name] = jax.value_and_grad(f, argnums=(0, 1, 2) if use_bias else (0, 1))(
            hidden, weight, bias if use_bias else None)

    def log_probs(h, w, b):
        lp = jloss.linear_log_probs(h, w, labels, bias=b, temperature=0.7, logit_softcap=4.0,
                                    block_size=BLOCK, **axes)
        return total(jnp.sum(lp * arrays["cotangent"]))

    out["linear_log_probs"] = jax.value_and_grad(log_probs, argnums=(0, 1, 2))(hidden, weight, bias)
    return out


_AXES = {"vocab_axis": "model", "batch_axes": ("data",)}


@jax.jit
def _unsharded(hidden, weight, bias, labels, arrays):
    return _values_and_grads(hidden, weight, bias, labels, arrays, {})


def _in_shard_map(mesh):
    tokens, vocab = P("data"), P("model")
    array_specs = {"class_weights": vocab, "weights": tokens, "where": tokens,
                   "cotangent": tokens}
    grads = (P("data"), P(None, "model"), vocab)
    out_specs = {name: (P(), grads if CASES[name][2] else grads[:2]) for name in CASES}
    out_specs["linear_log_probs"] = (P(), grads)

    def local(h, w, b, y, arrays):
        return _values_and_grads(h, w, b, y, arrays, _AXES, psum_axis="data")

    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P("data"), P(None, "model"), vocab,
                                                              tokens, array_specs),
                                 out_specs=out_specs))


def _on_global_arrays(mesh):
    # one case (every option) keeps the compile short; the shard_map runs cover the others
    def run(h, w, b, y, arrays):
        with jax.set_mesh(mesh):
            return jax.jit(lambda *a: _values_and_grads(*a, _AXES, cases=["mean_everything"]))(
                h, w, b, y, arrays)
    return run


def _assert_close(actual, expected, rtol):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * 1e-2 * scale)


@pytest.mark.parametrize("mode", ["shard_map", "global"])
@pytest.mark.parametrize("shape", MESHES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_sharded_equals_unsharded(shape, mode):
    hidden, weight, bias, labels, arrays = _inputs()
    want = _unsharded(hidden, weight, bias, labels, arrays)
    if mode == "shard_map":
        mesh = jax.make_mesh(shape, ("data", "model"), axis_types=(AxisType.Auto,) * 2)
        got = _in_shard_map(mesh)(hidden, weight, bias, labels, arrays)
    else:
        mesh = jax.make_mesh(shape, ("data", "model"), axis_types=(AxisType.Explicit,) * 2)
        got = _on_global_arrays(mesh)(hidden, weight, bias, labels, arrays)
    jax.block_until_ready(got)
    for name, (got_value, got_grads) in got.items():
        value, grads = want[name]
        _assert_close(got_value, value, 1e-5)
        for which, g, w in zip(("hidden", "weight", "bias"), got_grads, grads, strict=False):
            assert g.shape == w.shape, (name, which)
            _assert_close(g, w, 1e-4)
        if mode == "global" and shape[1] > 1:
            assert got_grads[1].sharding.spec == P(None, "model"), name  # dweight stays sharded


def test_return_stats_and_none_on_global_arrays():
    hidden, weight, bias, labels, _ = _inputs()
    want_loss, want = jloss.linear_cross_entropy(hidden, weight, labels, bias=bias,
                                                 label_smoothing=0.1, reduction="none",
                                                 return_stats=True)
    mesh = jax.make_mesh((2, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
    with jax.set_mesh(mesh):
        loss, stats = jloss.linear_cross_entropy(hidden, weight, labels, bias=bias,
                                                 label_smoothing=0.1, reduction="none",
                                                 return_stats=True, block_size=BLOCK, **_AXES)
    assert loss.shape == labels.shape
    _assert_close(loss, want_loss, 1e-5)
    np.testing.assert_array_equal(stats["argmax"], want["argmax"])
    for name in ("logsumexp", "entropy", "label_logprob"):
        _assert_close(stats[name], want[name], 1e-5)


def test_bad_mesh_sizes():
    hidden, weight, _, labels, _ = _inputs()
    mesh = jax.make_mesh((1, 4), ("data", "model"))
    with jax.set_mesh(mesh), pytest.raises(ValueError, match="not divisible by the 4 devices"):
        jloss.linear_cross_entropy(hidden, weight[:, :-2], labels % 90, vocab_axis="model")
    with jax.set_mesh(mesh), pytest.raises(ValueError, match="batch_axes"):
        jloss.linear_cross_entropy(hidden, weight, labels, vocab_axis="model", batch_axes="rows")


# ---------------------------------------------------------------- the compiled program


def _compiled(n, d, v, fused, block=1024):
    mesh = jax.make_mesh((2, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
    with jax.set_mesh(mesh):
        def spec(shape, s, dtype=jnp.float32):
            return jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, s))

        args = (spec((n, d), P("data", None)), spec((d, v), P(None, "model")),
                spec((n,), P("data"), jnp.int32))
        if fused:
            def f(h, w, y):
                return jloss.linear_cross_entropy(h, w, y, block_size=block, **_AXES)
        else:
            def f(h, w, y):
                return jloss.sparse_categorical_cross_entropy(h @ w, y)
        return jax.jit(jax.value_and_grad(f, argnums=(0, 1))).lower(*args).compile()


def test_compiled_on_a_2x2_mesh_is_lean_and_never_gathers_the_weight():
    n, d = 2048, 512
    fused = {v: _compiled(n, d, v, fused=True) for v in (65536, 131072)}
    temp = {v: c.memory_analysis().temp_size_in_bytes for v, c in fused.items()}
    materialised = _compiled(n, d, 131072, fused=False).memory_analysis().temp_size_in_bytes
    assert materialised >= n // 2 * 131072 // 2 * 4  # one device's (N/2, V/2) logits
    assert temp[65536] == temp[131072], temp  # independent of V at a fixed block
    assert temp[131072] <= materialised / 10, (temp, materialised)
    for v, compiled in fused.items():
        found = collectives(compiled.as_text())
        assert found and not [c for c in found if c[0] == "all-gather"], found
        for kind, shapes, _ in found:
            for shape in shapes:  # O(tokens) statistics, (tokens, D) and (D, block) only
                assert not {v, v // 2} & set(shape), (v, kind, shapes)
        _, dweight = compiled.output_shardings[1]
        assert dweight.spec == P(None, "model")

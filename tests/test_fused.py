"""linear_cross_entropy: equal to sparse CE on materialised logits, without them."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jloss
from jloss.heads.linear_cross_entropy import (
    default_block_size,
    linear_cross_entropy,
    linear_log_probs,
)
from jloss.kernels import blocked_head

D, V = 16, 100  # V is not a multiple of the block sizes used below


def _inputs(batch=(3, 5), d=D, v=V, seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    hidden = jnp.asarray(rng.normal(size=(*batch, d)), dtype)
    weight = jnp.asarray(rng.normal(size=(d, v)) / np.sqrt(d) * 3, dtype)
    bias = jnp.asarray(rng.normal(size=(v,)), dtype)
    labels = jnp.asarray(rng.integers(0, v, size=batch), jnp.int32)
    return hidden, weight, bias, labels


def _reference(hidden, weight, labels, *, bias=None, block_size=None, logit_softcap=None,
               temperature=1.0, **options):
    del block_size
    logits = hidden @ weight
    if bias is not None:
        logits = logits + bias
    logits = logits / temperature
    if logit_softcap is not None:
        logits = logit_softcap * jnp.tanh(logits / logit_softcap)
    return jloss.sparse_categorical_cross_entropy(logits, labels, **options)


@functools.partial(jax.jit, static_argnames=("static",))
def _both(hidden, weight, bias, labels, cotangent, arrays, static):
    """Loss (as returned) and gradients of the fused loss and of the reference.

    ``arrays`` are the array-valued options, ``static`` the others as sorted
    items; compiling both functions as one program keeps the tests fast.
    """
    options = {**arrays, **dict(static)}
    argnums = (0, 1) if bias is None else (0, 1, 2)

    def run(fn):
        def scalar(h, w, b):
            out = fn(h, w, labels, bias=b, **options)
            return (jnp.sum(out * cotangent) if cotangent is not None else out), out

        (_, out), grads = jax.value_and_grad(scalar, argnums=argnums, has_aux=True)(
            hidden, weight, bias)
        return out, grads

    return run(linear_cross_entropy), run(_reference)


def _compare(hidden, weight, bias, labels, options, cotangent=None):
    arrays = {k: v for k, v in options.items() if isinstance(v, jax.Array)}
    static = tuple(sorted((k, v) for k, v in options.items() if k not in arrays))
    return _both(hidden, weight, bias, labels, cotangent, arrays, static)


_BATCH = (3, 5)
_rng = np.random.default_rng(1)
_WEIGHTS = jnp.asarray(_rng.uniform(0, 2, size=_BATCH), jnp.float32)
_WHERE = jnp.asarray(_rng.uniform(size=_BATCH) > 0.3)
_CLASS_WEIGHTS = jnp.asarray(_rng.uniform(0.2, 3, size=(V,)), jnp.float32)

# id -> (options, use bias): each option alone, then all together per reduction.
# V = 100: block 32 leaves a remainder block of 4, block 25 divides V.
CASES = {
    "default_block": ({}, True),
    "no_bias_ragged": ({"block_size": 32}, False),
    "block_1_ignore_index": ({"block_size": 1, "ignore_index": 7}, False),
    "label_smoothing": ({"label_smoothing": 0.2, "block_size": 32}, True),
    "z_loss_softcap": ({"z_loss": 1e-2, "logit_softcap": 2.5, "block_size": 32}, True),
    "weights_where_block_divides_V": ({"weights": _WEIGHTS[:1], "where": _WHERE,
                                       "block_size": 25}, True),
    "temperature_class_weights": ({"temperature": 0.7, "class_weights": _CLASS_WEIGHTS,
                                   "block_size": 32}, True),
    "temperature_softcap_class_weights_smoothing": ({
        "temperature": 1.6, "logit_softcap": 2.0, "class_weights": _CLASS_WEIGHTS,
        "label_smoothing": 0.2, "ignore_index": 7, "block_size": 48}, False),
    "everything_mean": ({"ignore_index": 7, "label_smoothing": 0.3, "z_loss": 1e-3,
                         "logit_softcap": 4.0, "weights": _WEIGHTS, "where": _WHERE,
                         "block_size": 32}, True),
    "everything_sum": ({"ignore_index": 7, "label_smoothing": 0.3, "z_loss": 1e-3,
                        "logit_softcap": 4.0, "weights": _WEIGHTS, "where": _WHERE,
                        "block_size": 48, "reduction": "sum"}, True),
    "everything_none": ({"ignore_index": 7, "label_smoothing": 0.3, "z_loss": 1e-3,
                         "logit_softcap": 4.0, "weights": _WEIGHTS, "where": _WHERE,
                         "block_size": 64, "reduction": "none"}, False),
}


def _assert_close(actual, expected, rtol):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * 1e-2 * scale)


@pytest.mark.parametrize("case", list(CASES))
def test_matches_materialised_sparse_ce(case):
    options, use_bias = CASES[case]
    hidden, weight, bias, labels = _inputs(_BATCH)
    labels = labels.at[0, 1].set(7).at[2, 3].set(7)  # some ignore_index hits
    bias = bias if use_bias else None
    cotangent = None
    if options.get("reduction") == "none":
        cotangent = jnp.asarray(np.random.default_rng(2).normal(size=_BATCH), jnp.float32)
    (got, got_grads), (want, want_grads) = _compare(hidden, weight, bias, labels, options,
                                                    cotangent)
    assert got.shape == want.shape and got.dtype == jnp.float32
    _assert_close(got, want, 1e-5)
    for g, w in zip(got_grads, want_grads, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        _assert_close(g, w, 1e-4)


def test_top_level_export():
    assert jloss.linear_cross_entropy is linear_cross_entropy
    assert jloss.linear_log_probs is linear_log_probs
    assert {"linear_cross_entropy", "linear_log_probs"} <= set(jloss.__all__)


def _log_softmax_reference(hidden, weight, labels, bias=None, temperature=1.0, logit_softcap=None):
    logits = (hidden @ weight + (0 if bias is None else bias)) / temperature
    if logit_softcap is not None:
        logits = logit_softcap * jnp.tanh(logits / logit_softcap)
    return jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], -1)[..., 0]


@jax.jit
def _log_probs_and_grads(hidden, weight, bias, labels, cotangent):
    options = {"temperature": 0.8, "logit_softcap": 3.0}

    def run(fn, **extra):
        def scalar(h, w, b):
            return jnp.sum(fn(h, w, labels, bias=b, **options, **extra) * cotangent)
        return fn(hidden, weight, labels, bias=bias, **options, **extra), jax.grad(
            scalar, argnums=(0, 1, 2))(hidden, weight, bias)

    return run(linear_log_probs, block_size=32), run(_log_softmax_reference)


def test_linear_log_probs_matches_log_softmax_in_value_and_gradient():
    hidden, weight, bias, labels = _inputs(_BATCH)
    cotangent = jnp.asarray(np.random.default_rng(3).normal(size=_BATCH), jnp.float32)
    (got, got_grads), (want, want_grads) = _log_probs_and_grads(hidden, weight, bias, labels,
                                                                cotangent)
    assert got.shape == labels.shape and np.all(np.asarray(got) <= 0)
    _assert_close(got, want, 1e-5)
    for g, w in zip(got_grads, want_grads, strict=True):
        _assert_close(g, w, 1e-4)
    # the negative of the unreduced cross-entropy, and -log(V) for a zero head
    ce = linear_cross_entropy(hidden, weight, labels, bias=bias, reduction="none")
    _assert_close(-linear_log_probs(hidden, weight, labels, bias=bias), ce, 1e-6)
    flat = linear_log_probs(hidden, jnp.zeros_like(weight), labels)
    np.testing.assert_allclose(np.asarray(flat), -np.log(V), rtol=1e-6)


def test_return_stats_against_numpy():
    hidden, weight, bias, labels = _inputs(_BATCH)
    where = _WHERE
    loss, stats = linear_cross_entropy(hidden, weight, labels, bias=bias, block_size=32,
                                       temperature=0.9, where=where, return_stats=True)
    assert float(loss) == float(linear_cross_entropy(hidden, weight, labels, bias=bias,
                                                     block_size=32, temperature=0.9, where=where))
    x = (np.asarray(hidden, np.float64) @ np.asarray(weight, np.float64)
         + np.asarray(bias, np.float64)) / 0.9
    lse = np.log(np.sum(np.exp(x), axis=-1))
    logp = x - lse[..., None]
    want = {"logsumexp": lse, "entropy": -np.sum(np.exp(logp) * logp, axis=-1),
            "argmax": np.argmax(x, axis=-1),
            "label_logprob": np.take_along_axis(logp, np.asarray(labels)[..., None], -1)[..., 0]}
    keep = np.asarray(where)
    assert set(stats) == set(want)
    for name, value in want.items():
        got = np.asarray(stats[name])
        assert got.shape == labels.shape, name
        np.testing.assert_allclose(got[keep], value[keep], rtol=1e-5, err_msg=name)
        assert np.all(got[~keep] == (-1 if name == "argmax" else 0)), name
    assert stats["argmax"].dtype == jnp.int32

    def stats_only(h):
        _, st = linear_cross_entropy(h, weight, labels, block_size=32, return_stats=True)
        return sum(jnp.sum(v) for k, v in st.items() if k != "argmax")

    assert float(jnp.max(jnp.abs(jax.grad(stats_only)(hidden)))) == 0.0  # no gradient


def test_infinite_softcap_is_no_cap():
    hidden, weight, bias, labels = _inputs(_BATCH)
    capped = jax.value_and_grad(lambda h: linear_cross_entropy(
        h, weight, labels, bias=bias, logit_softcap=float("inf")))(hidden)
    plain = jax.value_and_grad(lambda h: linear_cross_entropy(h, weight, labels, bias=bias))(hidden)
    for a, b in zip(capped, plain, strict=True):
        assert np.all(np.isfinite(np.asarray(a)))
        np.testing.assert_array_equal(a, b)


def test_token_chunks_match_one_pass(monkeypatch):
    # a tiny tile budget cuts the 15 rows into chunks of 8 (and a remainder of 7)
    monkeypatch.setattr(blocked_head, "TILE_BUDGET_BYTES", 4 * 32 * 8)
    assert blocked_head.row_block_size(15, 32) == 8
    hidden, weight, bias, labels = _inputs(_BATCH)
    options = {"block_size": 32, "label_smoothing": 0.1, "z_loss": 1e-3, "ignore_index": 7,
               "class_weights": _CLASS_WEIGHTS}
    (got, got_grads), (want, want_grads) = _compare(hidden, weight, bias, labels, options)
    _assert_close(got, want, 1e-5)
    for g, w in zip(got_grads, want_grads, strict=True):
        _assert_close(g, w, 1e-4)


def test_float64_gradients():
    options = {"block_size": 48, "label_smoothing": 0.3, "z_loss": 1e-2, "logit_softcap": 3.0}
    with jax.enable_x64(True):
        hidden, weight, bias, labels = _inputs((4,), d=6, v=70, dtype=jnp.float64)

        def f(h, w, b):
            return linear_cross_entropy(h, w, labels, bias=b, **options)

        assert f(hidden, weight, bias).dtype == jnp.float64
        check_grads(jax.jit(f), (hidden, weight, bias), order=1, modes=["rev"])
        _assert_close(f(hidden, weight, bias),
                      _reference(hidden, weight, labels, bias=bias, **options), 1e-12)


def test_bfloat16_inputs_accumulate_in_float32():
    hidden, weight, bias, labels = _inputs(_BATCH)
    half = [x.astype(jnp.bfloat16) for x in (hidden, weight, bias)]
    (loss, grads), (_, want_grads) = _compare(
        *half, labels, {"block_size": 32, "label_smoothing": 0.1})
    assert loss.dtype == jnp.float32
    assert [g.dtype for g in grads] == [jnp.bfloat16] * 3
    # the reference on bf16 inputs rounds its logits to bf16; ours are float32
    exact = [x.astype(jnp.float32) for x in half]
    np.testing.assert_allclose(
        float(loss), float(_reference(*exact[:2], labels, bias=exact[2], label_smoothing=0.1)),
        rtol=1e-5)
    # gradients: the logits' cotangent is rounded to bf16 (as in the materialised
    # path) before the float32-accumulated matmuls
    for g, w in zip(grads, want_grads, strict=True):
        w = np.asarray(w, np.float32)
        np.testing.assert_allclose(np.asarray(g, np.float32), w, rtol=2e-2,
                                   atol=2e-2 * np.max(np.abs(w)))


def test_large_logits_keep_precision():
    hidden, weight, _, labels = _inputs((6,))
    weight = weight * 1e5  # logits around 1e5..1e6: lse - x_y would cancel
    got = linear_cross_entropy(hidden, weight, labels, block_size=16, reduction="none",
                               label_smoothing=0.1)
    want = _reference(hidden, weight, labels, reduction="none", label_smoothing=0.1)
    _assert_close(got, want, 1e-5)


def test_minus_inf_bias_masks_classes():
    hidden, weight, bias, labels = _inputs(_BATCH)
    bias = bias.at[::3].set(-jnp.inf)  # whole blocks and single classes masked
    labels = jnp.where(labels % 3 == 0, labels + 1, labels)
    options = {"label_smoothing": 0.1, "z_loss": 1e-3, "block_size": 8}
    (loss, grads), (want, want_grads) = _compare(hidden, weight, bias, labels, options)
    assert np.isfinite(float(loss))
    _assert_close(loss, want, 1e-5)
    for g, w in zip(grads, want_grads, strict=True):
        assert np.all(np.isfinite(np.asarray(g)))
        _assert_close(g, w, 1e-4)


@jax.jit
def _masked_and_empty(hidden, weight, bias, labels, where):
    def f(h, w, b, where):
        return linear_cross_entropy(h, w, labels, bias=b, where=where, block_size=16)

    grad = jax.value_and_grad(f, argnums=(0, 1, 2))
    return grad(hidden, weight, bias, where), grad(hidden, weight, bias, jnp.zeros_like(where))


def test_masked_rows_leak_nothing_and_nothing_counted_is_zero():
    hidden, weight, bias, labels = _inputs(_BATCH)
    where = jnp.ones(_BATCH, bool).at[1].set(False)
    bad = hidden.at[1].set(jnp.nan)
    garbage = labels.at[1].set(10**6)  # never value-checked where masked
    (loss, grads), (empty, empty_grads) = _masked_and_empty(bad, weight, bias, garbage, where)
    (want, want_grads), _ = _masked_and_empty(hidden, weight, bias, labels, where)  # clean
    assert float(loss) == float(want)
    for g, w in zip(grads, want_grads, strict=True):
        np.testing.assert_array_equal(g, w)
    assert np.all(np.asarray(grads[0][1]) == 0)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)
    assert float(empty) == 0.0  # nothing counted: exactly 0 and a zero gradient
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in empty_grads)
    zero_rows = linear_cross_entropy(jnp.zeros((0, D)), weight, jnp.zeros((0,), jnp.int32),
                                     reduction="sum")
    assert float(zero_rows) == 0.0


def test_jit_traced_hyperparameters_and_bad_label_under_jit():
    hidden, weight, _, labels = _inputs(_BATCH)
    f = jax.jit(lambda s, y: linear_cross_entropy(hidden, weight, y, label_smoothing=s,
                                                  reduction="none", block_size=32))
    want = _reference(hidden, weight, labels, label_smoothing=0.1, reduction="none")
    _assert_close(f(0.1, labels), want, 1e-5)
    out = np.asarray(f(0.1, labels.at[0, 0].set(V)))
    assert np.isnan(out[0, 0]) and np.all(np.isfinite(out.reshape(-1)[1:]))


def test_vmap_and_tied_embedding():
    hidden, weight, _, labels = _inputs(_BATCH)
    table = weight.T  # (V, D) tied embedding, passed as table.T
    per_row = jax.vmap(lambda h, y: linear_cross_entropy(h, table.T, y, block_size=32))(hidden,
                                                                                        labels)
    want = jax.vmap(lambda h, y: _reference(h, weight, y))(hidden, labels)
    _assert_close(per_row, want, 1e-5)


# ---------------------------------------------------------------- memory


def _value_and_grad_compiled(n, d, v, block, bias=True):
    hidden = jax.ShapeDtypeStruct((n, d), jnp.float32)
    weight = jax.ShapeDtypeStruct((d, v), jnp.float32)
    b = jax.ShapeDtypeStruct((v,), jnp.float32) if bias else None
    labels = jnp.zeros((n,), jnp.int32)

    def f(h, w, b):
        return linear_cross_entropy(h, w, labels, bias=b, block_size=block, label_smoothing=0.1,
                                    z_loss=1e-4, logit_softcap=30.0)

    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2))).lower(hidden, weight, b).compile()


def _shapes_in(hlo):
    return set(re.findall(r"\[([0-9,]+)\]", hlo))


def test_scratch_memory_does_not_grow_with_vocabulary_and_no_logits_buffer():
    n, d, block = 96, 32, 128
    # full blocks plus a remainder block of 77 classes
    compiled = {v: _value_and_grad_compiled(n, d, v, block) for v in (1024 + 77, 16384 + 77)}
    temp = {v: c.memory_analysis().temp_size_in_bytes for v, c in compiled.items()}
    assert temp[1024 + 77] == temp[16384 + 77], temp
    assert temp[16384 + 77] < n * (16384 + 77) * 4 / 10, temp  # << one (N, V) array
    for v, c in compiled.items():
        shapes = _shapes_in(c.as_text())
        assert f"{n},{v}" not in shapes and f"{v},{n}" not in shapes, v
    # the check does see the logits of the materialised path
    labels = jnp.zeros((n,), jnp.int32)
    naive = jax.jit(jax.grad(lambda h, w: _reference(h, w, labels), argnums=(0, 1))).lower(
        jnp.zeros((n, d)), jnp.zeros((d, 1024))).compile()
    assert f"{n},1024" in _shapes_in(naive.as_text())
    assert naive.memory_analysis().temp_size_in_bytes >= n * 1024 * 4


def test_many_tokens_are_processed_in_chunks():
    # N = 65,536 tokens: the default block is the 256 minimum, and an (N, 256) tile alone would
    # be 64 MiB; the rows are cut into chunks of 4,096 (compile only, nothing allocated)
    n, d, v = 65536, 512, 32768
    assert blocked_head.row_block_size(n, default_block_size(n, v)) == 4096
    hidden = jax.ShapeDtypeStruct((n, d), jnp.float32)
    weight = jax.ShapeDtypeStruct((d, v), jnp.float32)
    labels = jax.ShapeDtypeStruct((n,), jnp.int32)

    def scratch(f):
        compiled = jax.jit(jax.value_and_grad(f, argnums=(0, 1))).lower(hidden, weight, labels)
        return compiled.compile().memory_analysis().temp_size_in_bytes

    fused = scratch(linear_cross_entropy)
    materialised = scratch(lambda h, w, y: jloss.sparse_categorical_cross_entropy(h @ w, y))
    assert materialised >= n * v * 4
    assert fused <= materialised / 20, (fused, materialised)


# ------------------------------------------------------ block size and checks


def test_default_block_size_rule():
    assert default_block_size(2048, 32768) == 512
    assert default_block_size(8192, 32768) == 256  # clamped below
    assert default_block_size(16, 50257) == 4096  # clamped above
    assert default_block_size(100, 100) == 100  # never above V
    assert default_block_size(0, 1000) == 1000 and default_block_size(4096, 300) == 256
    for n, v in [(1, 10**6), (777, 32000), (10**5, 10**5)]:
        b = default_block_size(n, v)
        assert b % 128 == 0 and 256 <= b <= 4096


@pytest.mark.parametrize("call, error, match", [
    (lambda h, w, b, y: linear_cross_entropy(h, w[:-1], y), ValueError, r"weight has shape"),
    (lambda h, w, b, y: linear_cross_entropy(h, w, y, bias=b[:-1]), ValueError,
     r"bias has shape \(99,\)"),
    (lambda h, w, b, y: linear_cross_entropy(h, w, y[:, :-1]), ValueError,
     r"labels has shape \(3, 4\)"),
    (lambda h, w, b, y: linear_cross_entropy(h, w, y.astype(jnp.float32)), TypeError,
     "integer"),
    (lambda h, w, b, y: linear_cross_entropy(h.astype(jnp.int32), w, y), TypeError, "hidden"),
    (lambda h, w, b, y: linear_cross_entropy(h, w, y, reduction="avg"), ValueError,
     "reduction"),
    (lambda h, w, b, y: linear_cross_entropy(h, w, y, label_smoothing=1.5), ValueError,
     "label_smoothing"),
    (lambda h, w, b, y: linear_cross_entropy(h, w, y, z_loss=-1.0), ValueError, "z_loss"),
    (lambda h, w, b, y: linear_cross_entropy(h, w, y, logit_softcap=0.0), ValueError,
     "logit_softcap"),
    (lambda h, w, b, y: linear_cross_entropy(h, w, y, block_size=0), ValueError, "block_size"),
    (lambda h, w, b, y: linear_cross_entropy(h, w, y, temperature=0.0), ValueError,
     "temperature"),
    (lambda h, w, b, y: linear_log_probs(h, w, y, temperature=-1.0), ValueError, "temperature"),
    (lambda h, w, b, y: linear_cross_entropy(h, w, y, class_weights=b[:-1]), ValueError,
     r"class_weights has shape \(99,\)"),
    (lambda h, w, b, y: linear_cross_entropy(h, w, y, class_weights=b), ValueError,
     "class_weights must be non-negative"),
    (lambda h, w, b, y: linear_cross_entropy(h, w, y, vocab_axis="model"), ValueError,
     "vocab_axis='model'.*jax.shard_map"),
    (lambda h, w, b, y: linear_log_probs(h, w, y.at[0, 0].set(V)), jloss.LossInputError,
     r"\[0, 100\)"),
    (lambda h, w, b, y: linear_cross_entropy(h, w, y, block_size=2.5), ValueError,
     "block_size"),
    (lambda h, w, b, y: linear_cross_entropy(h, w, y, weights=jnp.ones((4,))), ValueError,
     "weights"),
    (lambda h, w, b, y: linear_cross_entropy(h, w, y.at[0, 0].set(V)), jloss.LossInputError,
     r"\[0, 100\)"),
    (lambda h, w, b, y: linear_cross_entropy(h, w, y.at[0, 0].set(-1)), jloss.LossInputError,
     "labels"),
])
def test_bad_inputs(call, error, match):
    hidden, weight, bias, labels = _inputs(_BATCH)
    with pytest.raises(error, match=match):
        call(hidden, weight, bias, labels)


def test_ignored_and_masked_labels_are_not_value_checked():
    hidden, weight, _, labels = _inputs(_BATCH)
    where = jnp.ones(_BATCH, bool).at[0, 1].set(False)
    labels = labels.at[0, 0].set(-100).at[0, 1].set(V + 5)
    linear_cross_entropy(hidden, weight, labels, ignore_index=-100, where=where)
    with pytest.raises(jloss.LossInputError, match="labels"):
        jloss.checked(linear_cross_entropy)(hidden, weight, labels.at[0, 0].set(V))

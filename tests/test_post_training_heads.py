"""The fused post-training paths against the same losses on materialised logits.

A DPO step through ``linear_log_probs`` and the distillation heads
(``linear_kl_divergence``, ``linear_jensen_shannon``): values and gradients of
every hidden state and head, the teacher's stop_gradient, vocabulary
parallelism on a 2x2 CPU mesh, and the compiled scratch memory at
N = 8,192 tokens, D = 512, V = 32,768 (compile only).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

import jloss

N_SHAPE, DS, DT, V = (2, 5), 4, 6, 37


def _problem(seed=0, dtype=jnp.float64, bias=True):
    ks = jax.random.split(jax.random.key(seed), 6)
    hs = jax.random.normal(ks[0], (*N_SHAPE, DS), dtype)
    ws = jax.random.normal(ks[1], (DS, V), dtype)
    ht = jax.random.normal(ks[2], (*N_SHAPE, DT), dtype)
    wt = 1.5 * jax.random.normal(ks[3], (DT, V), dtype)
    bs = jax.random.normal(ks[4], (V,), dtype) if bias else None
    bt = jax.random.normal(ks[5], (V,), dtype) if bias else None
    return hs, ws, bs, ht, wt, bt


def _logits(h, w, b, temperature):
    z = h @ w
    return (z if b is None else z + b) / temperature


def materialised_kl(hs, ws, bs, ht, wt, bt, *, temperature=1.0, direction="forward", **kw):
    s, t = _logits(hs, ws, bs, temperature), _logits(ht, wt, bt, temperature)
    if direction == "forward":
        return jloss.kl_divergence(s, jax.nn.softmax(t), **kw)
    return jloss.kl_divergence(t, jax.nn.softmax(s), **kw)


def materialised_jsd(hs, ws, bs, ht, wt, bt, *, beta=0.5, temperature=1.0, weights=None, where=None,
                     reduction="mean"):
    log_s = jax.nn.log_softmax(_logits(hs, ws, bs, temperature))
    log_t = jax.nn.log_softmax(_logits(ht, wt, bt, temperature))
    log_m = jnp.logaddexp(log_t + jnp.log(beta), log_s + jnp.log1p(-beta))
    per_token = (beta * jnp.sum(jnp.exp(log_t) * (log_t - log_m), -1)
                 + (1 - beta) * jnp.sum(jnp.exp(log_s) * (log_s - log_m), -1))
    m = jnp.ones(per_token.shape, bool) if where is None else where
    w = jnp.ones(per_token.shape) if weights is None else weights
    total = jnp.sum(jnp.where(m, w * per_token, 0))
    if reduction == "none":
        return jnp.where(m, w * per_token, 0)
    return total if reduction == "sum" else total / jnp.sum(jnp.where(m, w, 0))


def fused_kl(hs, ws, bs, ht, wt, bt, **kw):
    return jloss.linear_kl_divergence(hs, ws, ht, wt, student_bias=bs, teacher_bias=bt, block_size=8, **kw)


def fused_jsd(hs, ws, bs, ht, wt, bt, **kw):
    return jloss.linear_jensen_shannon(hs, ws, ht, wt, student_bias=bs, teacher_bias=bt, block_size=8,
                                       **kw)


MASK = np.arange(10).reshape(N_SHAPE) % 4 != 2
WEIGHTS = np.linspace(0.5, 2.0, 10).reshape(N_SHAPE)
CASES = [
    ("kl", {}),
    ("kl", {"temperature": 2.0, "where": MASK, "weights": WEIGHTS}),
    ("kl", {"direction": "reverse", "temperature": 0.7, "reduction": "sum", "where": MASK}),
    ("jsd", {}),
    ("jsd", {"beta": 0.2, "temperature": 1.5, "reduction": "sum", "where": MASK, "weights": WEIGHTS}),
]


@pytest.mark.parametrize(("kind", "opts"), CASES, ids=[f"{k}-{sorted(o)}" for k, o in CASES])
def test_distillation_equals_materialised_logits(kind, opts):
    fused, ref = (fused_kl, materialised_kl) if kind == "kl" else (fused_jsd, materialised_jsd)
    with jax.enable_x64(True):
        args = _problem()
        kw = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in opts.items()}
        v_f, g_f = jax.value_and_grad(lambda *a: fused(*a, **kw), argnums=range(6))(*args)
        v_r, g_r = jax.value_and_grad(lambda *a: ref(*a, **kw), argnums=range(6))(*args)
        np.testing.assert_allclose(v_f, v_r, rtol=1e-10)
        for name, a, b in zip(("dhs", "dws", "dbs", "dht", "dwt", "dbt"), g_f, g_r, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12, err_msg=name)
        none = fused(*args, **dict(kw, reduction="none"))
        np.testing.assert_allclose(none, ref(*args, **dict(kw, reduction="none")), rtol=1e-10, atol=1e-14)


def test_masked_tokens_never_leak_nan_and_the_teacher_gets_no_gradient():
    hs, ws, _, ht, wt, _ = _problem(1, jnp.float32)
    hs = hs.at[0, 2].set(jnp.nan)
    ht = ht.at[0, 2].set(jnp.inf)
    where = jnp.ones(N_SHAPE, bool).at[0, 2].set(False)

    def loss(hs, ws, ht, wt, fn):
        ht, wt = jax.lax.stop_gradient(ht), jax.lax.stop_gradient(wt)
        return fn(hs, ws, None, ht, wt, None, where=where)

    for fn in (fused_kl, fused_jsd):
        value, grads = jax.value_and_grad(loss, argnums=range(4))(hs, ws, ht, wt, fn)
        assert np.isfinite(float(value))
        assert all(np.all(np.isfinite(g)) for g in grads)
        assert np.all(np.asarray(grads[0])[0, 2] == 0)
        assert np.all(np.asarray(grads[2]) == 0) and np.all(np.asarray(grads[3]) == 0)
        ref = (materialised_kl if fn is fused_kl else materialised_jsd)(
            hs, ws, None, ht, wt, None, where=where)
        np.testing.assert_allclose(value, ref, rtol=2e-5)


def test_identical_heads_have_zero_divergence():
    hs, ws, bs, *_ = _problem(2, jnp.float32)
    for fn in (fused_kl, fused_jsd):
        value = fn(hs, ws, bs, hs, ws, bs, reduction="none")
        np.testing.assert_allclose(value, 0.0, atol=2e-6)


def test_vocab_parallel_on_a_2x2_mesh_equals_one_device():
    mesh = jax.make_mesh((2, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
    hs, ws, bs, ht, wt, bt = _problem(3, jnp.float32)
    hs, ht = hs.reshape(10, DS)[:8], ht.reshape(10, DT)[:8]  # 8 tokens: 4 per data shard
    ws, wt, bs, bt = ws[:, :36], wt[:, :36], bs[:36], bt[:36]  # V = 36: 18 per model shard
    where = jnp.arange(8) % 3 != 1
    tok, voc = P("data"), P("model")
    specs = (P("data", None), P(None, "model"), voc, P("data", None), P(None, "model"), voc, tok)
    for fn, opts in ((fused_kl, {"temperature": 1.5, "direction": "reverse"}), (fused_jsd, {"beta": 0.3})):
        def local(hs, ws, bs, ht, wt, bt, where, fn=fn, opts=opts):
            return fn(hs, ws, bs, ht, wt, bt, where=where, vocab_axis="model", batch_axes="data", **opts)

        sharded = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P()))
        args = (hs, ws, bs, ht, wt, bt, where)
        v_sh, g_sh = jax.block_until_ready(jax.value_and_grad(sharded, argnums=range(6))(*args))
        v_one, g_one = jax.value_and_grad(lambda *a, fn=fn, opts=opts: fn(*a, where=where, **opts),
                                          argnums=range(6))(hs, ws, bs, ht, wt, bt)
        np.testing.assert_allclose(v_sh, v_one, rtol=1e-5)
        for a, b in zip(g_sh, g_one, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------ DPO through linear_log_probs


def _dpo_fused(h, w, labels, mask, ref_logps):
    logp = jloss.sequence_log_probs(jloss.linear_log_probs(h, w, labels), mask)
    chosen, rejected = logp[0::2], logp[1::2]
    return jloss.dpo(chosen, rejected, ref_logps[0], ref_logps[1], beta=0.1)


def _dpo_materialised(h, w, labels, mask, ref_logps):
    log_probs = jax.nn.log_softmax(h @ w)
    token = jnp.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    logp = jnp.sum(jnp.where(mask, token, 0), -1)
    chosen, rejected = logp[0::2], logp[1::2]
    return jloss.dpo(chosen, rejected, ref_logps[0], ref_logps[1], beta=0.1)


def test_dpo_on_linear_log_probs_equals_materialised_logits():
    with jax.enable_x64(True):
        ks = jax.random.split(jax.random.key(4), 3)
        b, t, d, v = 4, 6, 8, 50  # 2 pairs of sequences
        h = jax.random.normal(ks[0], (b, t, d), jnp.float64)
        w = jax.random.normal(ks[1], (d, v), jnp.float64)
        labels = jax.random.randint(ks[2], (b, t), 0, v)
        mask = jnp.arange(t)[None, :] < jnp.array([6, 3, 5, 2])[:, None]
        ref_logps = (jnp.array([-20.0, -18.0]), jnp.array([-21.0, -16.0]))
        v_f, g_f = jax.value_and_grad(_dpo_fused, argnums=(0, 1))(h, w, labels, mask, ref_logps)
        v_m, g_m = jax.value_and_grad(_dpo_materialised, argnums=(0, 1))(h, w, labels, mask, ref_logps)
        np.testing.assert_allclose(v_f, v_m, rtol=1e-12)
        for a, c in zip(g_f, g_m, strict=True):
            np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-14)


# ------------------------------------------------------------ compiled scratch memory

N, D, VOCAB = 8192, 512, 32768



def _distill_grad(fn):
    def step(hs, ws, ht, wt):
        def loss(hs, ws):
            return fn(hs, ws, jax.lax.stop_gradient(ht), jax.lax.stop_gradient(wt))
        return jax.grad(loss, argnums=(0, 1))(hs, ws)
    return step


@pytest.mark.parametrize("kind", ["dpo", "kl", "kl-reverse-T", "jsd"])
def test_fused_scratch_is_a_tenth_of_materialised(kind):
    if kind == "dpo":
        def spec(fn):
            def step(h, w, labels, mask):
                ref = (jnp.zeros(N // 32), jnp.zeros(N // 32))
                return jax.grad(fn, argnums=(0, 1))(h, w, labels, mask, ref)
            return step
        specs = [jax.ShapeDtypeStruct((N // 16, 16, D), jnp.float32),
                 jax.ShapeDtypeStruct((D, VOCAB), jnp.float32),
                 jax.ShapeDtypeStruct((N // 16, 16), jnp.int32), jax.ShapeDtypeStruct((N // 16, 16), bool)]
        fused, dense = spec(_dpo_fused), spec(_dpo_materialised)
    else:
        opts = {"direction": "reverse", "temperature": 2.0} if kind == "kl-reverse-T" else {}
        fused_fn, dense_fn = (jloss.linear_jensen_shannon, materialised_jsd) if kind == "jsd" else (
            jloss.linear_kl_divergence, materialised_kl)
        specs = [jax.ShapeDtypeStruct(s, jnp.float32) for s in ((N, D), (D, VOCAB), (N, D), (D, VOCAB))]
        fused = _distill_grad(lambda hs, ws, ht, wt: fused_fn(hs, ws, ht, wt, **opts))
        dense = _distill_grad(lambda hs, ws, ht, wt: dense_fn(hs, ws, None, ht, wt, None, **opts))
    fused, dense = (jax.jit(f).lower(*specs).compile().memory_analysis().temp_size_in_bytes
                    for f in (fused, dense))
    assert dense >= N * VOCAB * 4  # the materialised path holds at least one (N, V) float32 array
    assert fused <= dense / 10, (fused, dense)


def test_bad_inputs_raise_naming_the_argument():
    hs, ws, _, ht, wt, bt = _problem(5, jnp.float32)
    with pytest.raises(ValueError, match="direction"):
        jloss.linear_kl_divergence(hs, ws, ht, wt, direction="both")
    with pytest.raises(ValueError, match="teacher_weight"):
        jloss.linear_kl_divergence(hs, ws, ht, wt[:, :5])
    with pytest.raises(ValueError, match="student_hidden and teacher_hidden"):
        jloss.linear_kl_divergence(hs, ws, ht[:1], wt)
    with pytest.raises(ValueError, match="student_weight"):
        jloss.linear_kl_divergence(hs, ws.T, ht, wt)
    with pytest.raises(ValueError, match="temperature"):
        jloss.linear_kl_divergence(hs, ws, ht, wt, temperature=0.0)
    with pytest.raises(ValueError, match="beta"):
        jloss.linear_jensen_shannon(hs, ws, ht, wt, beta=1.0)
    with pytest.raises(ValueError, match="teacher_bias"):
        jloss.linear_jensen_shannon(hs, ws, ht, wt, teacher_bias=bt[:3])
    with pytest.raises(TypeError, match="student_hidden"):
        jloss.linear_kl_divergence(hs.astype(jnp.int32), ws, ht, wt)
    with pytest.raises(ValueError, match="vocab_axis"):
        jloss.linear_kl_divergence(hs, ws, ht, wt, vocab_axis="model")
    with pytest.raises(ValueError, match="block_size"):
        jloss.linear_kl_divergence(hs, ws, ht, wt, block_size=0)

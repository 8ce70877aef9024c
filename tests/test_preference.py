"""Preference losses (dpo, orpo, simpo, cpo, kto) and sequence_log_probs against float64 NumPy
references written from TRL's / the papers' definitions; gradients against central differences
of those references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import ref_cpo, ref_dpo, ref_kto, ref_orpo, ref_simpo, sigmoid

import jloss

B = 6


def _logps(rng, n_args, low=-30.0, high=-2.0):
    return [rng.uniform(low, high, B) for _ in range(n_args)]


def _num_grad(f, args, eps=1e-6):
    """Central differences of a float64 NumPy scalar function, for each float argument."""
    out = []
    for i, a in enumerate(args):
        g = np.zeros_like(a)
        for j in range(a.size):
            up = [x.copy() for x in args]
            dn = [x.copy() for x in args]
            up[i].flat[j] += eps
            dn[i].flat[j] -= eps
            g.flat[j] = (f(*up) - f(*dn)) / (2 * eps)
        out.append(g)
    return out


def _check(fn, ref, args, opts, extra=(), weights=None, where=None):
    """Values (none / sum / mean) and gradients of every float arg, weighted and masked."""
    rng = np.random.default_rng(1)
    w = rng.uniform(0.5, 2.0, B) if weights is None else weights
    m = np.arange(B) % 3 != 1 if where is None else where

    def ref_mean(*a):
        loss = ref(*a, *extra, **opts)
        return np.sum(np.where(m, w * loss, 0)) / np.sum(np.where(m, w, 0))

    with jax.enable_x64(True):
        jargs = [jnp.asarray(a) for a in args]
        jextra = [jnp.asarray(e) for e in extra]
        none = fn(*jargs, *jextra, **opts, reduction="none")
        np.testing.assert_allclose(none, ref(*args, *extra, **opts), rtol=1e-10, atol=1e-12)
        summed = fn(*jargs, *jextra, **opts, weights=w, where=m, reduction="sum")
        np.testing.assert_allclose(summed, np.sum(np.where(m, w * ref(*args, *extra, **opts), 0)),
                                   rtol=1e-10)

        def mean(*a):
            return fn(*a, *jextra, **opts, weights=jnp.asarray(w), where=jnp.asarray(m))

        value, grads = jax.value_and_grad(mean, argnums=tuple(range(len(args))))(*jargs)
        np.testing.assert_allclose(value, ref_mean(*args), rtol=1e-10)
        for g, g_ref in zip(grads, _num_grad(ref_mean, args), strict=True):
            np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-8)
            assert np.all(np.asarray(g)[~m] == 0)


# the registry (tests/_registry.py) runs the generic convention tests over the default options;
# here every loss_type and option is checked with weights, a mask and gradients
DPO_OPTIONS = [{"beta": 0.5}, {"loss_type": "hinge", "beta": 0.05}, {"loss_type": "ipo", "beta": 0.3},
               {"loss_type": "robust", "beta": 0.7, "label_smoothing": 0.3}]


@pytest.mark.parametrize("opts", DPO_OPTIONS, ids=str)
def test_dpo_matches_trl_definitions(opts):
    _check(jloss.dpo, ref_dpo, _logps(np.random.default_rng(0), 4), opts)


@pytest.mark.parametrize("opts", [{"beta": 1.0, "chosen_nll": "per pair"}], ids=str)
def test_orpo_matches_trl_definition(opts):
    rng = np.random.default_rng(2)
    args = _logps(rng, 2, -3.0, -0.05)  # length-normalised: mean per-token log-probabilities
    if opts.get("chosen_nll"):
        opts = dict(opts, chosen_nll=rng.uniform(0.5, 2.0, B))
    _check(jloss.orpo, ref_orpo, args, opts)


@pytest.mark.parametrize("opts", [{"beta": 2.5, "gamma": 1.0, "label_smoothing": 0.1}], ids=str)
def test_simpo_matches_paper(opts):
    _check(jloss.simpo, ref_simpo, _logps(np.random.default_rng(3), 2, -3.0, -0.1), opts)


@pytest.mark.parametrize("opts", [{"label_smoothing": 0.2}, {"loss_type": "hinge"},
                                  {"alpha": 0.5, "chosen_nll": "per pair"}], ids=str)
def test_cpo_matches_trl_definition(opts):
    rng = np.random.default_rng(4)
    args = _logps(rng, 2, -12.0, -2.0)
    if opts.get("chosen_nll"):
        opts = dict(opts, chosen_nll=rng.uniform(0.5, 2.0, B))
    _check(jloss.cpo, ref_cpo, args, opts)


@pytest.mark.parametrize("opts", [{"beta": 0.5, "desirable_weight": 1.33, "undesirable_weight": 0.7},
                                  {"kl": True}], ids=str)
def test_kto_matches_trl_definition(opts):
    rng = np.random.default_rng(5)
    args = _logps(rng, 2, -12.0, -2.0)
    desirable = np.array([True, False, True, True, False, False])
    if opts.get("kl"):
        opts = {"policy_kl_logps": rng.uniform(-10, -2, 4), "reference_kl_logps": rng.uniform(-14, -6, 4)}
        assert np.mean(opts["policy_kl_logps"] - opts["reference_kl_logps"]) > 0
    _check(jloss.kto, ref_kto, args, opts, extra=(desirable,))
    ints = jloss.kto(*map(jnp.asarray, args), jnp.asarray(desirable, jnp.int32), **opts, reduction="none")
    np.testing.assert_allclose(ints, ref_kto(*args, desirable, **opts), rtol=1e-5)


def test_kto_reference_point_is_clamped_and_carries_no_gradient():
    p, r = jnp.array([-5.0, -6.0]), jnp.array([-5.5, -5.0])
    desirable = jnp.array([True, False])

    def loss(pk):
        return jloss.kto(p, r, desirable, policy_kl_logps=pk, reference_kl_logps=jnp.array([-3.0, -4.0]))

    assert np.all(np.asarray(jax.grad(loss)(jnp.array([-1.0, -2.0]))) == 0)
    # a negative KL estimate is clamped to 0: the same loss as no estimate
    below = loss(jnp.array([-9.0, -9.0]))
    np.testing.assert_allclose(below, jloss.kto(p, r, desirable), rtol=1e-6)


def test_sequence_log_probs_padded_sequences_of_different_lengths():
    rng = np.random.default_rng(6)
    lengths = np.array([5, 1, 3, 0])
    logp = -rng.uniform(0.1, 3.0, (4, 5))
    mask = np.arange(5)[None, :] < lengths[:, None]
    logp_nan = np.where(mask, logp, np.nan)  # padding holds garbage
    ref_sum = np.sum(np.where(mask, logp, 0), axis=1)
    ref_mean = np.where(lengths > 0, ref_sum / np.maximum(lengths, 1), 0)
    with jax.enable_x64(True):
        x = jnp.asarray(logp_nan)
        np.testing.assert_allclose(jloss.sequence_log_probs(x, mask), ref_sum, rtol=1e-12)
        np.testing.assert_allclose(jloss.sequence_log_probs(x, jnp.asarray(mask, jnp.int32), average=True),
                                   ref_mean, rtol=1e-12)
        g = jax.grad(lambda t: jnp.sum(jloss.sequence_log_probs(t, mask, average=True)))(x)
        np.testing.assert_allclose(g, np.where(mask, 1 / np.maximum(lengths, 1)[:, None], 0))


def test_preference_losses_on_sequences_end_to_end():
    """dpo(sequence_log_probs(...)) of padded sequences equals the reference on the sums."""
    rng = np.random.default_rng(7)
    tokens = [-rng.uniform(0.1, 2.0, (B, 7)) for _ in range(4)]
    masks = [np.arange(7)[None, :] < rng.integers(1, 8, B)[:, None] for _ in range(4)]
    seqs = [np.sum(np.where(m, t, 0), axis=1) for t, m in zip(tokens, masks, strict=True)]
    with jax.enable_x64(True):
        def loss(*ts):
            s = [jloss.sequence_log_probs(t, m) for t, m in zip(ts, masks, strict=True)]
            return jloss.dpo(*s, beta=0.2)

        value, grads = jax.value_and_grad(loss, argnums=(0, 1))(*map(jnp.asarray, tokens))
        np.testing.assert_allclose(value, np.mean(ref_dpo(*seqs, beta=0.2)), rtol=1e-10)
        u = (seqs[0] - seqs[1]) - (seqs[2] - seqs[3])
        d_margin = -0.2 * sigmoid(-0.2 * u) / B  # d mean(-log sigmoid(beta u)) / du
        np.testing.assert_allclose(grads[0], np.where(masks[0], d_margin[:, None], 0), rtol=1e-9)
        np.testing.assert_allclose(grads[1], np.where(masks[1], -d_margin[:, None], 0), rtol=1e-9)


def test_half_precision_inputs_compute_in_float32():
    c, r = jnp.array([-1.0, -2.0], jnp.bfloat16), jnp.array([-2.0, -1.5], jnp.bfloat16)
    assert jloss.simpo(c, r).dtype == jnp.float32
    g = jax.grad(lambda c: jloss.cpo(c, r))(c)
    assert g.dtype == jnp.bfloat16


def test_masked_pairs_never_leak_nan():
    c = jnp.array([-1.0, jnp.nan, 0.0])
    r = jnp.array([-2.0, jnp.nan, jnp.nan])
    where = jnp.array([True, False, False])
    for fn in (jloss.orpo, jloss.simpo, jloss.cpo):
        value, g = jax.value_and_grad(lambda c, fn=fn: fn(c, r, where=where))(c)
        assert np.isfinite(float(value)) and np.all(np.isfinite(g)) and np.all(np.asarray(g)[1:] == 0)
    assert float(jloss.dpo(c, r, c, r, where=jnp.zeros(3, bool))) == 0.0


def test_bad_inputs_raise_naming_the_argument():
    x = jnp.zeros(3) - 1.0
    with pytest.raises(ValueError, match="loss_type"):
        jloss.dpo(x, x, x, x, loss_type="kto")
    with pytest.raises(ValueError, match="beta"):
        jloss.dpo(x, x, x, x, beta=0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        jloss.dpo(x, x, x, x, loss_type="robust", label_smoothing=0.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        jloss.dpo(x, x, x, x, loss_type="ipo", label_smoothing=0.1)
    with pytest.raises(ValueError, match=r"policy_rejected.*\(4,\)"):
        jloss.dpo(x, jnp.zeros(4), x, x)
    with pytest.raises(TypeError, match="chosen_logps"):
        jloss.simpo(jnp.zeros(3, jnp.int32), x)
    with pytest.raises(ValueError, match="reduction"):
        jloss.orpo(x, x, reduction="avg")
    with pytest.raises(ValueError, match="alpha"):
        jloss.cpo(x, x, alpha=-1.0)
    with pytest.raises(ValueError, match="together"):
        jloss.kto(x, x, jnp.ones(3, bool), policy_kl_logps=x)
    with pytest.raises(TypeError, match="desirable"):
        jloss.kto(x, x, jnp.ones(3))
    with pytest.raises(jloss.LossInputError, match="desirable"):
        jloss.kto(x, x, jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match="token_logprobs and mask"):
        jloss.sequence_log_probs(jnp.zeros((2, 3)), jnp.ones((2, 4), bool))
    with pytest.raises(TypeError, match="mask"):
        jloss.sequence_log_probs(jnp.zeros((2, 3)), jnp.ones((2, 3)))


def test_compiled_gradient_writes_no_batch_sized_scratch():
    """Without smoothing, weights or mask, value-and-grad compiles to the bare formula: nothing of
    the batch's size is written besides the gradient (a 0 * z smoothing term, a mask select per
    input or a second sigmoid in KTO each cost one); with where and weights, the mean's
    denominator reuses the masked weights (two batch-sized buffers, as the bare formula's)."""
    b = 4096
    x, desirable = jnp.linspace(-3.0, -0.1, b), jnp.arange(b) % 2 == 0

    def scratch(loss, *args):
        return jax.jit(jax.value_and_grad(loss)).lower(*args).compile().memory_analysis().temp_size_in_bytes

    for loss, args in ((jloss.dpo, (x, x[::-1], x, x)), (jloss.simpo, (x, x[::-1])),
                       (jloss.cpo, (x, x[::-1])), (jloss.kto, (x, x[::-1], desirable))):
        assert scratch(loss, *args) < b * 4, loss.__name__
    weighted = scratch(lambda c, r, w: jloss.cpo(c, r, weights=w, where=desirable), x, x[::-1], x + 4)
    assert weighted < 3 * b * 4

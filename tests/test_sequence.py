"""CTC: equal to optax and torch in value and gradient, lengths, blank_id, repeats,
impossible alignments, torch's mean, stability at T = 1,000 and K = 5,000, errors.

The convention (weights, where, reductions, dtypes, transforms) runs in the generic
tests from the registry row; this file covers what only CTC has.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _registry import ctc_nll, log_softmax

import jloss

B, T, K, S = 5, 12, 6, 4


def _inputs(blank_id=0, seed=0):
    """Batch with varied lengths, a repeated label, labels avoiding the blank."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(B, T, K))
    symbols = np.array([k for k in range(K) if k != blank_id])
    labels = rng.choice(symbols, size=(B, S))
    labels[0, 1] = labels[0, 0]  # a repeat: needs a blank between the copies
    logit_lengths = np.array([12, 10, 7, 12, 9])
    label_lengths = np.array([4, 3, 2, 0, 4])
    return logits, labels, logit_lengths, label_lengths


def _paddings(logit_lengths, label_lengths):
    return ((np.arange(T)[None] >= logit_lengths[:, None]).astype(np.float64),
            (np.arange(S)[None] >= label_lengths[:, None]).astype(np.float64))


@pytest.mark.parametrize("blank_id", [0, 3, K - 1])
def test_equals_optax_values_and_gradients(blank_id, x64):
    logits, labels, frames, units = _inputs(blank_id)
    w = np.random.default_rng(1).uniform(0.5, 2.0, size=B)

    def ours(x):
        return jloss.ctc(x, jnp.asarray(labels), logit_lengths=jnp.asarray(frames),
                         label_lengths=jnp.asarray(units), blank_id=blank_id, reduction="none")

    logit_paddings, label_paddings = _paddings(frames, units)

    def theirs(x):
        return optax.ctc_loss(x, logit_paddings, labels, label_paddings, blank_id=blank_id)

    v, g = jax.jit(lambda x: (ours(x), jax.grad(lambda x: jnp.sum(w * ours(x)))(x)))(logits)
    v_ref, g_ref = theirs(logits), jax.grad(lambda x: jnp.sum(w * theirs(x)))(logits)
    np.testing.assert_allclose(np.asarray(v), np.asarray(v_ref), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-8, atol=1e-12)
    # and the float64 forward recursion of the registry, sequence by sequence
    logp = log_softmax(logits)
    expected = [ctc_nll(lp[:f], y[:u], blank_id) for lp, y, f, u in zip(logp, labels, frames, units,
                                                                         strict=True)]
    np.testing.assert_allclose(np.asarray(v), expected, rtol=1e-10)


def test_equals_torch_values_gradients_and_reductions(x64):
    torch = pytest.importorskip("torch")
    logits, labels, frames, units = _inputs()
    frames[2], units[2] = 3, 3  # no alignment: "1 1 2" needs 4 frames (a blank between the 1s)
    labels[2, :3] = [1, 1, 2]
    args = (jnp.asarray(labels), jnp.asarray(frames), jnp.asarray(units))

    @jax.jit
    def ours(x, y, f, u):
        def loss(z, zero_infinity, reduction):
            return jloss.ctc(z, y, logit_lengths=f, label_lengths=u, zero_infinity=zero_infinity,
                             reduction=reduction)
        return ({(z, r): loss(x, z, r) for z in (False, True) for r in ("none", "sum", "mean")},
                jax.grad(lambda x: loss(x, True, "sum"))(x))

    values, grad = ours(jnp.asarray(logits), *args)
    for (zero_infinity, reduction), got in values.items():
        x = torch.tensor(logits, requires_grad=True)
        ref = torch.nn.functional.ctc_loss(
            torch.log_softmax(x, -1).transpose(0, 1), torch.tensor(labels), torch.tensor(frames),
            torch.tensor(units), blank=0, reduction=reduction, zero_infinity=zero_infinity)
        np.testing.assert_allclose(np.asarray(got), ref.detach().numpy(), rtol=1e-10)
        if zero_infinity and reduction == "sum":  # torch's gradient of an infinite loss is NaN
            ref.backward()
            np.testing.assert_allclose(np.asarray(grad), x.grad.numpy(), rtol=1e-8, atol=1e-12)


def test_repeats_need_a_blank_and_impossible_alignments():
    uniform = jnp.zeros((1, 3, 3))
    repeat = jnp.array([[1, 1]])
    # three frames: the only alignment of "1 1" is "1 blank 1"
    np.testing.assert_allclose(float(jloss.ctc(uniform, repeat, reduction="sum")), 3 * np.log(3),
                               rtol=1e-6)
    two = uniform[:, :2]
    assert float(jloss.ctc(two, repeat, reduction="sum")) == np.inf
    # "1 2" fits two frames without a blank: 1 alignment of 9
    np.testing.assert_allclose(float(jloss.ctc(two, jnp.array([[1, 2]]), reduction="sum")),
                               2 * np.log(3), rtol=1e-6)
    for zero_infinity in (False, True):
        value, grad = jax.value_and_grad(
            lambda x, z=zero_infinity: jloss.ctc(x, repeat, zero_infinity=z, reduction="sum"))(two)
        assert float(value) == (0.0 if zero_infinity else np.inf)
        assert np.all(np.asarray(grad) == 0.0)


def test_empty_label_sequences_are_all_blank():
    """S = 0 (labels of shape (B, 0)): the only alignment is blank at every frame."""
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, 3)), jnp.float32)
    empty = jnp.zeros((2, 0), jnp.int32)
    value, grad = jax.value_and_grad(lambda x: jloss.ctc(x, empty, reduction="sum"))(x)
    expected, expected_grad = jax.value_and_grad(lambda x: -jnp.sum(jax.nn.log_softmax(x)[..., 0]))(x)
    np.testing.assert_allclose(float(value), float(expected), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(expected_grad), atol=1e-6)


def test_mean_is_torchs_mean_and_lengths_default_to_full():
    logits, labels, frames, units = _inputs()
    x, y = jnp.asarray(logits, jnp.float32), jnp.asarray(labels)
    w = jnp.array([1.0, 2.0, 0.5, 1.0, 3.0])
    kw = {"logit_lengths": jnp.asarray(frames), "label_lengths": jnp.asarray(units)}
    per = np.asarray(jloss.ctc(x, y, **kw, reduction="none"))
    expected = np.sum(np.asarray(w) * per / np.maximum(units, 1)) / np.sum(np.asarray(w))
    np.testing.assert_allclose(float(jloss.ctc(x, y, **kw, weights=w)), expected, rtol=1e-6)
    full = jloss.ctc(x, y, logit_lengths=jnp.full((B,), T), label_lengths=jnp.full((B,), S),
                     reduction="none")
    np.testing.assert_allclose(np.asarray(jloss.ctc(x, y, reduction="none")), np.asarray(full))
    # one unbatched sequence (T, K) and two leading batch axes agree with the batch
    np.testing.assert_allclose(float(jloss.ctc(x[0], y[0], reduction="none")),
                               float(jloss.ctc(x, y, reduction="none")[0]), rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(jloss.ctc(x[:4].reshape(2, 2, T, K), y[:4].reshape(2, 2, S), reduction="none")),
        np.asarray(jloss.ctc(x[:4], y[:4], reduction="none")).reshape(2, 2), rtol=1e-6)


def test_padding_is_never_read():
    """Frames past logit_lengths (NaN) and labels past label_lengths (garbage) change nothing;
    a sequence masked by where may hold garbage lengths and labels."""
    logits, labels, frames, units = _inputs()
    x, y = np.array(logits, np.float32), np.array(labels)
    kw = {"logit_lengths": jnp.asarray(frames), "label_lengths": jnp.asarray(units)}
    clean = jax.value_and_grad(lambda z: jloss.ctc(z, jnp.asarray(y), **kw))(jnp.asarray(x))
    for b in range(B):
        x[b, frames[b]:] = np.nan
        y[b, units[b]:] = -3
    dirty = jax.value_and_grad(lambda z: jloss.ctc(z, jnp.asarray(y), **kw))(jnp.asarray(x))
    np.testing.assert_allclose(float(dirty[0]), float(clean[0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(dirty[1]), np.asarray(clean[1]), atol=1e-7)
    where = np.array([True, True, False, True, True])
    bad_frames, bad_units = frames.copy(), units.copy()
    bad_frames[2], bad_units[2], y[2] = -4, 99, 0  # garbage, and the blank as a label
    masked = jloss.ctc(jnp.asarray(x), jnp.asarray(y), logit_lengths=jnp.asarray(bad_frames),
                       label_lengths=jnp.asarray(bad_units), where=where, reduction="sum")
    subset = jloss.ctc(jnp.asarray(x[where]), jnp.asarray(y[where]),
                       logit_lengths=jnp.asarray(frames[where]),
                       label_lengths=jnp.asarray(units[where]), reduction="sum")
    np.testing.assert_allclose(float(masked), float(subset), rtol=1e-6)


def test_stable_at_1000_frames_and_5000_classes():
    """float32 equals float64 to float32 precision, gradients finite, even for a confident
    model whose loss is in the hundreds of thousands."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 1000, 5000))
    logits[1] *= 40  # a confident model: log-probabilities down to about -300 per frame
    labels = rng.integers(1, 5000, size=(2, 300))
    f = jax.jit(jax.value_and_grad(lambda x: jloss.ctc(x, jnp.asarray(labels), reduction="sum")))
    v32, g32 = f(jnp.asarray(logits, jnp.float32))
    with jax.enable_x64(True):
        v64, g64 = f(jnp.asarray(logits, jnp.float64))
        v64, g64 = float(v64), np.asarray(g64)
    assert np.isfinite(float(v32)) and np.all(np.isfinite(np.asarray(g32)))
    np.testing.assert_allclose(float(v32), v64, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(g32), g64, atol=2e-4)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_shapes_and_options_are_checked(jit):
    x, y = jnp.zeros((2, 5, 4)), jnp.ones((2, 3), jnp.int32)

    def call(*a, **kw):
        return (jax.jit(lambda *b: jloss.ctc(*b, **kw)) if jit else
                lambda *b: jloss.ctc(*b, **kw))(*a)

    with pytest.raises(ValueError, match=r"(?=.*logits)(?=.*labels)(?=.*\(3, 3\))"):
        call(x, jnp.ones((3, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"(?=.*logit_lengths)(?=.*\(3,\))"):
        call(x, y, logit_lengths=jnp.ones((3,), jnp.int32))
    with pytest.raises(TypeError, match="label_lengths"):
        call(x, y, label_lengths=jnp.ones((2,)))
    with pytest.raises(TypeError, match="labels"):
        call(x, y.astype(jnp.float32))
    with pytest.raises(ValueError, match="blank_id"):
        call(x, y, blank_id=4)
    with pytest.raises(ValueError, match=r"(?=.*logits)(?=.*\(4,\))"):
        call(jnp.zeros((4,)), y)


@pytest.mark.parametrize("labels,frames,units", [
    ([[1, 0, 2]], None, None),     # the blank as a label
    ([[1, 4, 2]], None, None),     # not a symbol
    ([[1, 2, 3]], [6], None),      # more frames than logits
    ([[1, 2, 3]], None, [-1]),     # negative label length
])
def test_bad_sequences_raise_eagerly_nan_under_jit_and_raise_under_checked(labels, frames, units):
    x, y = jnp.zeros((1, 5, 4)), jnp.asarray(labels)
    kw = {"logit_lengths": None if frames is None else jnp.asarray(frames),
          "label_lengths": None if units is None else jnp.asarray(units)}
    with pytest.raises(jloss.LossInputError, match="ctc labels"):
        jloss.ctc(x, y, **kw)
    assert np.isnan(float(jax.jit(lambda a, b: jloss.ctc(a, b, **kw))(x, y)))
    with pytest.raises(jloss.LossInputError, match="ctc labels"):
        jloss.checked(jloss.ctc)(x, y, **kw)

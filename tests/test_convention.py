"""The shared convention, for every row of the registry.

reduction none / sum / mean, ``weights``, ``where``, ignore_index and
PyTorch's weighted mean; masked positions never leak NaN / inf into value or
gradient; nothing counted gives exactly 0.0 and an exactly zero gradient;
masking equals taking the subset.

Each test evaluates all its variants inside one ``jax.jit`` (one compile per
test keeps the suite fast); eager calls are compared with jit in
``test_transforms.py`` and value checks are tested in ``test_errors.py``.
"""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import ALIASES, CASES, grads_of, opt_id, params, reference, to_jax

import jloss

REDUCTIONS = ("none", "sum", "mean")
RTOL, ATOL = 2e-5, 1e-6


def _rng(case, opts, salt=0):
    return np.random.default_rng(zlib.crc32(f"{case.name}|{opt_id(opts)}|{salt}".encode()))


def _poison(case, args, masked):
    """NaN / inf in every masked position of the float inputs, garbage labels."""
    out = []
    for i, a in enumerate(args):
        a = np.array(a)
        m = masked[..., None] if case.class_axis and i in case.float_args else masked
        m = np.broadcast_to(m, a.shape)
        if i in case.float_args:
            a[m] = np.nan if i == 0 else np.inf
        else:
            a[m] = 10**6 if i == 1 else -7  # labels far outside [0, C)
        out.append(a)
    return tuple(out)


def _checker_mask(case, args):
    """A 'where' mask of the loss shape holding both True and False."""
    mask = np.zeros(case.loss_shape(args), bool)
    mask.flat[::2] = True
    mask.flat[-1] = False
    return mask


def _masked_slots(case, mask, shape):
    """The positions of a gradient of ``shape`` that ``mask`` (loss shape) excludes."""
    return np.broadcast_to(~mask[..., None] if case.class_axis else ~mask, shape)


@pytest.mark.parametrize("case,opts", **params())
def test_reductions_weights_where(case, opts, x64):
    """The reference test of every loss and option, in float64: none / sum / mean
    with weights and where equal the NumPy reference to 1e-10, with NaN / inf
    inputs, garbage labels and NaN weights in the masked slots."""
    rng = _rng(case, opts)
    args = case.make(rng, (6,), opts)
    where = _checker_mask(case, args)
    weights = rng.uniform(0.2, 2.0, size=where.shape)
    expected = {r: reference(case, args, opts, weights, where, r) for r in REDUCTIONS}
    bad_weights = np.where(where, weights, np.nan)

    @jax.jit
    def run(*a):
        out = {r: case.fn(*a, **opts, weights=bad_weights, where=where, reduction=r)
               for r in REDUCTIONS}
        grads = grads_of(case, lambda *b: case.fn(*b, **opts, weights=bad_weights, where=where),
                         a)
        return out, grads

    values, grads = run(*to_jax(case, _poison(case, args, ~where), np.float64))
    for r in REDUCTIONS:
        assert values[r].dtype == np.float64
        assert values[r].shape == np.shape(expected[r])
        np.testing.assert_allclose(np.asarray(values[r]), expected[r], rtol=1e-10, atol=1e-12,
                                   err_msg=r)
    assert np.all(np.asarray(values["none"])[~where] == 0.0)
    for g in grads:
        assert g.dtype == np.float64
        g = np.asarray(g)
        assert np.all(g[_masked_slots(case, where, g.shape)] == 0.0), "gradient leaks into mask"
        assert np.all(np.isfinite(g)), "non-finite gradient"


@pytest.mark.parametrize("case,opts", **params(which="edges"))
def test_broadcast_weights_and_where(case, opts):
    """weights and where broadcast to the unreduced loss shape (2-D batch)."""
    rng = _rng(case, opts, 1)
    args = case.make(rng, (2, 3) if case.class_axis else (4,), opts)
    loss_shape = case.loss_shape(args)
    weights = rng.uniform(0.5, 2.0, size=loss_shape[-1:])
    where = (np.arange(loss_shape[0]) % 2 == 0)[:, None]
    jargs = to_jax(case, args)
    got = jax.jit(lambda *a: {r: case.fn(*a, **opts, weights=weights, where=where, reduction=r)
                              for r in REDUCTIONS})(*jargs)
    for r in REDUCTIONS:
        exp = reference(case, jargs, opts, weights, where, r)
        np.testing.assert_allclose(np.asarray(got[r]), exp, rtol=RTOL, atol=ATOL, err_msg=r)


def _assert_exactly_zero(results):
    for label, (value, grads) in results.items():
        assert value.shape == () and float(value) == 0.0, (label, value)
        for g in grads:
            assert np.all(np.asarray(g) == 0.0), f"gradient not exactly zero ({label})"


def _value_and_grads(case, opts, a, reductions=("sum", "mean"), **kw):
    return {r: (case.fn(*a, **opts, reduction=r, **kw),
                grads_of(case, lambda *b, r=r: case.fn(*b, **opts, reduction=r, **kw), a))
            for r in reductions}


@pytest.mark.parametrize("case,opts", **params(which="edges"))
def test_nothing_counted_is_exactly_zero(case, opts):
    """Fully masked (with NaN / inf inputs and NaN weights there), zero weights and
    an empty batch give exactly 0.0 and an exactly zero gradient, never NaN."""
    args = case.make(_rng(case, opts, 3), (4,), opts)
    everything = np.ones(case.loss_shape(args), bool)
    nan_weights = np.full(everything.shape, np.nan)

    @jax.jit
    def run(poisoned, clean):
        out = {f"masked {r}": vg for r, vg in _value_and_grads(
            case, opts, poisoned, where=~everything, weights=nan_weights).items()}
        out["zero weights mean"] = _value_and_grads(case, opts, clean, ("mean",),
                                                    weights=0 * everything)["mean"]
        return out, (case.fn(*poisoned, **opts, where=~everything, reduction="none"),
                     case.fn(*poisoned, **opts, where=np.asarray(False)))

    results, (none, scalar_where) = run(to_jax(case, _poison(case, args, everything)),
                                        to_jax(case, args))
    _assert_exactly_zero(results)
    assert np.all(np.asarray(none) == 0.0)
    assert float(scalar_where) == 0.0

    empty = to_jax(case, case.make(_rng(case, opts, 4), (0,), opts))
    results, (total, none) = jax.jit(lambda a: (
        _value_and_grads(case, opts, a, ("mean",)),
        (case.fn(*a, **opts, reduction="sum"), case.fn(*a, **opts, reduction="none"))))(empty)
    _assert_exactly_zero(results)
    assert float(total) == 0.0 and none.shape == case.loss_shape(empty)


@pytest.mark.parametrize("case,opts", **params(which="edges"))
def test_mask_equals_subset(case, opts):
    """loss(x, y, where=m) == loss(x[m], y[m]) in value and gradient (m over examples)."""
    rng = _rng(case, opts, 5)
    args = case.make(rng, (6,), opts)
    rows = np.array([True, False, True, True, False, False])
    where = rows if case.class_axis else rows[:, None]
    weights = rng.uniform(0.5, 2.0, size=case.loss_shape(args))

    @jax.jit
    def run(full, part):
        return (_value_and_grads(case, opts, full, ("mean",), weights=weights, where=where),
                _value_and_grads(case, opts, part, ("mean",), weights=weights[rows]))

    got_full, got_part = run(to_jax(case, args), to_jax(case, tuple(a[rows] for a in args)))
    (v_full, g_full), (v_part, g_part) = got_full["mean"], got_part["mean"]
    np.testing.assert_allclose(float(v_full), float(v_part), rtol=RTOL, atol=ATOL)
    for gf, gp in zip(g_full, g_part):
        gf = np.asarray(gf)
        np.testing.assert_allclose(gf[rows], np.asarray(gp), rtol=RTOL, atol=ATOL)
        assert np.all(gf[~rows] == 0.0)


def test_sparse_mean_is_pytorch_weighted_mean():
    """A worked example: class weights and ignore_index as torch.nn.functional.cross_entropy.

    torch: mean = sum_i w[y_i] * nll_i / sum_i w[y_i] over non-ignored i.
    """
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.0, -3.0, 0.0], [5.0, 5.0, 5.0]])
    labels = np.array([0, 2, -100, 1])
    w = np.array([1.0, 2.0, 3.0], np.float32)
    nll = -np.log(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True))
    expected = (1 * nll[0, 0] + 3 * nll[1, 2] + 2 * nll[3, 1]) / (1 + 3 + 2)
    got = jloss.sparse_categorical_cross_entropy(jnp.asarray(logits, jnp.float32),
                                                 jnp.asarray(labels), class_weights=w,
                                                 ignore_index=-100)
    np.testing.assert_allclose(float(got), expected, rtol=1e-6)
    # with per-example weights too: sum(m w l) / sum(m w c)
    ex_w = np.array([0.5, 2.0, 7.0, 1.0])
    got = jloss.sparse_categorical_cross_entropy(jnp.asarray(logits, jnp.float32),
                                                 jnp.asarray(labels), class_weights=w,
                                                 ignore_index=-100, weights=ex_w)
    num = 0.5 * 1 * nll[0, 0] + 2.0 * 3 * nll[1, 2] + 1.0 * 2 * nll[3, 1]
    np.testing.assert_allclose(float(got), num / (0.5 * 1 + 2.0 * 3 + 1.0 * 2), rtol=1e-6)


def test_all_ignored_is_exactly_zero():
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)), jnp.float32)
    labels = jnp.full((3,), -100)
    for fn in (jloss.sparse_categorical_cross_entropy, jloss.categorical_focal_loss):
        value, grad = jax.value_and_grad(lambda x, fn=fn: fn(x, labels, ignore_index=-100))(logits)
        assert float(value) == 0.0 and np.all(np.asarray(grad) == 0.0)


def test_every_loss_is_in_the_registry():
    """A loss exported by jloss without a registry row fails here."""
    not_losses = {"LossInputError", "checked", "one_hot", "smooth_labels"}
    exported = {n for n in jloss.__all__ if n not in not_losses}
    assert exported == {c.name for c in CASES} | set(ALIASES)
    for alias, name in ALIASES.items():
        assert getattr(jloss, alias) is getattr(jloss, name)

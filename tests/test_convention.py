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


def _over(mask, ndim):
    """A mask of the loss shape, with trailing axes to broadcast over an input of ``ndim``."""
    return mask.reshape(mask.shape + (1,) * (ndim - mask.ndim))


def _poison(case, args, masked):
    """NaN / inf in every masked position of the float inputs, garbage labels."""
    out = []
    for i, a in enumerate(args):
        a = np.array(a)
        m = np.broadcast_to(_over(masked, a.ndim), a.shape)
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
    return np.broadcast_to(_over(~mask, len(shape)), shape)


@pytest.mark.parametrize("case,opts", **params())
def test_reductions_weights_where(case, opts, x64):
    """The reference test of every loss and option, in float64: none / sum / mean
    with weights and where equal the NumPy reference to 1e-10, with NaN / inf
    inputs, garbage labels and NaN weights in the masked slots; the gradient
    matches a central difference along a random direction."""
    rng = _rng(case, opts)
    args = case.make(rng, (6,), opts)
    where = _checker_mask(case, args)
    weights = rng.uniform(0.2, 2.0, size=where.shape)
    expected = {r: reference(case, args, opts, weights, where, r) for r in REDUCTIONS}
    bad_weights = np.where(where, weights, np.nan)

    def mean(*b):
        return case.fn(*b, **opts, weights=bad_weights, where=where)

    # a direction for a central difference: zero on masked slots and on inputs
    # whose gradient is straight-through by design
    frozen = {} if case.straight_through is None else case.straight_through(args, opts)
    direction = {i: np.where(_masked_slots(case, where, np.shape(args[i]))
                             | frozen.get(i, False), 0.0, rng.normal(size=np.shape(args[i])))
                 for i in case.diff_args}
    h = 1e-6

    @jax.jit
    def run(*a):
        out = {r: case.fn(*a, **opts, weights=bad_weights, where=where, reduction=r)
               for r in REDUCTIONS}
        moved = [[x + sign * h * direction[i] if i in direction else x for i, x in enumerate(a)]
                 for sign in (1, -1)]
        return out, grads_of(case, mean, a), (mean(*moved[0]) - mean(*moved[1])) / (2 * h)

    values, grads, slope = run(*to_jax(case, _poison(case, args, ~where), np.float64))
    for r in REDUCTIONS:
        assert values[r].dtype == np.float64
        assert values[r].shape == np.shape(expected[r])
        np.testing.assert_allclose(np.asarray(values[r]), expected[r], rtol=1e-10, atol=1e-12,
                                   err_msg=r)
    assert np.all(np.asarray(values["none"])[~where] == 0.0)
    directional = sum(np.sum(np.nan_to_num(np.asarray(g)) * direction[i])
                      for g, i in zip(grads, case.diff_args, strict=False))
    np.testing.assert_allclose(directional, float(slope), rtol=1e-6, atol=1e-9,
                               err_msg="gradient != finite difference")
    for g in grads:
        assert g.dtype == np.float64
        g = np.asarray(g)
        assert np.all(g[_masked_slots(case, where, g.shape)] == 0.0), "gradient leaks into mask"
        assert np.all(np.isfinite(g)), "non-finite gradient"


def _value_and_grads(case, opts, a, reductions=("sum", "mean"), **kw):
    return {r: (case.fn(*a, **opts, reduction=r, **kw),
                grads_of(case, lambda *b, r=r: case.fn(*b, **opts, reduction=r, **kw), a))
            for r in reductions}


_EDGES = {}


def _edges(case, opts):
    """Inputs and results of the three edge tests below, computed in one jit per
    (case, options) and shared: broadcast weights / where on a 2-D batch; fully
    masked, zero-weight and empty batches; a mask against the subset it keeps."""
    key = (case.name, opt_id(opts))
    if key in _EDGES:
        return _EDGES[key]
    rng = _rng(case, opts, 1)
    inputs, consts = {}, {}
    # broadcasting: weights (last axis of the loss) and where (first axis)
    args = case.make(rng, (2, 3) if case.event_dims(0) else (4,), opts)
    loss_shape = case.loss_shape(args)
    consts["b_weights"] = rng.uniform(0.5, 2.0, size=loss_shape[-1:])
    consts["b_where"] = _over(np.arange(loss_shape[0]) % 2 == 0, len(loss_shape))
    inputs["broadcast"] = to_jax(case, args)
    # nothing counted: everything masked (NaN / inf there, NaN weights), zero weights
    args = case.make(rng, (4,), opts)
    everything = np.ones(case.loss_shape(args), bool)
    inputs["poisoned"] = to_jax(case, _poison(case, args, everything))
    inputs["clean"] = to_jax(case, args)
    inputs["empty"] = to_jax(case, case.make(rng, (0,), opts))
    # subset: a mask over examples against the examples it keeps
    args = case.make(rng, (6,), opts)
    rows = np.array([True, False, True, True, False, False])
    consts["rows"] = rows
    consts["s_weights"] = rng.uniform(0.5, 2.0, size=case.loss_shape(args))
    inputs["full"] = to_jax(case, args)
    inputs["part"] = to_jax(case, tuple(a[rows] for a in args))

    @jax.jit
    def run(i):
        out = {"broadcast": {r: case.fn(*i["broadcast"], **opts, weights=consts["b_weights"],
                                        where=consts["b_where"], reduction=r)
                             for r in REDUCTIONS}}
        zero = {f"masked {r}": vg for r, vg in _value_and_grads(
            case, opts, i["poisoned"], where=~everything,
            weights=np.full(everything.shape, np.nan)).items()}
        zero["zero weights mean"] = _value_and_grads(case, opts, i["clean"], ("mean",),
                                                     weights=0 * everything)["mean"]
        zero["empty mean"] = _value_and_grads(case, opts, i["empty"], ("mean",))["mean"]
        out["zero"] = zero
        out["zero values"] = {
            "masked none": case.fn(*i["poisoned"], **opts, where=~everything, reduction="none"),
            "scalar where": case.fn(*i["poisoned"], **opts, where=np.asarray(False)),
            "empty sum": case.fn(*i["empty"], **opts, reduction="sum"),
            "empty none": case.fn(*i["empty"], **opts, reduction="none")}
        where = _over(rows, len(case.loss_shape(i["full"])))
        out["subset"] = (
            _value_and_grads(case, opts, i["full"], ("mean",), weights=consts["s_weights"],
                             where=where)["mean"],
            _value_and_grads(case, opts, i["part"], ("mean",),
                             weights=consts["s_weights"][rows])["mean"])
        return out

    _EDGES[key] = (inputs, consts, run(inputs))
    return _EDGES[key]


@pytest.mark.parametrize("case,opts", **params(which="rich"))
def test_broadcast_weights_and_where(case, opts):
    """weights and where broadcast to the unreduced loss shape (2-D batch for class losses)."""
    inputs, consts, out = _edges(case, opts)
    for r in REDUCTIONS:
        exp = reference(case, inputs["broadcast"], opts, consts["b_weights"], consts["b_where"], r)
        np.testing.assert_allclose(np.asarray(out["broadcast"][r]), exp, rtol=RTOL, atol=ATOL,
                                   err_msg=r)


@pytest.mark.parametrize("case,opts", **params(which="rich"))
def test_nothing_counted_is_exactly_zero(case, opts):
    """Fully masked (with NaN / inf inputs and NaN weights there), zero weights and
    an empty batch give exactly 0.0 and an exactly zero gradient, never NaN."""
    inputs, _, out = _edges(case, opts)
    for label, (value, grads) in out["zero"].items():
        assert value.shape == () and float(value) == 0.0, (label, value)
        for g in grads:
            assert np.all(np.asarray(g) == 0.0), f"gradient not exactly zero ({label})"
    values = out["zero values"]
    assert np.all(np.asarray(values["masked none"]) == 0.0)
    assert float(values["scalar where"]) == 0.0 and float(values["empty sum"]) == 0.0
    assert values["empty none"].shape == case.loss_shape(inputs["empty"])


@pytest.mark.parametrize("case,opts", **params(which="rich"))
def test_mask_equals_subset(case, opts):
    """loss(x, y, where=m) == loss(x[m], y[m]) in value and gradient (m over examples)."""
    _, consts, out = _edges(case, opts)
    rows = consts["rows"]
    (v_full, g_full), (v_part, g_part) = out["subset"]
    np.testing.assert_allclose(float(v_full), float(v_part), rtol=RTOL, atol=ATOL)
    for gf, gp in zip(g_full, g_part, strict=False):
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
    """A loss exported by jloss without a registry row fails here.

    ``linear_cross_entropy`` (hidden, weight, labels) has its own suite, tests/test_fused.py;
    the activation ``sparsemax`` is tested in tests/test_more_losses.py and test_optax_anchors.py;
    ``sequence_log_probs`` is a reduction of log-probabilities, not a loss (tests/test_preference.py).
    """
    exported = {n for n in jloss.__all__
                if getattr(getattr(jloss, n), "__module__", "").startswith("jloss.losses.")
                and n not in ("one_hot", "smooth_labels", "sparsemax", "sequence_log_probs")}
    assert exported == {c.name for c in CASES} | set(ALIASES)
    for alias, name in ALIASES.items():
        assert getattr(jloss, alias) is getattr(jloss, name)

"""The section-7 losses anchored on PyTorch, checked against torch itself (skipped without torch).

The suite does not need torch: the registry's float64 NumPy references are
written from torch's documented formulas. This file checks those references
and jloss once against ``torch.nn.functional`` in float64: the per-example
values (``reduction="none"``) and the gradients of the sum.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import BY_NAME, as_f64, to_jax

import jloss

torch = pytest.importorskip("torch")
F = torch.nn.functional
rng = np.random.default_rng(11)


def _t(a):
    return torch.tensor(np.asarray(a, np.float64), requires_grad=True)


def _torch_value_and_grads(fn, *arrays, ints=()):
    tensors = [torch.tensor(np.asarray(a)) if i in ints else _t(a) for i, a in enumerate(arrays)]
    out = fn(*tensors)
    out.sum().backward()
    return out.detach().numpy(), [t.grad.numpy() for i, t in enumerate(tensors) if i not in ints]


def _jloss_value_and_grads(fn, *arrays, ints=()):
    args = [jnp.asarray(a) if i in ints else jnp.asarray(a, jnp.float64)
            for i, a in enumerate(arrays)]
    floats = tuple(i for i in range(len(args)) if i not in ints)
    value = fn(*args)
    grads = jax.grad(lambda *a: jnp.sum(fn(*a)), argnums=floats)(*args)
    return np.asarray(value), [np.asarray(g) for g in grads]


def _close(ours, theirs):
    (v1, g1), (v2, g2) = ours, theirs
    np.testing.assert_allclose(v1, v2, rtol=1e-6, atol=1e-12)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)


def _sample(name, opts=None, batch=(6,)):
    return as_f64(to_jax(BY_NAME[name], BY_NAME[name].make(rng, batch, opts or {}),
                         np.float64))


CASES = [
    # name, options, torch function of the registry sample, positions of integer labels
    ("cosine_embedding", {}, lambda a, b, y: F.cosine_embedding_loss(a, b, y, reduction="none"),
     (2,)),
    ("cosine_embedding", {"margin": 0.2},
     lambda a, b, y: F.cosine_embedding_loss(a, b, y, margin=0.2, reduction="none"), (2,)),
    ("triplet_margin", {}, lambda a, p, n: F.triplet_margin_loss(a, p, n, reduction="none"), ()),
    ("triplet_margin", {"margin": 0.5, "p": 1.0},
     lambda a, p, n: F.triplet_margin_loss(a, p, n, margin=0.5, p=1.0, reduction="none"), ()),
    ("triplet_margin", {"swap": True},
     lambda a, p, n: F.triplet_margin_loss(a, p, n, swap=True, reduction="none"), ()),
    ("triplet_margin", {"eps": 0.0, "p": 3.0},
     lambda a, p, n: F.triplet_margin_loss(a, p, n, eps=0.0, p=3.0, reduction="none"), ()),
    ("margin_ranking", {"margin": 0.5},
     lambda a, b, y: F.margin_ranking_loss(a, b, y.double(), margin=0.5, reduction="none"),
     (2,)),
    ("hinge_embedding", {"margin": 0.5},
     lambda d, y: F.hinge_embedding_loss(d, y.double(), margin=0.5, reduction="none"), (1,)),
    ("soft_margin", {}, lambda s, y: F.soft_margin_loss(s, y, reduction="none"), (1,)),
    ("multilabel_soft_margin", {},
     lambda x, y: F.multilabel_soft_margin_loss(x, y, reduction="none"), (1,)),
    ("multilabel_margin", {},
     lambda s, y: F.multilabel_margin_loss(s, y, reduction="none"), (1,)),
    ("cosine_distance", {}, lambda p, t: 1 - F.cosine_similarity(p, t, dim=-1, eps=1e-8), ()),
]


@pytest.mark.parametrize("name,opts,torch_fn,ints", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_jloss_and_reference_equal_torch(name, opts, torch_fn, ints, x64):
    case = BY_NAME[name]
    args = _sample(name, opts)
    theirs = _torch_value_and_grads(torch_fn, *args, ints=ints)
    ours = _jloss_value_and_grads(lambda *a: case.fn(*a, **opts, reduction="none"), *args,
                                  ints=ints)
    _close(ours, theirs)
    np.testing.assert_allclose(case.ref(*args, **opts), theirs[0], rtol=1e-6, atol=1e-12)


def test_multilabel_margin_repeated_and_unsorted_labels_equal_torch(x64):
    """Labels listing a class twice, in any order, with leftovers after the -1: values and
    gradients as torch's (its sum runs over the listed indices)."""
    x = np.random.default_rng(3).normal(size=(6, 5))
    y = np.array([[1, 1, -1, 2, 0], [4, 0, 4, 0, -1], [2, 3, 1, 0, 4], [3, -1, -1, -1, -1],
                  [-1, 2, 2, 2, 2], [0, 0, 0, 0, 0]])
    theirs = _torch_value_and_grads(lambda x, y: F.multilabel_margin_loss(x, y, reduction="none"),
                                    x, y, ints=(1,))
    ours = _jloss_value_and_grads(lambda x, y: jloss.multilabel_margin(x, y, reduction="none"),
                                  x, y, ints=(1,))
    _close(ours, theirs)


def test_multilabel_soft_margin_class_weights_equal_torch(x64):
    x, y = _sample("multilabel_soft_margin")
    w = np.array([0.5, 2.0, 1.0, 0.25, 3.0])
    theirs = _torch_value_and_grads(
        lambda x, y: F.multilabel_soft_margin_loss(x, y, weight=torch.tensor(w),
                                                   reduction="none"), x, y, ints=(1,))
    ours = _jloss_value_and_grads(lambda x, y: jloss.multilabel_soft_margin(
        x, y, class_weights=w, reduction="none"), x, y, ints=(1,))
    _close(ours, theirs)


def test_torch_means_equal_jloss_means(x64):
    """Without weights and masks, torch's "mean" is jloss's "mean" for these losses."""
    x1, x2, y = _sample("cosine_embedding")
    t = [torch.tensor(np.asarray(a)) for a in (x1, x2, y)]
    np.testing.assert_allclose(float(jloss.cosine_embedding(jnp.asarray(x1), jnp.asarray(x2),
                                                            jnp.asarray(y))),
                               float(F.cosine_embedding_loss(*t)), rtol=1e-6)
    s, labels = _sample("multilabel_margin")
    np.testing.assert_allclose(float(jloss.multilabel_margin(jnp.asarray(s), jnp.asarray(labels))),
                               float(F.multilabel_margin_loss(torch.tensor(s),
                                                              torch.tensor(labels))), rtol=1e-6)

"""Which loss for which task: the selection guide as a function.

The guide (situation -> loss, output activation):

- binary -> ``binary_cross_entropy``, sigmoid
- binary, imbalanced -> ``binary_cross_entropy(pos_weight=negatives/positives)``, sigmoid
  (or ``binary_focal_loss`` with alpha = 1 - positive fraction)
- multi-label -> ``binary_cross_entropy``, one sigmoid per label
- multi-class -> ``sparse_categorical_cross_entropy`` (integer labels) or
  ``categorical_cross_entropy`` (one-hot / soft targets), softmax
- multi-class, imbalanced -> ``categorical_focal_loss`` (or ``class_weights``), softmax
- regression -> ``mean_squared_error``, identity
- regression, noisy targets -> ``mean_absolute_error``, identity
- regression, outliers -> ``huber``, identity
- regression, a quantile -> ``pinball``, identity
- distributions -> ``kl_divergence``, softmax
- segmentation -> ``dice`` (imbalanced foreground: Tversky, ``dice(alpha=0.3, beta=0.7)``), softmax
- ranking -> ``ranking_softmax``, softmax over each list
- representation learning -> ``ntxent`` (groups of views), embeddings (normalised inside)
- sequence labelling without an alignment -> ``ctc``, softmax over classes per frame
- retrieval, paired queries and keys -> ``info_nce``; very large batches across devices ->
  ``sigmoid_contrastive``

Every jloss classification loss takes *logits*: the activation named here is
applied inside the loss (stably), so the model's last layer stays linear and
the activation is used only to read out probabilities at prediction time.
"""

import dataclasses
import functools
import types
from collections.abc import Callable, Mapping
from typing import Any

from jloss.losses import (
    classification,
    contrastive,
    divergence,
    embedding,
    ranking,
    regression,
    segmentation,
    sequence,
)

TASKS = ("binary", "multiclass", "multilabel", "regression", "distribution", "segmentation",
         "ranking", "representation", "retrieval", "sequence")

_ALIASES = {
    "binary": "binary",
    "binary-classification": "binary",
    "multiclass": "multiclass",
    "multi-class": "multiclass",
    "multi_class": "multiclass",
    "multilabel": "multilabel",
    "multi-label": "multilabel",
    "multi_label": "multilabel",
    "regression": "regression",
    "distribution": "distribution",
    "distributions": "distribution",
    "segmentation": "segmentation",
    "ranking": "ranking",
    "learning-to-rank": "ranking",
    "representation": "representation",
    "representation-learning": "representation",
    "contrastive": "representation",
    "retrieval": "retrieval",
    "paired": "retrieval",
    "sequence": "sequence",
    "sequence-labelling": "sequence",
    "sequence-labeling": "sequence",
    "speech": "sequence",
}


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """A loss, the output activation it pairs with, why, and keyword options.

    Returned by :func:`recommend`; ``rec.bind()`` is the loss with its options
    filled in.

    Attributes:
      loss: the jloss loss function (``jloss.huber``, ...).
      activation: name of the output activation the loss pairs with:
        ``"sigmoid"``, ``"softmax"`` or ``"identity"``. jloss losses apply it
        internally (pass logits); use it yourself only to read out probabilities.
      reason: one or two sentences from the selection guide.
      options: keyword arguments to call ``loss`` with (read-only mapping).

    Examples:
      >>> import jloss
      >>> rec = jloss.recommend("binary", imbalance=True, positive_fraction=0.2)
      >>> rec.name, rec.activation, dict(rec.options)
      ('binary_cross_entropy', 'sigmoid', {'pos_weight': 4.0})
    """

    loss: Callable[..., Any]
    activation: str
    reason: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "options", types.MappingProxyType(dict(self.options)))

    @property
    def name(self):
        """The loss function's name, e.g. ``"huber"``."""
        return self.loss.__name__

    def bind(self):
        """``loss`` with ``options`` filled in: ``rec.bind()(predictions, targets)``."""
        return functools.partial(self.loss, **self.options)

    def __str__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{self.name}({opts}) with {self.activation} output: {self.reason}"


def recommend(task, *, outliers=False, imbalance=False, integer_labels=True, noisy=False,
              quantile=None, positive_fraction=None):
    """Recommend a loss and output activation for ``task``, following the selection guide.

    The guide, situation to loss: binary labels to :func:`binary_cross_entropy`
    (rare positives: with ``pos_weight``); several labels per example to one BCE
    per label; one class out of C to :func:`sparse_categorical_cross_entropy`
    (one-hot or soft targets: :func:`categorical_cross_entropy`; imbalanced:
    :func:`categorical_focal_loss`); regression to :func:`mean_squared_error`
    (noisy targets: :func:`mean_absolute_error`, outliers: :func:`huber`, a
    quantile: :func:`pinball`); distributions to :func:`kl_divergence`. The
    classification losses take logits: the activation named is applied inside
    the loss, and used only to read out probabilities.

    Args:
      task: ``"binary"``, ``"multiclass"``, ``"multilabel"``, ``"regression"``,
        ``"distribution"``, ``"segmentation"``, ``"ranking"``, ``"representation"``,
        ``"retrieval"`` or ``"sequence"``
        (``"multi-class"``, ``"multi-label"``, ``"learning-to-rank"``, ``"contrastive"``,
        ``"retrieval"`` ... are accepted too).
      outliers: regression targets contain large outliers -> ``huber``.
      imbalance: one class is rare -> class-weighted BCE (binary; ``pos_weight`` filled in
        from ``positive_fraction``), focal loss (multi-class) or the Tversky form of
        ``dice`` (segmentation with a small foreground).
      integer_labels: multi-class labels are integer class indices (-> sparse CE);
        False for one-hot or soft targets (-> categorical CE).
      noisy: regression targets are noisy (heavy-tailed noise) -> ``mean_absolute_error``.
      quantile: predict this quantile instead of the mean -> ``pinball``.
      positive_fraction: for ``binary`` with ``imbalance``, the fraction of
        positive examples; gives ``pos_weight = (1 - f) / f`` (negatives per positive).

    Returns:
      A :class:`Recommendation` ``(loss, activation, reason, options)``.

    Raises:
      ValueError: an unknown task (the message lists the tasks) or a bad option.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> rec = jloss.recommend("regression", outliers=True)
      >>> rec.name, rec.activation, dict(rec.options)
      ('huber', 'identity', {'delta': 1.0})
      >>> float(rec.bind()(jnp.array([0.0, 3.0]), jnp.zeros(2)))
      1.25

    References:
      Goodfellow, I., Bengio, Y. and Courville, A. (2016). *Deep Learning*,
      section 6.2.2 (output units and cost functions).
    """
    key = _ALIASES.get(str(task).lower().strip()) if isinstance(task, str) else None
    if key is None:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    if quantile is not None and not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
    if positive_fraction is not None and not 0 < positive_fraction < 1:
        raise ValueError(f"positive_fraction must be in (0, 1), got {positive_fraction!r}")

    if key == "regression":
        if quantile is not None:
            return Recommendation(regression.pinball, "identity",
                                  f"predicting the {quantile:g} quantile: the pinball (quantile) loss "
                                  "is minimised by that quantile of the target distribution.",
                                  {"quantile": quantile})
        if outliers:
            return Recommendation(regression.huber, "identity",
                                  "targets with outliers: Huber is quadratic for small errors and "
                                  "linear for large ones, so outliers cannot dominate the gradient "
                                  "(set delta to the size of a normal error).",
                                  {"delta": 1.0})
        if noisy:
            return Recommendation(regression.mean_absolute_error, "identity",
                                  "noisy (heavy-tailed) targets: MAE fits the median and every "
                                  "error pulls with the same force, so noise is not squared.")
        return Recommendation(regression.mean_squared_error, "identity",
                              "regression with roughly Gaussian noise: MSE fits the conditional mean "
                              "and penalises large errors most.")

    if key == "binary":
        if imbalance:
            # Weighted BCE, not focal loss: on breast cancer cut to 5% positives (`jloss demo`, claim d)
            # pos_weight = negatives / positives raised minority recall the most, focal loss with
            # alpha = 1 - f less, and focal with the detection default alpha = 0.25 lowered it.
            options = {} if positive_fraction is None else {
                "pos_weight": (1 - positive_fraction) / positive_fraction}
            how = ("" if positive_fraction is not None else
                   " Pass pos_weight = negatives / positives (or give recommend() positive_fraction).")
            return Recommendation(classification.binary_cross_entropy, "sigmoid",
                                  "imbalanced binary labels: weight the rare positive class by the "
                                  "negatives per positive so both classes pull equally; alternatively "
                                  "binary_focal_loss with alpha = 1 - positive fraction (its default "
                                  "alpha=0.25 weights positives down)." + how,
                                  options)
        return Recommendation(classification.binary_cross_entropy, "sigmoid",
                              "binary labels: cross-entropy on a sigmoid output is the likelihood of "
                              "a Bernoulli label and keeps a large gradient when confidently wrong.")

    if key == "multilabel":
        return Recommendation(classification.binary_cross_entropy, "sigmoid",
                              "several independent yes/no labels per example: one sigmoid and one "
                              "binary cross-entropy per label (labels of shape (batch, labels))"
                              + ("; for rare labels pass pos_weight (negatives / positives per label)."
                                 if imbalance else "."))

    if key == "segmentation":
        if imbalance:
            return Recommendation(segmentation.dice, "softmax",
                                  "segmentation with a small or rare foreground: the Tversky loss "
                                  "(dice with beta > alpha) charges missed foreground pixels more "
                                  "than false alarms; add class_weights for rare classes.",
                                  {"alpha": 0.3, "beta": 0.7})
        return Recommendation(segmentation.dice, "softmax",
                              "segmentation: the Dice loss scores the overlap of each class's "
                              "predicted and true region, so small objects count as much as the "
                              "background (pixel-wise cross-entropy lets the background dominate).")

    if key == "ranking":
        return Recommendation(ranking.ranking_softmax, "softmax",
                              "learning to rank: the softmax cross-entropy of each list's "
                              "relevance against its scores (ListNet), with padding marked by "
                              "valid; the softmax is over the items of a list.")

    if key == "representation":
        return Recommendation(embedding.ntxent, "identity",
                              "representation learning from groups of views (SimCLR, supervised "
                              "contrastive): NT-Xent on the embeddings, L2-normalised inside; for "
                              "paired queries and keys (retrieval, CLIP) use info_nce, and "
                              "sigmoid_contrastive (SigLIP) for very large batches across devices.")

    if key == "sequence":
        return Recommendation(sequence.ctc, "softmax",
                              "sequence labelling without a frame alignment (speech, handwriting): "
                              "CTC sums over every alignment of the labels to the frames, with a "
                              "blank class; pass the frame logits and the label and frame lengths.")

    if key == "retrieval":
        return Recommendation(contrastive.info_nce, "identity",
                              "retrieval and paired representation learning (CLIP-style queries and "
                              "keys): InfoNCE, the cross-entropy over the similarity matrix of "
                              "L2-normalised rows (symmetric=True for both directions); with "
                              "axis_name the negatives come from every device, and "
                              "sigmoid_contrastive (SigLIP) scales to very large batches.")

    if key == "distribution":
        return Recommendation(divergence.kl_divergence, "softmax",
                              "matching a target distribution (distillation, soft labels): KL "
                              "divergence from the targets to the softmax output.")

    # multiclass
    if imbalance:
        return Recommendation(classification.categorical_focal_loss, "softmax",
                              "imbalanced classes: focal loss down-weights easy examples; "
                              "alternatively sparse_categorical_cross_entropy with class_weights "
                              "(inverse class frequencies).",
                              {"gamma": 2.0})
    if integer_labels:
        return Recommendation(classification.sparse_categorical_cross_entropy, "softmax",
                              "one class per example given as an integer index: sparse categorical "
                              "cross-entropy on softmax logits (no one-hot needed).")
    return Recommendation(classification.categorical_cross_entropy, "softmax",
                          "one-hot or soft targets over classes: categorical cross-entropy on "
                          "softmax logits.")


GUIDE = (
    ("binary", {}),
    ("binary", {"imbalance": True, "positive_fraction": 0.05}),
    ("multilabel", {}),
    ("multiclass", {}),
    ("multiclass", {"integer_labels": False}),
    ("multiclass", {"imbalance": True}),
    ("regression", {}),
    ("regression", {"noisy": True}),
    ("regression", {"outliers": True}),
    ("regression", {"quantile": 0.9}),
    ("distribution", {}),
    ("segmentation", {}),
    ("segmentation", {"imbalance": True}),
    ("ranking", {}),
    ("representation", {}),
    ("retrieval", {}),
    ("sequence", {}),
)


def guide_rows():
    """The selection guide as rows ``(situation, loss, activation, options)``."""
    rows = []
    for task, kw in GUIDE:
        rec = recommend(task, **kw)
        situation = task + "".join(f", {k}={v}" for k, v in kw.items())
        opts = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v!r}"
                         for k, v in rec.options.items())
        rows.append((situation, rec.name, rec.activation, opts))
    return rows

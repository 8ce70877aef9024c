"""Evaluation metrics: accuracy, top-k accuracy, binary precision / recall / F1, MAE, RMSE, ECE.

The classification metrics take what the losses take: logits by default
(``from_logits=True``; binary: positive when the logit is above the logit of
``threshold``, 0 for the default 0.5), or probabilities with
``from_logits=False``, which must lie in [0, 1]: checked as the losses check
them (:class:`jloss.LossInputError` for concrete inputs, under
:func:`jloss.checked` for traced ones; masked examples are not checked).

Every metric is a pure function (no state) that returns a float32 scalar and
takes the same optional ``weights`` (non-negative, broadcastable to the
per-example shape) and ``where`` (boolean mask) as the losses. Masked examples
count for nothing, and a metric with nothing counted (empty batch, all masked,
no predicted positives for precision, ...) is 0.0, as scikit-learn's
``zero_division=0``.

Metrics that are ratios of sums (precision, recall, F1, ECE) are not means of
per-example values: compute them over the whole evaluation set at once, not
as an average of per-batch values.
"""

import functools

import jax
import jax.numpy as jnp

from jloss._core import checks
from jloss._core.checks import check_broadcastable, check_integer, check_same_shape

__all__ = [
    "accuracy",
    "binary_f1",
    "binary_precision",
    "binary_recall",
    "expected_calibration_error",
    "mae",
    "reliability_bins",
    "rmse",
    "top_k_accuracy",
]

_PROBABILITIES_HINT = ("; with from_logits=False the predictions must be probabilities "
                       "(did you pass logits? use from_logits=True, the default)")


def _example_weights(shape, weights, where):
    """Per-example weights ``w * m`` of ``shape`` (float32; 1 where neither is given)."""
    check_broadcastable("weights", weights, shape)
    check_broadcastable("where", where, shape)
    if where is not None and jnp.asarray(where).dtype != jnp.bool_:
        raise TypeError(f"where must be a boolean mask, got dtype {jnp.asarray(where).dtype}")
    w = jnp.ones(shape, jnp.float32)
    if weights is not None:
        w = w * jnp.broadcast_to(jnp.asarray(weights, jnp.float32), shape)
    if where is not None:
        w = jnp.where(jnp.broadcast_to(where, shape), w, 0.0)  # NaN weights in masked slots too
    return w


def _ratio(numerator, denominator):
    """``numerator / denominator``, exactly 0.0 where the denominator is 0."""
    safe = jnp.where(denominator > 0, denominator, 1.0)
    return jnp.where(denominator > 0, numerator / safe, 0.0)


def _weighted_mean(values, w):
    values = jnp.where(w > 0, values, 0.0)  # masked NaN / inf must not leak
    return _ratio(jnp.sum(w * values), jnp.sum(w))


def _class_scores(predictions, labels, name="predictions"):
    predictions = jnp.asarray(predictions)
    labels = jnp.asarray(labels)
    check_integer(labels=labels)
    if predictions.ndim != labels.ndim + 1 or predictions.shape[:-1] != labels.shape:
        raise ValueError(
            f"{name} must have shape labels.shape + (num_classes,), got {name} "
            f"{predictions.shape} and labels {labels.shape}"
        )
    return predictions, labels


def _check_probabilities(predictions, from_logits, where, shape):
    """With ``from_logits=False``, float predictions must lie in [0, 1] wherever ``where`` counts them."""
    predictions = jnp.asarray(predictions)
    if not from_logits and jnp.issubdtype(predictions.dtype, jnp.floating):
        mask = None if where is None else jnp.broadcast_to(jnp.asarray(where, bool), shape)
        checks.check_unit_interval("predictions", predictions, mask, _PROBABILITIES_HINT)


def _is_binary(predictions, labels):
    """Scores or decisions of ``labels.shape`` (the binary form), not scores over a class axis."""
    return jnp.shape(predictions) == jnp.shape(labels)


def _decisions(predictions, threshold, from_logits):
    """Boolean positive decisions: ``p > threshold``, on the logit scale for logits; booleans as they are."""
    if predictions.dtype == jnp.bool_:
        return predictions
    if from_logits:
        return predictions > jax.scipy.special.logit(jnp.asarray(threshold, jnp.float32))
    return predictions > threshold


def accuracy(predictions, labels, *, from_logits=True, weights=None, where=None):
    r"""Fraction of correct predictions, weighted.

    .. math::

        \text{accuracy} = \frac{\sum_i w_i\,[\hat y_i = y_i]}{\sum_i w_i},
        \quad \hat y_i = \arg\max_c s_{ic}

    For classification; as Keras ``SparseCategoricalAccuracy`` (and
    ``BinaryAccuracy`` in the binary form).

    Args:
      predictions: scores ``(..., C)``: logits (``from_logits=True``) or
        probabilities, compared by ``argmax``. Or, of ``labels.shape``: integer
        (or boolean) predicted classes, or float binary scores, positive
        above logit 0 (probability 0.5).
      labels: integer class indices ``(...)``; 0/1 labels in the binary form.
      from_logits: whether float ``predictions`` are logits (else
        probabilities, checked to lie in [0, 1]).
      weights, where: per-example weights and mask of ``labels.shape``.

    Returns:
      A float32 scalar in [0, 1] (0.0 when nothing is counted).

    Raises:
      ValueError, TypeError: shapes, dtypes or masks that do not fit.
      LossInputError: probabilities outside [0, 1] with ``from_logits=False``.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> round(float(jloss.metrics.accuracy(jnp.array([[2.0, 0.1], [0.3, 0.2]]), jnp.array([0, 1]))), 4)
      0.5

    References:
      scikit-learn ``sklearn.metrics.accuracy_score``.
    """
    predictions, labels = jnp.asarray(predictions), jnp.asarray(labels)
    if not _is_binary(predictions, labels):
        _class_scores(predictions, labels)
    _check_probabilities(predictions, from_logits, where, labels.shape)
    _example_weights(labels.shape, weights, where)
    return _accuracy(predictions, labels, weights, where, from_logits=from_logits)


@functools.partial(jax.jit, static_argnames="from_logits")
def _accuracy(predictions, labels, weights, where, *, from_logits):
    if not _is_binary(predictions, labels):
        correct = jnp.argmax(predictions, axis=-1) == labels
    elif jnp.issubdtype(predictions.dtype, jnp.floating):
        correct = _decisions(predictions, 0.5, from_logits) == (labels > 0.5)
    else:
        correct = predictions == labels
    return _weighted_mean(correct.astype(jnp.float32), _example_weights(labels.shape, weights, where))


def top_k_accuracy(predictions, labels, *, from_logits=True, k=5, weights=None, where=None):
    r"""Fraction of examples whose label is among the ``k`` highest scores.

    .. math::

        \frac{\sum_i w_i\,[s_{i y_i} \ge s_{i(k)}]}{\sum_i w_i}

    with :math:`s_{i(k)}` the ``k``-th largest score of example ``i``: a label
    tied with it counts as correct. As Keras ``SparseTopKCategoricalAccuracy``.

    Args:
      predictions: logits (or probabilities with ``from_logits=False``) ``(..., C)``.
      labels: integer class indices ``(...)``.
      from_logits: whether ``predictions`` are logits (else probabilities,
        checked to lie in [0, 1]); the ranking is the same.
      k: how many top classes count (``1 <= k <= C``).
      weights, where: per-example weights and mask of ``labels.shape``.

    Returns:
      A float32 scalar in [0, 1].

    Raises:
      ValueError: ``k`` out of range; shapes that do not fit.
      LossInputError: probabilities outside [0, 1] with ``from_logits=False``.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> scores = jnp.array([[0.1, 0.5, 0.4], [0.6, 0.3, 0.1]])
      >>> round(float(jloss.metrics.top_k_accuracy(scores, jnp.array([2, 2]), k=2)), 4)
      0.5

    References:
      scikit-learn ``sklearn.metrics.top_k_accuracy_score``.
    """
    predictions, labels = _class_scores(predictions, labels)
    num_classes = predictions.shape[-1]
    if not 1 <= k <= num_classes:
        raise ValueError(f"k must be in [1, {num_classes}] (the number of classes), got {k}")
    _check_probabilities(predictions, from_logits, where, labels.shape)
    _example_weights(labels.shape, weights, where)
    return _top_k_accuracy(predictions, labels, weights, where, k=k)


@functools.partial(jax.jit, static_argnames="k")
def _top_k_accuracy(predictions, labels, weights, where, *, k):
    num_classes = predictions.shape[-1]
    kth = jnp.sort(predictions, axis=-1)[..., num_classes - k]
    label_score = jnp.take_along_axis(predictions, jnp.clip(labels, 0, num_classes - 1)[..., None],
                                      axis=-1)[..., 0]
    in_range = (labels >= 0) & (labels < num_classes)
    correct = (in_range & (label_score >= kth)).astype(jnp.float32)
    return _weighted_mean(correct, _example_weights(labels.shape, weights, where))


def _binary_counts(predictions, targets, threshold, from_logits, weights, where):
    """Checks, then the weighted true positives, predicted positives and actual positives."""
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    check_same_shape(predictions=predictions, targets=targets)
    checks.check_range("threshold", threshold, low=0, high=1)
    _check_probabilities(predictions, from_logits, where, targets.shape)
    _example_weights(targets.shape, weights, where)
    return _counts(predictions, targets, threshold, weights, where, from_logits=from_logits)


@functools.partial(jax.jit, static_argnames="from_logits")
def _counts(predictions, targets, threshold, weights, where, *, from_logits):
    w = _example_weights(targets.shape, weights, where)
    predicted = _decisions(predictions, threshold, from_logits)
    actual = targets > 0.5 if targets.dtype != jnp.bool_ else targets
    tp = jnp.sum(jnp.where(predicted & actual, w, 0.0))
    return tp, jnp.sum(jnp.where(predicted, w, 0.0)), jnp.sum(jnp.where(actual, w, 0.0))


def binary_precision(predictions, targets, *, from_logits=True, threshold=0.5, weights=None, where=None):
    r"""``TP / (TP + FP)``: of the examples predicted positive, the fraction that are.

    .. math::

        \text{precision} = \frac{\sum_i w_i\,[\hat y_i][y_i]}{\sum_i w_i\,[\hat y_i]},
        \quad \hat y_i = [\sigma(x_i) > t]

    As scikit-learn ``precision_score`` (``zero_division=0``), Keras ``Precision``.

    Args:
      predictions: logits (default), probabilities with ``from_logits=False``,
        or booleans (decisions as they are).
      targets: 0/1 (or boolean) labels of the same shape.
      from_logits: whether float ``predictions`` are logits (else
        probabilities, checked to lie in [0, 1]).
      threshold: decision threshold ``t`` on the probability, in [0, 1]
        (for logits: on the logit scale, 0 for 0.5).
      weights, where: per-example weights and mask.

    Returns:
      A float32 scalar in [0, 1] (0.0 when nothing is predicted positive).

    Raises:
      ValueError: shapes that differ, ``threshold`` outside [0, 1].
      LossInputError: probabilities outside [0, 1] with ``from_logits=False``.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> logits, targets = jnp.array([2.0, -1.0, 0.5, 3.0]), jnp.array([1, 0, 0, 1])
      >>> round(float(jloss.metrics.binary_precision(logits, targets)), 4)
      0.6667

    References:
      scikit-learn ``sklearn.metrics.precision_score``.
    """
    tp, predicted, _ = _binary_counts(predictions, targets, threshold, from_logits, weights, where)
    return _ratio(tp, predicted)


def binary_recall(predictions, targets, *, from_logits=True, threshold=0.5, weights=None, where=None):
    r"""``TP / (TP + FN)``: of the positive examples, the fraction predicted positive.

    .. math::

        \text{recall} = \frac{\sum_i w_i\,[\hat y_i][y_i]}{\sum_i w_i\,[y_i]}

    As scikit-learn ``recall_score`` (``zero_division=0``), Keras ``Recall``.

    Args:
      predictions: logits (default), probabilities with ``from_logits=False``,
        or booleans (decisions as they are).
      targets: 0/1 (or boolean) labels of the same shape.
      from_logits: whether float ``predictions`` are logits.
      threshold: decision threshold on the probability, in [0, 1].
      weights, where: per-example weights and mask.

    Returns:
      A float32 scalar in [0, 1] (0.0 when the denominator is 0).

    Raises:
      ValueError: shapes that differ, ``threshold`` outside [0, 1].
      LossInputError: probabilities outside [0, 1] with ``from_logits=False``.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> probs, targets = jnp.array([0.9, 0.2, 0.4, 0.7]), jnp.array([1, 0, 1, 1])
      >>> round(float(jloss.metrics.binary_recall(probs, targets, from_logits=False)), 4)
      0.6667

    References:
      scikit-learn ``sklearn.metrics.recall_score``.
    """
    tp, _, actual = _binary_counts(predictions, targets, threshold, from_logits, weights, where)
    return _ratio(tp, actual)


def binary_f1(predictions, targets, *, from_logits=True, threshold=0.5, weights=None, where=None):
    r"""F1 score, the harmonic mean of precision and recall.

    .. math::

        F_1 = \frac{2\,TP}{2\,TP + FP + FN}

    As scikit-learn ``f1_score`` (``zero_division=0``).

    Args:
      predictions: logits (default), probabilities with ``from_logits=False``,
        or booleans (decisions as they are).
      targets: 0/1 (or boolean) labels of the same shape.
      from_logits: whether float ``predictions`` are logits.
      threshold: decision threshold on the probability, in [0, 1].
      weights, where: per-example weights and mask.

    Returns:
      A float32 scalar in [0, 1] (0.0 when the denominator is 0).

    Raises:
      ValueError: shapes that differ, ``threshold`` outside [0, 1].
      LossInputError: probabilities outside [0, 1] with ``from_logits=False``.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> logits, targets = jnp.array([2.0, -1.0, 0.5, -3.0]), jnp.array([1, 0, 0, 1])
      >>> round(float(jloss.metrics.binary_f1(logits, targets)), 4)
      0.5

    References:
      scikit-learn ``sklearn.metrics.f1_score``; van Rijsbergen, C. J. (1979).
      *Information Retrieval*.
    """
    tp, predicted, actual = _binary_counts(predictions, targets, threshold, from_logits, weights, where)
    return _ratio(2.0 * tp, predicted + actual)


@jax.jit
def mae(predictions, targets, *, weights=None, where=None):
    r"""Mean absolute error, a weighted mean of ``|predictions - targets|``.

    .. math:: \mathrm{MAE} = \frac{\sum_i w_i \,|\hat y_i - y_i|}{\sum_i w_i}

    Regression evaluation in the targets' units. As scikit-learn
    ``mean_absolute_error``; the loss is :func:`jloss.mean_absolute_error`.

    Args:
      predictions: ``(...)`` array.
      targets: ``(...)`` array of the shape of ``predictions``.
      weights: non-negative per-example weights broadcastable to ``targets.shape``, or None.
      where: boolean mask broadcastable to ``targets.shape``, or None.

    Returns:
      A float32 scalar; 0.0 when nothing is counted.

    Raises:
      ValueError: ``predictions`` and ``targets`` differ in shape.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> float(jloss.metrics.mae(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 1.0, 1.0])))
      1.0

    References:
      scikit-learn ``sklearn.metrics.mean_absolute_error``.
    """
    predictions = jnp.asarray(predictions, jnp.float32)
    targets = jnp.asarray(targets, jnp.float32)
    check_same_shape(predictions=predictions, targets=targets)
    return _weighted_mean(jnp.abs(predictions - targets), _example_weights(targets.shape, weights, where))


@jax.jit
def rmse(predictions, targets, *, weights=None, where=None):
    r"""Root mean squared error, the square root of a weighted mean of squared errors.

    .. math:: \mathrm{RMSE} = \sqrt{\frac{\sum_i w_i \,(\hat y_i - y_i)^2}{\sum_i w_i}}

    Regression evaluation in the targets' units, weighting large errors more
    than :func:`mae`. As scikit-learn ``root_mean_squared_error`` and Keras
    ``RootMeanSquaredError``.

    Args:
      predictions: ``(...)`` array.
      targets: ``(...)`` array of the shape of ``predictions``.
      weights: non-negative per-example weights broadcastable to ``targets.shape``, or None.
      where: boolean mask broadcastable to ``targets.shape``, or None.

    Returns:
      A float32 scalar; 0.0 when nothing is counted.

    Raises:
      ValueError: ``predictions`` and ``targets`` differ in shape.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> round(float(jloss.metrics.rmse(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 1.0, 1.0]))), 4)
      1.291

    References:
      scikit-learn ``sklearn.metrics.root_mean_squared_error``.
    """
    predictions = jnp.asarray(predictions, jnp.float32)
    targets = jnp.asarray(targets, jnp.float32)
    check_same_shape(predictions=predictions, targets=targets)
    w = _example_weights(targets.shape, weights, where)
    return jnp.sqrt(_weighted_mean(jnp.square(predictions - targets), w))


def _confidence(predictions, labels, from_logits):
    """Top-class confidence in [0, 1] and correctness, both of ``labels.shape``.

    Over classes ``(..., C)``: the largest softmax probability (of the logits,
    or the probabilities as given) and whether its class is the label. Binary
    (``labels.shape``): the prediction is positive at ``p > 0.5`` (logit > 0)
    with confidence ``max(p, 1 - p)`` (``sigmoid(|x|)`` for a logit ``x``).
    Confidences are clipped to [0, 1], so unchecked (traced) probabilities out
    of range cannot push the calibration error above 1.
    """
    predictions = jnp.asarray(predictions, jnp.float32)
    if _is_binary(predictions, labels):
        positive = _decisions(predictions, 0.5, from_logits)
        if from_logits:
            confidence = jax.nn.sigmoid(jnp.abs(predictions))
        else:
            confidence = jnp.where(positive, predictions, 1.0 - predictions)
        correct = positive == (labels > 0.5)
    else:
        probabilities = jax.nn.softmax(predictions, axis=-1) if from_logits else predictions
        confidence = jnp.max(probabilities, axis=-1)
        correct = jnp.argmax(predictions, axis=-1) == labels
    return jnp.clip(confidence, 0.0, 1.0), correct


def _bins(confidence, correct, num_bins, w):
    """Confidence, correctness and weighted bin membership over the flattened examples."""
    confidence = jnp.where(w > 0, confidence.ravel(), 0.0)
    correct = correct.ravel().astype(jnp.float32)
    interior_edges = jnp.linspace(0.0, 1.0, num_bins + 1, dtype=jnp.float32)[1:-1]
    # bin b holds (b/M, (b+1)/M]: the number of interior edges below the confidence
    bins = jnp.sum(confidence[:, None] > interior_edges[None, :], axis=1)
    in_bin = (bins[:, None] == jnp.arange(num_bins)[None, :]) * w[:, None]
    return confidence, correct, in_bin


def reliability_bins(predictions, labels, *, from_logits=True, num_bins=15, weights=None, where=None):
    r"""Confidence, correctness and bin membership of each example: the binning of a reliability diagram.

    Bin :math:`b` of :math:`M` holds the confidences in :math:`(b / M, (b + 1) / M]`
    (bin 0 also holds 0). Summed over the examples, ``in_bin`` gives the
    (weighted) count :math:`n_b` of each bin, ``in_bin * correct[:, None]`` its
    correct ones, ``in_bin * confidence[:, None]`` its total confidence:

    .. math::

        \mathrm{acc}_b = \frac{\sum_i \mathrm{in\_bin}_{ib} \, \mathrm{correct}_i}{n_b},
        \qquad
        \mathrm{conf}_b = \frac{\sum_i \mathrm{in\_bin}_{ib} \, \mathrm{confidence}_i}{n_b}.

    A reliability diagram plots :math:`\mathrm{acc}_b` against the bin; the
    :func:`expected_calibration_error` is :math:`\sum_b (n_b / n) |\mathrm{acc}_b - \mathrm{conf}_b|`
    over these same bins (Guo et al. 2017).

    Args:
      predictions: class scores ``(..., C)`` with integer ``labels`` ``(...)``;
        or binary scores of ``labels.shape`` with 0/1 labels, as for
        :func:`expected_calibration_error`: logits by default, probabilities
        with ``from_logits=False`` (checked to lie in [0, 1]).
      labels: integer class indices, or 0/1 labels in the binary form.
      from_logits: whether ``predictions`` are logits.
      num_bins: number of equal-width bins ``M`` (static).
      weights, where: per-example weights and boolean mask of ``labels.shape``;
        a masked example has weight 0 in every bin.

    Returns:
      ``(confidence, correct, in_bin)``: float32 ``(n,)``, ``(n,)`` and
      ``(n, num_bins)`` over the ``n`` flattened examples; ``confidence`` is the
      top probability (binary: ``max(p, 1 - p)``), ``correct`` is 1.0 where the
      prediction is the label, ``in_bin[i, b]`` is the weight of example ``i``
      if its confidence lies in bin ``b``, else 0.

    Raises:
      ValueError: if ``num_bins < 1``, or the shapes of ``predictions`` and ``labels`` do not fit.
      LossInputError: probabilities outside [0, 1] with ``from_logits=False``.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> probs = jnp.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
      >>> confidence, correct, in_bin = jloss.metrics.reliability_bins(probs, jnp.array([0, 0, 0]),
      ...                                                                from_logits=False, num_bins=4)
      >>> in_bin.sum(0).tolist(), (in_bin * correct[:, None]).sum(0).tolist()
      ([0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0])

    References:
      C. Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.
    """

    labels = jnp.asarray(labels)
    _check_calibration_inputs(predictions, labels, num_bins)
    _check_probabilities(predictions, from_logits, where, labels.shape)
    confidence, correct = _confidence(predictions, labels, from_logits=from_logits)
    return _bins(confidence, correct, num_bins, _example_weights(labels.shape, weights, where).ravel())


def _check_calibration_inputs(predictions, labels, num_bins):
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    if not _is_binary(predictions, labels):
        _class_scores(predictions, labels)


def expected_calibration_error(predictions, labels, *, from_logits=True, num_bins=15, weights=None,
                               where=None):
    r"""Expected calibration error with ``num_bins`` equal-width confidence bins.

    .. math::

        \text{ECE} = \sum_{b=1}^{M} \frac{n_b}{n}\,\bigl|\text{acc}_b - \text{conf}_b\bigr|

    over the bins ``(b / M, (b + 1) / M]`` (the first bin also holds
    confidence 0), where ``n_b`` is the (weighted) number of examples whose
    confidence falls in bin ``b``, ``acc_b`` their accuracy and ``conf_b``
    their mean confidence (Guo et al., 2017). Always in [0, 1]. For judging
    whether a classifier's probabilities can be trusted; as torchmetrics
    ``CalibrationError(norm="l1")``.

    Args:
      predictions: logits (default) or probabilities (``from_logits=False``,
        checked to lie in [0, 1]) over classes ``(..., C)`` with integer
        ``labels`` ``(...)``: confidence is the top softmax probability,
        correct when its class is the label. Or, of ``labels.shape`` with 0/1
        labels (binary), a logit or ``P(y = 1)``: the prediction is positive
        at ``p > 0.5`` with confidence ``max(p, 1 - p)``.
      labels: integer class indices, or 0/1 labels in the binary form.
      from_logits: whether ``predictions`` are logits.
      num_bins: number of bins ``M`` (>= 1).
      weights, where: per-example weights and mask of ``labels.shape``.

    Returns:
      A float32 scalar in [0, 1].

    Raises:
      ValueError: ``num_bins < 1``; shapes that do not fit.
      LossInputError: probabilities outside [0, 1] with ``from_logits=False``.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> round(float(jloss.metrics.expected_calibration_error(jnp.eye(3) * 5, jnp.arange(3))), 4)
      0.0133
      >>> probs, labels = jnp.array([[0.9, 0.1], [0.8, 0.2]]), jnp.array([0, 1])
      >>> round(float(jloss.metrics.expected_calibration_error(probs, labels, from_logits=False)), 4)
      0.45

    References:
      Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural
      Networks", ICML 2017.
    """
    labels = jnp.asarray(labels)
    _check_calibration_inputs(predictions, labels, num_bins)
    _check_probabilities(predictions, from_logits, where, labels.shape)
    _example_weights(labels.shape, weights, where)
    return _expected_calibration_error(predictions, labels, weights, where, from_logits=from_logits,
                                       num_bins=num_bins)


@functools.partial(jax.jit, static_argnames=("from_logits", "num_bins"))
def _expected_calibration_error(predictions, labels, weights, where, *, from_logits, num_bins):
    confidence, correct = _confidence(predictions, labels, from_logits)
    w = _example_weights(labels.shape, weights, where).ravel()
    confidence, correct, in_bin = _bins(confidence, correct, num_bins, w)
    count = jnp.sum(in_bin, axis=0)
    gap = jnp.abs(jnp.sum(in_bin * (correct - confidence)[:, None], axis=0))  # n_b |acc_b - conf_b|
    return _ratio(jnp.sum(gap), jnp.sum(count))

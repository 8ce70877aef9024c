"""Evaluation metrics: accuracy, top-k accuracy, binary precision / recall / F1, MAE, RMSE, ECE.

Every metric is a jitted pure function (no state) that
returns a float32 scalar and takes the same optional ``weights`` (non-negative,
broadcastable to the per-example shape) and ``where`` (boolean mask) as the
losses. Masked examples count for nothing, and a metric with nothing counted
(empty batch, all masked, no predicted positives for precision, ...) is 0.0,
as scikit-learn's ``zero_division=0``.

Metrics that are ratios of sums (precision, recall, F1, ECE) are not means of
per-example values: compute them over the whole evaluation set at once, not
as an average of per-batch values.
"""

import functools

import jax
import jax.numpy as jnp

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


@jax.jit
def accuracy(predictions, labels, *, weights=None, where=None):
    r"""Fraction of correct predictions.

    .. math:: \mathrm{acc} = \frac{\sum_i w_i \,[\arg\max_c s_{ic} = y_i]}{\sum_i w_i}

    Multi-class evaluation; the class is the ``argmax`` of the scores (logits or
    probabilities give the same answer). As scikit-learn ``accuracy_score`` and
    Keras ``SparseCategoricalAccuracy``.

    Args:
      predictions: ``(..., C)`` scores compared by ``argmax``, or predicted class
        indices of ``labels.shape``.
      labels: ``(...)`` integer class indices.
      weights: non-negative per-example weights broadcastable to ``labels.shape``, or None.
      where: boolean mask broadcastable to ``labels.shape``, or None.

    Returns:
      A float32 scalar in [0, 1]; 0.0 when nothing is counted.

    Raises:
      ValueError: ``predictions`` is not ``labels.shape`` or ``labels.shape + (C,)``.
      TypeError: float ``labels``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> scores = jnp.array([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 0.0]])
      >>> labels = jnp.array([0, 1, 0])
      >>> round(float(jloss.metrics.accuracy(scores, labels)), 4)
      0.6667
      >>> float(jloss.metrics.accuracy(scores, labels, weights=jnp.array([1.0, 1.0, 0.0])))
      0.5

    References:
      scikit-learn ``sklearn.metrics.accuracy_score``.
    """
    predictions = jnp.asarray(predictions)
    labels = jnp.asarray(labels)
    if predictions.shape == labels.shape:
        predicted = predictions
    else:
        predictions, labels = _class_scores(predictions, labels)
        predicted = jnp.argmax(predictions, axis=-1)
    correct = (predicted == labels).astype(jnp.float32)
    return _weighted_mean(correct, _example_weights(labels.shape, weights, where))


@functools.partial(jax.jit, static_argnames="k")
def top_k_accuracy(predictions, labels, *, k=5, weights=None, where=None):
    r"""Fraction of examples whose label is among the ``k`` highest scores.

    .. math:: \mathrm{acc}_k = \frac{\sum_i w_i \,[s_{i y_i} \ge s_{i(k)}]}{\sum_i w_i}

    with ``s_(k)`` the ``k``-th largest score of the example: a label tied with
    it counts as correct. Many-class evaluation (ImageNet top-5). As
    scikit-learn ``top_k_accuracy_score`` and Keras ``SparseTopKCategoricalAccuracy``.

    Args:
      predictions: ``(..., C)`` scores (logits or probabilities).
      labels: ``(...)`` integer class indices.
      k: ``1 <= k <= C`` (a Python int).
      weights: non-negative per-example weights broadcastable to ``labels.shape``, or None.
      where: boolean mask broadcastable to ``labels.shape``, or None.

    Returns:
      A float32 scalar in [0, 1]; 0.0 when nothing is counted.

    Raises:
      ValueError: ``predictions`` is not ``labels.shape + (C,)``, or ``k`` is
        outside ``[1, C]``.
      TypeError: float ``labels``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> scores = jnp.array([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 2.0]])
      >>> round(float(jloss.metrics.top_k_accuracy(scores, jnp.array([0, 1, 1]), k=2)), 4)
      0.6667

    References:
      scikit-learn ``sklearn.metrics.top_k_accuracy_score``.
    """
    predictions, labels = _class_scores(predictions, labels)
    num_classes = predictions.shape[-1]
    if not 1 <= k <= num_classes:
        raise ValueError(f"k must be in [1, {num_classes}] (the number of classes), got {k}")
    kth = jnp.sort(predictions, axis=-1)[..., num_classes - k]
    label_score = jnp.take_along_axis(predictions, jnp.clip(labels, 0, num_classes - 1)[..., None],
                                      axis=-1)[..., 0]
    in_range = (labels >= 0) & (labels < num_classes)
    correct = (in_range & (label_score >= kth)).astype(jnp.float32)
    return _weighted_mean(correct, _example_weights(labels.shape, weights, where))


def _binary_counts(predictions, targets, threshold, weights, where):
    """Weighted true positives, predicted positives and actual positives."""
    predictions = jnp.asarray(predictions)
    targets = jnp.asarray(targets)
    check_same_shape(predictions=predictions, targets=targets)
    w = _example_weights(targets.shape, weights, where)
    predicted = predictions > threshold if predictions.dtype != jnp.bool_ else predictions
    actual = targets > 0.5 if targets.dtype != jnp.bool_ else targets
    tp = jnp.sum(jnp.where(predicted & actual, w, 0.0))
    return tp, jnp.sum(jnp.where(predicted, w, 0.0)), jnp.sum(jnp.where(actual, w, 0.0))


@jax.jit
def binary_precision(predictions, targets, *, threshold=0.5, weights=None, where=None):
    r"""Precision: of the examples predicted positive, the fraction that are.

    .. math:: P = \frac{TP}{TP + FP}

    Binary (or multi-label, elementwise) evaluation, weighted counts with
    ``weights``. A ratio of sums: compute it over the whole evaluation set. As
    scikit-learn ``precision_score`` with ``zero_division=0``.

    Args:
      predictions: ``(...)`` scores, positive when ``predictions > threshold``,
        or booleans.
      targets: ``(...)`` 0/1 (or boolean) labels of the shape of ``predictions``.
      threshold: the decision threshold on ``predictions``.
      weights: non-negative per-example weights broadcastable to ``targets.shape``, or None.
      where: boolean mask broadcastable to ``targets.shape``, or None.

    Returns:
      A float32 scalar in [0, 1]; 0.0 when the denominator is 0.

    Raises:
      ValueError: ``predictions`` and ``targets`` differ in shape, or ``weights``
        / ``where`` do not broadcast.
      TypeError: a ``where`` that is not boolean.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> scores = jnp.array([2.0, -1.0, 3.0, 1.0, -3.0])  # positive: 2.0, 3.0, 1.0
      >>> targets = jnp.array([1, 1, 0, 1, 1])
      >>> round(float(jloss.metrics.binary_precision(scores, targets)), 4)
      0.6667

    References:
      scikit-learn ``sklearn.metrics.precision_score``.
    """
    tp, predicted, _ = _binary_counts(predictions, targets, threshold, weights, where)
    return _ratio(tp, predicted)


@jax.jit
def binary_recall(predictions, targets, *, threshold=0.5, weights=None, where=None):
    r"""Recall: of the positive examples, the fraction predicted positive.

    .. math:: R = \frac{TP}{TP + FN}

    Binary (or multi-label, elementwise) evaluation, weighted counts with
    ``weights``. A ratio of sums: compute it over the whole evaluation set. As
    scikit-learn ``recall_score`` with ``zero_division=0``.

    Args:
      predictions: ``(...)`` scores, as :func:`binary_precision`.
      targets: ``(...)`` 0/1 (or boolean) labels of the shape of ``predictions``.
      threshold: the decision threshold on ``predictions``.
      weights: non-negative per-example weights broadcastable to ``targets.shape``, or None.
      where: boolean mask broadcastable to ``targets.shape``, or None.

    Returns:
      A float32 scalar in [0, 1]; 0.0 when the denominator is 0.

    Raises:
      ValueError: ``predictions`` and ``targets`` differ in shape, or ``weights``
        / ``where`` do not broadcast.
      TypeError: a ``where`` that is not boolean.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> scores = jnp.array([2.0, -1.0, 3.0, 1.0, -3.0])  # positive: 2.0, 3.0, 1.0
      >>> targets = jnp.array([1, 1, 0, 1, 1])
      >>> float(jloss.metrics.binary_recall(scores, targets))
      0.5

    References:
      scikit-learn ``sklearn.metrics.recall_score``.
    """
    tp, _, actual = _binary_counts(predictions, targets, threshold, weights, where)
    return _ratio(tp, actual)


@jax.jit
def binary_f1(predictions, targets, *, threshold=0.5, weights=None, where=None):
    r"""F1 score: the harmonic mean of precision and recall.

    .. math:: F_1 = \frac{2\,TP}{2\,TP + FP + FN}

    Binary evaluation under class imbalance, where accuracy says little. A ratio
    of sums: compute it over the whole evaluation set. As scikit-learn
    ``f1_score`` with ``zero_division=0``.

    Args:
      predictions: ``(...)`` scores, as :func:`binary_precision`.
      targets: ``(...)`` 0/1 (or boolean) labels of the shape of ``predictions``.
      threshold: the decision threshold on ``predictions``.
      weights: non-negative per-example weights broadcastable to ``targets.shape``, or None.
      where: boolean mask broadcastable to ``targets.shape``, or None.

    Returns:
      A float32 scalar in [0, 1]; 0.0 when the denominator is 0.

    Raises:
      ValueError: ``predictions`` and ``targets`` differ in shape, or ``weights``
        / ``where`` do not broadcast.
      TypeError: a ``where`` that is not boolean.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> scores = jnp.array([2.0, -1.0, 3.0, 1.0, -3.0])  # positive: 2.0, 3.0, 1.0
      >>> targets = jnp.array([1, 1, 0, 1, 1])
      >>> round(float(jloss.metrics.binary_f1(scores, targets)), 4)
      0.5714

    References:
      scikit-learn ``sklearn.metrics.f1_score``; van Rijsbergen, C. J. (1979).
      *Information Retrieval*.
    """
    tp, predicted, actual = _binary_counts(predictions, targets, threshold, weights, where)
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


@functools.partial(jax.jit, static_argnames="num_bins")
def reliability_bins(probabilities, labels, *, num_bins=15, weights=None, where=None):
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
      probabilities: class probabilities ``(..., C)`` with integer ``labels``
        ``(...)``; or ``P(y = 1)`` of ``labels.shape`` with 0/1 labels (binary),
        as for :func:`expected_calibration_error`.
      labels: integer class indices, or 0/1 labels in the binary form.
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
      ValueError: if ``num_bins < 1``, or the shapes of ``probabilities`` and ``labels`` do not fit.

    Examples:
      >>> import jax.numpy as jnp, jloss
      >>> probs = jnp.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
      >>> confidence, correct, in_bin = jloss.metrics.reliability_bins(probs, jnp.array([0, 0, 0]),
      ...                                                                num_bins=4)
      >>> in_bin.sum(0).tolist(), (in_bin * correct[:, None]).sum(0).tolist()
      ([0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0])

    References:
      C. Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.
    """
    probabilities = jnp.asarray(probabilities, jnp.float32)
    labels = jnp.asarray(labels)
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    if probabilities.shape == labels.shape:
        predicted_positive = probabilities >= 0.5
        confidence = jnp.where(predicted_positive, probabilities, 1.0 - probabilities)
        correct = predicted_positive == (labels > 0.5)
    else:
        probabilities, labels = _class_scores(probabilities, labels, "probabilities")
        confidence = jnp.max(probabilities, axis=-1)
        correct = jnp.argmax(probabilities, axis=-1) == labels
    w = _example_weights(labels.shape, weights, where).ravel()
    confidence = jnp.where(w > 0, confidence.ravel(), 0.0)
    correct = correct.ravel().astype(jnp.float32)
    interior_edges = jnp.linspace(0.0, 1.0, num_bins + 1, dtype=jnp.float32)[1:-1]
    # bin b holds (b/M, (b+1)/M]: the number of interior edges below the confidence
    bins = jnp.sum(confidence[:, None] > interior_edges[None, :], axis=1)
    in_bin = (bins[:, None] == jnp.arange(num_bins)[None, :]) * w[:, None]
    return confidence, correct, in_bin


@functools.partial(jax.jit, static_argnames="num_bins")
def expected_calibration_error(probabilities, labels, *, num_bins=15, weights=None, where=None):
    r"""Expected calibration error with ``num_bins`` equal-width confidence bins.

    .. math:: \mathrm{ECE} = \sum_b \frac{n_b}{n} \,\big|\mathrm{acc}_b - \mathrm{conf}_b\big|

    over the bins ``(b / M, (b + 1) / M]`` (the first bin also holds confidence
    0), where ``n_b`` is the (weighted) number of examples whose confidence falls
    in bin ``b``. How far a classifier's confidence is from its accuracy: 0 for a
    calibrated model, always in [0, 1]. A ratio of sums: compute it over the
    whole evaluation set.

    Args:
      probabilities: class probabilities ``(..., C)`` with integer ``labels``
        ``(...)``: confidence is the top probability, correct when its class is
        the label. Or ``P(y = 1)`` of ``labels.shape`` with 0/1 labels (binary):
        the prediction is ``p >= 0.5`` with confidence ``max(p, 1 - p)``.
      labels: integer class indices, or 0/1 labels in the binary form.
      num_bins: the number of bins ``M`` (a Python int ``>= 1``).
      weights: non-negative per-example weights broadcastable to ``labels.shape``, or None.
      where: boolean mask broadcastable to ``labels.shape``, or None.

    Returns:
      A float32 scalar in [0, 1]; 0.0 when nothing is counted.

    Raises:
      ValueError: ``num_bins < 1``, or shapes that fit neither form.
      TypeError: float ``labels`` in the class form.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> uniform = jnp.full((4, 4), 0.25)  # confidence 0.25, predicted class 0
      >>> float(jloss.metrics.expected_calibration_error(uniform, jnp.array([0, 0, 0, 1])))
      0.5

    References:
      Guo, C. et al. (2017). On Calibration of Modern Neural Networks. ICML;
      Naeini, M. P. et al. (2015). Obtaining Well Calibrated Probabilities Using
      Bayesian Binning. AAAI.
    """
    confidence, correct, in_bin = reliability_bins(probabilities, labels, num_bins=num_bins, weights=weights,
                                                   where=where)
    count = jnp.sum(in_bin, axis=0)
    gap = jnp.abs(jnp.sum(in_bin * (correct - confidence)[:, None], axis=0))  # n_b |acc_b - conf_b|
    return _ratio(jnp.sum(gap), jnp.sum(count))

# %% [markdown]
# # Imbalanced classification: BCE, weighted BCE and focal loss
#
# When 1 example in 20 is positive, a classifier trained with plain binary cross-entropy
# learns to say "negative" a lot: accuracy looks excellent and recall is poor. Two standard
# remedies are weighting the positives (`pos_weight`) and the focal loss. We train the same
# small network with each and compare precision, recall, the precision-recall curve and
# calibration: what each remedy buys, and what it costs.
# %% [install] extras=plot,demo
# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_classification
from sklearn.metrics import average_precision_score, precision_recall_curve
from sklearn.model_selection import train_test_split

import jloss

# %% [markdown]
# ## Data: 5% positives
# %%
x, y = make_classification(n_samples=6000, n_features=12, n_informative=6, weights=[0.95],
                           class_sep=0.8, flip_y=0.02, random_state=0)
x_train, x_test, y_train, y_test = train_test_split(x.astype(np.float32), y.astype(np.float32),
                                                    test_size=0.5, stratify=y, random_state=0)
positive_fraction = float(y_train.mean())
print(f"train {len(y_train)}, test {len(y_test)}, positives {positive_fraction:.1%}")

# %% [markdown]
# ## Model and training
#
# A two-layer network with one output logit. Every loss takes the logits; the sigmoid is
# applied inside the loss. The three losses:
#
# - **BCE**: `binary_cross_entropy(logits, labels)`.
# - **weighted BCE**: `pos_weight = negatives / positives` (about 16 here) makes the
#   positives count as much in total as the negatives.
# - **focal**: `binary_focal_loss(gamma=2, alpha=...)` (Lin et al., 2017) multiplies each
#   example's BCE by (1 - p_true)^γ, which down-weights the many easy, confidently
#   classified examples, and by `alpha` for positives and `1 - alpha` for negatives.
#   `alpha=0.25` is the default of the paper and of torchvision (tuned for object detection,
#   where γ already removes the easy background); `alpha=0.9` weights the rare positives up.
# %%
neg_per_pos = (1 - positive_fraction) / positive_fraction
LOSSES = {
    "BCE": jloss.binary_cross_entropy,
    f"weighted BCE (pos_weight={neg_per_pos:.0f})":
        lambda z, t: jloss.binary_cross_entropy(z, t, pos_weight=neg_per_pos),
    "focal (γ=2, α=0.25)": lambda z, t: jloss.binary_focal_loss(z, t, gamma=2.0, alpha=0.25),
    "focal (γ=2, α=0.9)": lambda z, t: jloss.binary_focal_loss(z, t, gamma=2.0, alpha=0.9),
}


def init(key, sizes=(12, 32, 1)):
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"w": jax.random.normal(k, (a, b)) / np.sqrt(a), "b": jnp.zeros(b)}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)]


def logits_of(params, x):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return (x @ params[-1]["w"] + params[-1]["b"])[:, 0]


def train(loss, steps=500, batch_size=500):
    def loss_fn(params, batch):
        return loss(logits_of(params, batch["x"]), batch["y"])

    step = jloss.make_train_step(loss_fn)
    state = jloss.TrainState.create(params=init(jax.random.key(0)), tx=jloss.optimizer("adam", 3e-3))
    data = {"x": jnp.asarray(x_train), "y": jnp.asarray(y_train)}
    order = jax.random.permutation(jax.random.key(1), steps * batch_size) % len(y_train)

    def body(state, indices):
        return step(state, jax.tree.map(lambda a: a[indices], data))

    state, metrics = jax.lax.scan(body, state, order.reshape(steps, batch_size))
    return state.params, metrics["loss"]


probabilities = {}
for name, loss in LOSSES.items():
    params, history = train(loss)
    probabilities[name] = np.asarray(jax.nn.sigmoid(logits_of(params, jnp.asarray(x_test))))
    print(f"{name:26s} final training loss {float(history[-10:].mean()):.4f}")

# %% [markdown]
# ## Metrics
#
# At the usual threshold of 0.5:
#
# - **precision** = TP / (TP + FP): of the examples called positive, how many are;
# - **recall** = TP / (TP + FN): of the positives, how many were found;
# - **average precision** (the area under the precision-recall curve) measures the ranking,
#   independent of any threshold;
# - **expected calibration error** (ECE): the gap between the predicted probability and the
#   observed frequency, averaged over 15 confidence bins.
#
# `jloss.metrics` computes them from logits by default, like the losses; here we have
# probabilities, so we pass `from_logits=False` (they are checked to lie in [0, 1]).
# Precision, recall and ECE are ratios of sums, so compute them over the whole test set at
# once, not as a mean of per-batch values.
# %%
def precision_recall(p, labels, threshold=0.5):
    return (float(jloss.metrics.binary_precision(p, labels, from_logits=False, threshold=threshold)),
            float(jloss.metrics.binary_recall(p, labels, from_logits=False, threshold=threshold)))


print(f"{'loss':26s} {'accuracy':>8s} {'precision':>9s} {'recall':>6s} {'F1':>5s} {'AP':>5s} {'ECE':>6s}")
for name, p in probabilities.items():
    precision, recall = precision_recall(p, y_test)
    accuracy = jloss.metrics.accuracy(p, y_test, from_logits=False)
    f1 = jloss.metrics.binary_f1(p, y_test, from_logits=False)
    ap = average_precision_score(y_test, p)
    ece = jloss.metrics.expected_calibration_error(p, y_test, from_logits=False)
    print(f"{name:26s} {accuracy:8.3f} {precision:9.3f} {recall:6.3f} {f1:5.3f} {ap:5.3f} {ece:6.3f}")
print(f"{'always negative':26s} {1 - y_test.mean():8.3f}")

# %% [markdown]
# Plain BCE has the best accuracy and calibration but finds only half of the positives.
# Weighting the positives (`pos_weight`, or focal with a large `alpha`) trades precision for
# recall at the 0.5 threshold; focal with `alpha=0.25` weights positives *down* and finds
# fewer. The average precision, which does not depend on the threshold, hardly changes: all
# the losses *rank* the examples about equally well; they mostly move where 0.5 falls.
#
# ## Precision-recall curves
# %%
fig, ax = plt.subplots(figsize=(6, 4))
for name, p in probabilities.items():
    precision, recall, _ = precision_recall_curve(y_test, p)
    (line,) = ax.plot(recall, precision, label=name)
    at_half = precision_recall(p, y_test)
    ax.plot(at_half[1], at_half[0], "o", c=line.get_color())
ax.axhline(y_test.mean(), c="0.6", ls=":", label="chance")
ax.set(xlabel="recall", ylabel="precision", title="precision-recall (dots: threshold 0.5)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Calibration
#
# A calibrated model's predicted probability matches the frequency: of the examples given
# p ≈ 0.3, about 30% are positive. The reliability diagram plots the observed fraction of
# positives against the mean predicted probability in 10 bins.
# %%
def reliability(p, labels, num_bins=10):
    bins = np.minimum((p * num_bins).astype(int), num_bins - 1)
    used = [b for b in range(num_bins) if np.any(bins == b)]
    return ([p[bins == b].mean() for b in used], [labels[bins == b].mean() for b in used])


fig, ax = plt.subplots(figsize=(6, 4))
ax.plot([0, 1], [0, 1], c="0.6", ls=":", label="perfectly calibrated")
for name, p in probabilities.items():
    ax.plot(*reliability(p, y_test), "o-", label=name)
ax.set(xlabel="mean predicted probability", ylabel="fraction of positives", title="reliability diagram")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# (The middle bins hold few examples, so their points are noisy; the ECE above weights each
# bin by its size.) `pos_weight` makes the model over-predict the positive class: its
# probabilities lie far above the observed frequency, by design, since it trains as if
# positives were `pos_weight` times more common; focal with `alpha=0.9` does the same more
# mildly. The focal term itself pulls confident predictions towards the middle, so no focal
# model is calibrated. Plain BCE has by far the smallest calibration error.
#
# ## Or: keep BCE and move the threshold
#
# Because the ranking is about as good, the cheapest remedy is often to train with plain BCE
# (keeping calibrated probabilities) and choose the threshold for the recall you need:
# %%
p = probabilities["BCE"]
for threshold in (0.5, 0.3, 0.2, 0.1):
    precision, recall = precision_recall(p, y_test, threshold)
    print(f"BCE, threshold {threshold:.1f}: precision {precision:.3f}  recall {recall:.3f}")

# %% [markdown]
# **Summary.**
#
# - Report precision and recall (or the PR curve / average precision), not accuracy: the
#   "always negative" model is 95% accurate.
# - `pos_weight` (or the focal loss with an `alpha` that weights the positives up) raises
#   recall at the default threshold, at the cost of precision and calibration. Use them when
#   the decision at 0.5 must favour the rare class, or when the easy negatives overwhelm
#   training (the focal loss was designed for detectors that see thousands of background
#   boxes per object).
# - If you need probabilities (risk scores, expected costs), train with plain BCE and pick
#   the threshold on validation data.

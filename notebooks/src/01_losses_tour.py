# %% [markdown]
# # A tour of the jloss losses
#
# Every jloss loss has one calling convention:
#
# ```python
# loss(predictions, targets, *, <loss options>, weights=None, where=None, reduction="mean")
# ```
#
# This notebook plots the losses and their gradients, shows how `weights`, `where` and
# `reduction` work, gives the guide for choosing a loss, and walks through the classic
# mistakes together with the error jloss raises for each.
# %% [install] extras=plot
# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt

import jloss

print("jax", jax.__version__, "| jloss", jloss.__version__, "| devices", jax.devices())

# %% [markdown]
# ## 1. Regression losses against the error
#
# With `e = predictions - targets`: MSE grows as e², MAE as |e|, Huber and smooth L1 are
# quadratic near 0 and linear beyond `delta` / `beta`, log-cosh is a smooth version of the
# same idea, and the pinball loss is the asymmetric loss whose minimiser is a quantile.
#
# `reduction="none"` gives the loss of each element; the gradient of the `"sum"` gives the
# gradient of each element.
# %%
errors = jnp.linspace(-3.0, 3.0, 301)
zeros = jnp.zeros_like(errors)
regression = {
    "MSE": jloss.mean_squared_error,
    "MAE": jloss.mean_absolute_error,
    "Huber (delta=1)": lambda p, t, **kw: jloss.huber(p, t, delta=1.0, **kw),
    "log-cosh": jloss.log_cosh,
    "pinball (q=0.9)": lambda p, t, **kw: jloss.pinball(p, t, quantile=0.9, **kw),
}

fig, (ax_value, ax_grad) = plt.subplots(1, 2, figsize=(10, 3.5))
for name, loss in regression.items():
    value = loss(errors, zeros, reduction="none")
    grad = jax.grad(lambda p, loss=loss: loss(p, zeros, reduction="sum"))(errors)
    ax_value.plot(errors, value, label=name)
    ax_grad.plot(errors, grad, label=name)
ax_value.set(xlabel="error  e = prediction - target", ylabel="loss", ylim=(0, 4.5), title="value")
ax_grad.set(xlabel="error  e = prediction - target", ylabel="d loss / d prediction", ylim=(-3, 3),
            title="gradient")
ax_value.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The gradient plot is the one to remember: the MSE gradient grows with the error, so one
# large outlier can dominate a batch; MAE and Huber cap it (notebook 03 shows what that does
# to a fit).
#
# ## 2. Binary losses against the predicted probability
#
# Binary losses take **logits** (unnormalised scores): the sigmoid is applied inside the
# loss, stably. Below the label is 1 and the predicted probability p = sigmoid(logit) goes
# from 0 to 1. The focal loss (Lin et al., 2017) multiplies the cross-entropy by (1 - p)^γ,
# which leaves hard examples (small p) alone and silences the easy ones (p near 1).
# %%
probabilities = jnp.linspace(0.01, 0.99, 197)
logits = jnp.log(probabilities) - jnp.log1p(-probabilities)  # the inverse of the sigmoid
ones = jnp.ones_like(logits)

fig, (ax_value, ax_grad) = plt.subplots(1, 2, figsize=(10, 3.5))
for gamma in (0.0, 0.5, 1.0, 2.0, 5.0):
    def focal(z, gamma=gamma, reduction="none"):
        return jloss.binary_focal_loss(z, ones, gamma=gamma, alpha=None, reduction=reduction)
    label = "cross-entropy (γ=0)" if gamma == 0 else f"focal γ={gamma:g}"
    ax_value.plot(probabilities, focal(logits), label=label)
    ax_grad.plot(probabilities, jax.grad(lambda z, f=focal: f(z, reduction="sum"))(logits), label=label)
ax_value.set(xlabel="predicted probability of the true class", ylabel="loss", ylim=(0, 4.5), title="value")
ax_grad.set(xlabel="predicted probability of the true class", ylabel="d loss / d logit", title="gradient")
ax_value.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# γ = 0 with `alpha=None` *is* binary cross-entropy, and the BCE gradient with respect to
# the logit is simply `sigmoid(logit) - label`:
# %%
bce = jloss.binary_cross_entropy(logits, ones, reduction="none")
focal0 = jloss.binary_focal_loss(logits, ones, gamma=0.0, alpha=None, reduction="none")
grad = jax.grad(lambda z: jloss.binary_cross_entropy(z, ones, reduction="sum"))(logits)
print("focal(γ=0) == BCE:", bool(jnp.allclose(bce, focal0, atol=1e-6)))
print("d BCE / d logit == sigmoid - label:", bool(jnp.allclose(grad, jax.nn.sigmoid(logits) - 1, atol=1e-6)))

# %% [markdown]
# ## 3. Multi-class: softmax cross-entropy
#
# `sparse_categorical_cross_entropy` takes integer labels and never builds a one-hot;
# `categorical_cross_entropy` takes one-hot or soft targets. Both apply the softmax inside,
# and their gradient with respect to the logits is `softmax(logits) - target`.
# Label smoothing moves a fraction `s` of the target mass uniformly onto all classes.
# %%
key = jax.random.key(0)
class_logits = 3.0 * jax.random.normal(key, (8, 5))
labels = jnp.array([0, 1, 2, 3, 4, 0, 1, 2])
targets = jloss.one_hot(labels, 5)

sparse = jloss.sparse_categorical_cross_entropy(class_logits, labels)
dense = jloss.categorical_cross_entropy(class_logits, targets)
grad = jax.grad(lambda z: jloss.sparse_categorical_cross_entropy(z, labels, reduction="sum"))(class_logits)
print(f"sparse CE {float(sparse):.4f} == categorical CE on one-hot {float(dense):.4f}")
softmax_minus_target = jax.nn.softmax(class_logits) - targets
print("gradient == softmax - one_hot:", bool(jnp.allclose(grad, softmax_minus_target, atol=1e-6)))
for s in (0.0, 0.1, 0.3):
    value = jloss.sparse_categorical_cross_entropy(class_logits, labels, label_smoothing=s)
    print(f"label_smoothing={s}: loss {float(value):.4f}")

# %% [markdown]
# ## 4. `weights`, `where` and `reduction`
#
# - `reduction="none"` keeps one loss per element (regression, binary) or per example
#   (losses over a class axis); `"sum"` adds them; `"mean"` is the weighted mean
#   `sum(mask * w * l) / sum(mask * w)`, as in PyTorch.
# - `where` is a boolean mask: masked positions count for nothing, even if they hold NaN or
#   inf (padding often does).
# - An empty or fully masked batch gives exactly 0.0 and a zero gradient, never NaN.
# %%
predictions = jnp.array([1.0, 2.0, 3.0, jnp.nan])
targets = jnp.array([1.5, 2.0, 1.0, 0.0])
mask = jnp.array([True, True, True, False])  # the last position is padding (and NaN)
weights = jnp.array([1.0, 1.0, 0.5, 1.0])

print("none :", jloss.mse(predictions, targets, where=mask, reduction="none"))
print("sum  :", jloss.mse(predictions, targets, where=mask, reduction="sum"))
print("mean :", jloss.mse(predictions, targets, where=mask))
print("mean, weighted:", jloss.mse(predictions, targets, where=mask, weights=weights))
print("gradient with the NaN masked:", jax.grad(lambda p: jloss.mse(p, targets, where=mask))(predictions))
print("all masked:", jloss.mse(predictions, targets, where=jnp.zeros(4, bool)))

# %% [markdown]
# ## 5. Which loss for which task
#
# | task | loss | model output |
# |---|---|---|
# | regression, roughly Gaussian noise | `mean_squared_error` | identity |
# | regression, heavy-tailed noise | `mean_absolute_error` | identity |
# | regression with outliers | `huber` (delta ≈ size of a normal error) | identity |
# | regression, a quantile | `pinball(quantile=q)` | identity |
# | regression with a predicted variance | `gaussian_nll` | mean and variance |
# | counts | `poisson_nll` | log-rate |
# | binary | `binary_cross_entropy` | logits (sigmoid inside) |
# | binary, imbalanced | `binary_cross_entropy(pos_weight=neg/pos)` or `binary_focal_loss` | logits |
# | multi-label | `binary_cross_entropy` (one per label) | logits |
# | multi-class, integer labels | `sparse_categorical_cross_entropy` | logits (softmax inside) |
# | multi-class, one-hot / soft targets | `categorical_cross_entropy` | logits |
# | multi-class, imbalanced | `class_weights=` or `categorical_focal_loss` | logits |
# | margin classifiers | `hinge`, `squared_hinge`, `multiclass_hinge` | scores |
# | matching a distribution | `kl_divergence` | logits |
# | large vocabulary (language models) | `linear_cross_entropy` | hidden states and the output matrix |
#
# The model's last layer stays linear: the activation is applied inside the loss, stably,
# and used by you only to read out probabilities at prediction time.
#
# The same guide as a function: `jloss.recommend(task, ...)` returns the loss, the activation
# it pairs with, the reason, and options; `.bind()` gives the loss with those options.
# %%
for task, options in [("regression", {}), ("regression", {"outliers": True}),
                      ("regression", {"quantile": 0.9}), ("binary", {}),
                      ("binary", {"imbalance": True, "positive_fraction": 0.05}),
                      ("multiclass", {}), ("multiclass", {"integer_labels": False})]:
    rec = jloss.recommend(task, **options)
    chosen = ", ".join(f"{k}={v:.3g}" for k, v in rec.options.items())
    print(f"{task:10s} {options!s:47s} -> {rec.name}({chosen}), {rec.activation}")

rec = jloss.recommend("regression", outliers=True)
print(rec.reason)
print("loss:", rec.bind()(jnp.array([0.0, 1.0, 10.0]), jnp.zeros(3)))

# %% [markdown]
# ## 6. More families: segmentation, ranking, embeddings, sparse outputs
#
# The same convention covers the losses of other tasks. A few at a glance:
#
# - **Segmentation**: `dice` scores the overlap of each class's predicted and true region,
#   so a small object counts as much as the background; with `beta > alpha` it becomes
#   the Tversky loss, which charges missed foreground more.
# - **Ranking**: `ranking_softmax` compares each list's relevance with the softmax of its
#   scores; `valid` marks the real items of padded lists.
# - **Embeddings**: `ntxent` (SimCLR) pulls vectors of a group together and pushes the rest
#   apart; `triplet_margin`, `cosine_embedding` and `margin_ranking` work on triplets and pairs.
# - **Sparse outputs**: `sparsemax` is a softmax with exact zeros; `sparsemax_loss` trains it.
# %%
# a 1 x 8 "image" with a 2-pixel foreground (class 1); the model misses one foreground pixel
masks = jax.nn.one_hot(jnp.array([[0, 0, 0, 1, 1, 0, 0, 0]]), 2)
seg_logits = 3.0 * (2 * masks - 1)
seg_logits = seg_logits.at[0, 4].set(jnp.array([3.0, -3.0]))
print("Dice:              ", round(float(jloss.dice(seg_logits, masks)), 4))
print("Tversky (beta=0.7):", round(float(jloss.dice(seg_logits, masks, alpha=0.3, beta=0.7)), 4))

scores = jnp.array([[2.0, 0.5, -1.0, jnp.nan]])  # the last item is padding
relevance = jnp.array([[0.0, 1.0, 0.0, 0.0]])
valid = jnp.array([[True, True, True, False]])
print("ranking softmax:", round(float(jloss.ranking_softmax(scores, relevance, valid=valid)), 4))

views = jnp.array([[1.0, 0.1], [0.9, 0.0], [0.0, 1.0], [0.2, 1.0]])  # two views of two images
print("NT-Xent:", round(float(jloss.ntxent(views, jnp.array([0, 0, 1, 1]), temperature=0.5)), 4))

z = jnp.array([1.2, 0.9, 0.1, -0.5])
print("softmax:  ", jax.nn.softmax(z).round(3))
print("sparsemax:", jloss.sparsemax(z).round(3))
for task in ("segmentation", "ranking", "representation"):
    print(f"{task:14s} -> {jloss.recommend(task).name}")

# %% [markdown]
# ## 7. Classic mistakes, and what jloss says about them
#
# Each mistake below is one that silently gives a wrong loss with hand-written code. jloss
# raises an error that names the argument and says what to do.
#
# **Shape mismatch.** Predictions of shape `(4, 1)` against targets `(4,)` broadcast to a
# `(4, 4)` matrix of every prediction against every target, and the loss trains the model
# towards the mean target:
# %%
predictions = jnp.array([[1.0], [2.0], [3.0], [4.0]])  # (4, 1): a Dense(1) output
targets = jnp.array([1.0, 2.0, 3.0, 4.0])               # (4,)
print("hand-written MSE (silently broadcast to (4, 4)):", jnp.mean((predictions - targets) ** 2))
try:
    jloss.mse(predictions, targets)
except ValueError as err:
    print("ValueError:", err)
print("fixed:", jloss.mse(predictions[:, 0], targets))

# %% [markdown]
# **Logits where probabilities are expected.** `from_logits=False` says the first argument
# is probabilities; jloss checks that they are (in eager calls, as in this notebook):
# %%
logits = jnp.array([2.0, -1.0, 0.5])
labels = jnp.array([1.0, 0.0, 1.0])
try:
    jloss.binary_cross_entropy(logits, labels, from_logits=False)
except jloss.LossInputError as err:
    print("LossInputError:", err)
print("fixed:", jloss.binary_cross_entropy(logits, labels))  # from_logits=True is the default

# %% [markdown]
# **Float labels to the sparse cross-entropy.** Sparse losses need integer class indices;
# one-hot or probability targets belong to `categorical_cross_entropy`:
# %%
class_logits = jnp.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
try:
    jloss.sparse_categorical_cross_entropy(class_logits, jnp.array([0.0, 2.0]))
except TypeError as err:
    print("TypeError:", err)
print("fixed:", jloss.sparse_categorical_cross_entropy(class_logits, jnp.array([0, 2])))

# %% [markdown]
# **A label out of range.** With 3 classes the label 3 does not exist. A hand-written loss
# that indexes the log-probabilities silently clamps it to class 2 (JAX clamps out-of-range
# indices); jloss raises in an eager call:
# %%
bad_labels = jnp.array([0, 3])
log_probs = jax.nn.log_softmax(class_logits)
print("hand-written, per example:", -log_probs[jnp.arange(2), bad_labels])
try:
    jloss.sparse_categorical_cross_entropy(class_logits, bad_labels)
except jloss.LossInputError as err:
    print("LossInputError:", err)

# %% [markdown]
# Under `jax.jit` a value cannot raise, so the bad example's loss is NaN instead (never a
# silently wrong class). Wrap a function in `jloss.checked` to get the error under jit too,
# for example while debugging a train step:
# %%
per_example = jax.jit(lambda z, y: jloss.sparse_categorical_cross_entropy(z, y, reduction="none"))
print("under jit, per example:", per_example(class_logits, bad_labels))
safe_loss = jloss.checked(jloss.sparse_categorical_cross_entropy)
try:
    safe_loss(class_logits, bad_labels)
except jloss.LossInputError as err:
    print("checked, LossInputError:", err)

# %% [markdown]
# **Bad hyperparameters and integer predictions** are caught too:
# %%
for call in (lambda: jloss.huber(targets, targets, delta=0.0),
             lambda: jloss.mse(targets, targets, reduction="avg"),
             lambda: jloss.mse(jnp.array([1, 2, 3, 4]), targets)):
    try:
        call()
    except (ValueError, TypeError) as err:
        print(f"{type(err).__name__}: {err}")

# %% [markdown]
# One mistake no loss can detect: applying `softmax` (or `sigmoid`) in the model *and*
# passing the result as logits. The loss then applies it a second time and the gradients
# shrink. Keep the last layer linear and let the loss apply the activation.

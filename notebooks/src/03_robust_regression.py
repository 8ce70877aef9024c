# %% [markdown]
# # Robust regression: MSE, MAE and Huber with outliers
#
# A straight line, some noise, and a few grossly wrong targets (a sensor glitch, a typo in a
# spreadsheet). Mean squared error lets the outliers drag the fit; mean absolute error and
# the Huber loss do not. We fit the same line with all three and look at why.
# %% [install] extras=plot
# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt

import jloss

# %% [markdown]
# ## The data
#
# `y = 2x + 1` plus Gaussian noise (standard deviation 0.5); 10% of the targets are
# replaced by values far above the line.
# %%
TRUE_W, TRUE_B = 2.0, 1.0


def make_data(key, n=200, outlier_fraction=0.1):
    k_x, k_noise, k_pick, k_out = jax.random.split(key, 4)
    x = jax.random.uniform(k_x, (n,), minval=-3.0, maxval=3.0)
    y = TRUE_W * x + TRUE_B + 0.5 * jax.random.normal(k_noise, (n,))
    is_outlier = jax.random.uniform(k_pick, (n,)) < outlier_fraction
    y = jnp.where(is_outlier, y + jax.random.uniform(k_out, (n,), minval=10.0, maxval=30.0), y)
    return x, y, is_outlier


x, y, is_outlier = make_data(jax.random.key(0))
print(f"{int(is_outlier.sum())} outliers among {x.size} points")

# %% [markdown]
# ## Fitting with `make_train_step`
#
# The model is `w * x + b`. `loss_fn(params, batch)` returns the mean loss; the train step
# from `jloss.make_train_step` takes a `TrainState` and a batch. `jax.lax.scan` runs all the
# steps inside one compiled program, so each fit takes a fraction of a second.
# %%
LOSSES = {
    "MSE": jloss.mean_squared_error,
    "MAE": jloss.mean_absolute_error,
    "Huber (delta=1)": lambda p, t: jloss.huber(p, t, delta=1.0),
}


def predict(params, x):
    return params["w"] * x + params["b"]


def fit(loss, x, y, steps=400, learning_rate=0.1):
    def loss_fn(params, batch):
        return loss(predict(params, batch["x"]), batch["y"])

    step = jloss.make_train_step(loss_fn)
    params = {"w": jnp.zeros(()), "b": jnp.zeros(())}
    state = jloss.TrainState.create(params=params, tx=jloss.optimizer("adam", learning_rate))
    batch = {"x": x, "y": y}
    state, metrics = jax.lax.scan(lambda s, _: step(s, batch), state, length=steps)
    return state.params, metrics["loss"]


fits = {name: fit(loss, x, y) for name, loss in LOSSES.items()}
for name, (params, history) in fits.items():
    print(f"{name:16s} w = {float(params['w']):.3f}  b = {float(params['b']):.3f}  "
          f"(true w = {TRUE_W}, b = {TRUE_B})   final loss {float(history[-1]):.3f}")

# %%
grid = jnp.linspace(-3, 3, 2)
fig, ax = plt.subplots(figsize=(6, 4))
ax.scatter(x[~is_outlier], y[~is_outlier], s=8, c="0.6", label="data")
ax.scatter(x[is_outlier], y[is_outlier], s=12, c="crimson", marker="x", label="outliers")
ax.plot(grid, TRUE_W * grid + TRUE_B, "k--", lw=1, label="true line")
for (name, (params, _)), style in zip(fits.items(), ["-", "-", "--"], strict=True):
    ax.plot(grid, predict(params, grid), style, lw=2, label=name)
ax.set(xlabel="x", ylabel="y", title="10% outliers")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# MSE is pulled up towards the outliers (its intercept moves by about
# `outlier_fraction * mean outlier offset` ≈ 0.1 × 20 = 2); MAE and Huber stay on the line.
#
# ## Why: who pulls on the parameters
#
# The gradient of a mean loss is the average of each point's pull. With MSE a point pulls in
# proportion to its residual, so an outlier 20 units off pulls 40 times harder than a normal
# point 0.5 off. MAE gives every point the same pull (the sign of the residual), and Huber
# is MSE for residuals below `delta` and MAE beyond it. At the true line:
# %%
true_params = {"w": jnp.array(TRUE_W), "b": jnp.array(TRUE_B)}
print("share of the total |d loss / d prediction| that comes from the 10% outliers:")
for name, loss in LOSSES.items():
    pull = jax.grad(lambda p, loss=loss: loss(p, y))(predict(true_params, x))
    share = jnp.abs(pull)[is_outlier].sum() / jnp.abs(pull).sum()
    print(f"  {name:16s} {float(share):.0%}")

# %% [markdown]
# ## More outliers
#
# The same fit over growing outlier fractions, five datasets each. `jax.vmap` makes and fits
# all 30 datasets at once. The error is the distance of the fitted `(w, b)` from the true one.
# %%
fractions = jnp.array([0.0, 0.05, 0.1, 0.2, 0.3, 0.4])
keys = jax.random.split(jax.random.key(1), 5)
# every (fraction, key) pair: 6 x 5 datasets
xs, ys, _ = jax.vmap(jax.vmap(make_data, in_axes=(0, None, None)), in_axes=(None, None, 0))(
    keys, 200, fractions)
errors = {}
for name, loss in LOSSES.items():
    params, _ = jax.vmap(jax.vmap(lambda a, b, loss=loss: fit(loss, a, b)))(xs, ys)
    errors[name] = jnp.hypot(params["w"] - TRUE_W, params["b"] - TRUE_B).mean(axis=1)

fig, ax = plt.subplots(figsize=(6, 4))
for name, values in errors.items():
    ax.plot(fractions, values, "o-", label=name)
ax.set(xlabel="fraction of outliers", ylabel="parameter error (mean of 5 datasets)", yscale="log")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Without outliers MSE is the most accurate (it is the maximum-likelihood loss for Gaussian
# noise) and Huber is as good; MAE is a little noisier. With outliers MSE's error jumps by
# an order of magnitude at once, while Huber and MAE degrade slowly: outliers that all lie
# on one side shift the median too, a little more with each one.
#
# ## Choosing `delta`
#
# Huber's `delta` is where the loss turns from quadratic to linear: set it to the size of a
# normal residual. Small `delta` behaves like MAE, large `delta` like MSE. jloss accepts a
# traced `delta`, so `jax.vmap` can sweep it in one compiled program:
# %%
deltas = jnp.logspace(-2, 2, 17)


def huber_fit_error(delta):
    params, _ = fit(lambda p, t: jloss.huber(p, t, delta=delta), x, y)
    return jnp.hypot(params["w"] - TRUE_W, params["b"] - TRUE_B)


fig, ax = plt.subplots(figsize=(6, 4))
ax.semilogx(deltas, jax.vmap(huber_fit_error)(deltas), "o-")
ax.axvline(0.5, c="0.5", ls=":", label="noise standard deviation")
ax.set(xlabel="Huber delta", ylabel="parameter error", title="10% outliers")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Beyond the mean: quantiles with the pinball loss
#
# MSE fits the conditional mean and MAE the median; `jloss.pinball(quantile=q)` fits any
# quantile. With noise that grows with `x`, three quantile lines show the spread:
# %%
k_x, k_noise = jax.random.split(jax.random.key(2))
xq = jax.random.uniform(k_x, (300,), minval=0.0, maxval=3.0)
yq = TRUE_W * xq + TRUE_B + (0.2 + 0.6 * xq) * jax.random.normal(k_noise, (300,))

fig, ax = plt.subplots(figsize=(6, 4))
ax.scatter(xq, yq, s=6, c="0.6")
grid = jnp.linspace(0, 3, 2)
for q in (0.1, 0.5, 0.9):
    params, _ = fit(lambda p, t, q=q: jloss.pinball(p, t, quantile=q), xq, yq, steps=600)
    covered = float(jnp.mean(yq <= predict(params, xq)))
    ax.plot(grid, predict(params, grid), lw=2, label=f"q = {q}: {covered:.0%} of points below")
ax.set(xlabel="x", ylabel="y", title="quantile regression (pinball loss)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# **Summary.** Use MSE when the noise is roughly Gaussian, Huber (with `delta` about the
# size of a normal error) when some targets may be wrong, MAE when the noise is heavy-tailed
# and you want the median, and the pinball loss for quantiles or prediction intervals.
# `jloss.recommend` gives the same advice in code:
# %%
for options in ({}, {"outliers": True}, {"noisy": True}, {"quantile": 0.9}):
    rec = jloss.recommend("regression", **options)
    chosen = ", ".join(f"{k}={v:g}" for k, v in rec.options.items())
    print(f"{options!s:20s} -> {rec.name}({chosen})")

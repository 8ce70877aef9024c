"""Loss landscapes: the loss along filter-normalised random directions around trained parameters.

Pure JAX and NumPy (no matplotlib): :func:`loss_landscape` computes the
values, :func:`jloss.plot.plot_landscape` draws them.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jloss.train.state import TrainState

__all__ = ["LossLandscape", "filter_normalized_direction", "loss_landscape"]


@dataclasses.dataclass(frozen=True)
class LossLandscape:
    """Loss values on a grid around trained parameters.

    Attributes:
      alphas: (num,) step sizes along the first direction.
      betas: (num,) step sizes along the second direction, or None (1-D).
      losses: (num,) for 1-D; (num, num) for 2-D with ``losses[i, j]`` the loss
        at ``params + alphas[i] * d1 + betas[j] * d2``.
      directions: the filter-normalised direction pytrees (one or two).
      center_loss: the loss at the parameters themselves.
    """

    alphas: np.ndarray
    betas: np.ndarray | None
    losses: np.ndarray
    directions: tuple
    center_loss: float

    def plot(self, ax=None, **kwargs):
        """Plot the landscape with :func:`jloss.plot.plot_landscape` (needs matplotlib); returns the Axes."""
        from jloss.plot import plot_landscape

        return plot_landscape(self, ax, **kwargs)


def _numpy_rng(key):
    """A NumPy Generator from an int seed or a JAX PRNG key (host-side: nothing to compile)."""
    if key is None:
        return np.random.default_rng(0)
    if isinstance(key, (int, np.integer)):
        return np.random.default_rng(int(key))
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.random.default_rng(np.asarray(data, dtype=np.uint32).ravel().tolist())


def filter_normalized_direction(key, params, *, filter_axis=-1, ignore_bias=True):
    """A random direction with the shapes of ``params``, filter-normalised (Li et al. 2018).

    Each leaf of two or more dimensions gets Gaussian noise whose every
    filter (the slice at one index of ``filter_axis``: an output unit of a
    Dense kernel ``(in, out)`` or a Conv kernel ``(h, w, in, out)``) is rescaled
    to the norm of the same filter of the parameters. Leaves of 0 or 1
    dimensions (biases, norm scales) get a zero direction with ``ignore_bias``,
    else noise scaled to the leaf's norm.

    ``key`` is an int seed or a JAX PRNG key; the noise is drawn on the host
    with NumPy (no random-number kernel to compile).
    """
    rng = _numpy_rng(key)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    out = []
    for p in leaves:
        p = np.asarray(p)
        d = rng.standard_normal(p.shape).astype(p.dtype)
        if p.ndim <= 1:
            if ignore_bias:
                d = np.zeros_like(p)
            else:
                d = d / (np.linalg.norm(d) + 1e-10) * np.linalg.norm(p)
        else:
            axis = filter_axis % p.ndim
            others = tuple(a for a in range(p.ndim) if a != axis)
            d_norm = np.sqrt(np.sum(d * d, axis=others, keepdims=True))
            p_norm = np.sqrt(np.sum(p * p, axis=others, keepdims=True))
            d = d / (d_norm + 1e-10) * p_norm
        out.append(jnp.asarray(d))
    return jax.tree_util.tree_unflatten(treedef, out)


def _loss_at(loss_fn, has_aux, params, batch, coords, directions):
    moved = params
    for c, d in zip(coords, directions, strict=True):
        moved = jax.tree.map(lambda p, v, c=c: p + c.astype(p.dtype) * v, moved, d)
    out = loss_fn(moved, batch)
    return out[0] if has_aux else out


@functools.partial(jax.jit, static_argnames=("loss_fn", "has_aux", "batch_size"))
def _landscape_values(params, batch, directions, coords, *, loss_fn, has_aux, batch_size):
    """Losses at every grid point (one compilation per loss_fn and shapes) and at the centre."""
    values = jax.lax.map(lambda c: _loss_at(loss_fn, has_aux, params, batch, c, directions), coords,
                         batch_size=batch_size)
    center = _loss_at(loss_fn, has_aux, params, batch, jnp.zeros(coords.shape[-1:], coords.dtype), directions)
    return values, center


def loss_landscape(loss_fn, params, batch, *, key=None, dims=1, span=1.0, num=21, filter_axis=-1,
                   ignore_bias=True, has_aux=False, batch_size=None):
    """The loss along one or two filter-normalised random directions around ``params``.

    Evaluates ``loss_fn(params + a d1 [+ b d2], batch)`` for ``a`` (and ``b``) on
    ``linspace(-span, span, num)``. With filter normalisation the directions
    have the scale of the weights, so landscapes of different networks (or of
    one network trained two ways) can be compared (Li et al. 2018).

    Args:
      loss_fn: ``loss_fn(params, batch) -> loss`` (``(loss, aux)`` with ``has_aux``).
      params: the trained parameters (a pytree), or a :class:`jloss.TrainState`.
      batch: the data the loss is evaluated on (a pytree of arrays).
      key: an int seed or a JAX PRNG key for the directions (default 0); drawn with NumPy.
      dims: 1 (a curve) or 2 (a surface).
      span, num: the grid ``linspace(-span, span, num)`` along each direction.
      filter_axis, ignore_bias: see :func:`filter_normalized_direction`.
      batch_size: grid points evaluated at once (``jax.lax.map`` batches; None: one at a time,
        the quickest to compile).

    Returns:
      A ``LossLandscape`` ``(alphas, betas, losses, directions, center_loss)``.

    Raises:
      ValueError: ``dims`` not 1 or 2, or a bad grid.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> def loss_fn(params, batch):
      ...     return jloss.mse(batch["x"] @ params["w"], batch["y"])
      >>> batch = {"x": jnp.array([[1.0, 1.0], [1.0, 2.0]]), "y": jnp.array([[1.0], [2.0]])}
      >>> landscape = jloss.loss_landscape(loss_fn, {"w": jnp.zeros((2, 1))}, batch, num=5)
      >>> landscape.losses.shape, round(float(landscape.center_loss), 4)
      ((5,), 2.5)

    References:
      Li, H. et al. (2018). Visualizing the Loss Landscape of Neural Nets. NeurIPS.
    """
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims!r}")
    if num < 2:
        raise ValueError(f"num must be >= 2, got {num}")
    if span <= 0:
        raise ValueError(f"span must be > 0, got {span}")
    if isinstance(params, TrainState):
        params = params.params

    grid = np.linspace(-span, span, num, dtype=np.float32)
    if dims == 1:
        coords = grid[:, None]
    else:
        a, b = np.meshgrid(grid, grid, indexing="ij")
        coords = np.stack([a.ravel(), b.ravel()], axis=-1)

    rng = _numpy_rng(key)
    directions = tuple(filter_normalized_direction(int(rng.integers(2**31)), params, filter_axis=filter_axis,
                                                   ignore_bias=ignore_bias) for _ in range(dims))
    values, center = _landscape_values(params, batch, directions, jnp.asarray(coords), loss_fn=loss_fn,
                                       has_aux=has_aux, batch_size=batch_size)
    losses = np.asarray(values, dtype=np.float64).reshape((num,) * dims)
    center = float(center)
    return LossLandscape(grid, grid if dims == 2 else None, losses, directions, center)

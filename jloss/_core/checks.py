"""Input checks.

Two kinds, with different timing:

* static checks (shapes, dtypes, option strings) run at trace time, so they
  fire under ``jax.jit`` too, and raise ValueError / TypeError naming the
  argument;
* value checks (labels in range, probabilities that are probabilities) need
  the numbers. They raise :class:`LossInputError` when the inputs are concrete
  (eager calls), are skipped under a plain ``jax.jit`` (the loss then returns
  NaN for the offending example), and become ``checkify`` checks inside
  :func:`checked`, which raises them under ``jit`` as well.

Hyperparameters are validated when concrete and accepted when traced, so a
schedule may feed ``gamma`` or ``label_smoothing`` inside a jitted step.
"""

import contextvars
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from jloss._core.reduce import REDUCTIONS


class LossInputError(ValueError):
    """Input values a loss cannot be computed from (labels out of range, ...)."""


# ---------------------------------------------------------------- static checks


def check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_float(**arrays):
    """Each argument must be a floating-point array (TypeError otherwise)."""
    for name, x in arrays.items():
        dtype = jnp.asarray(x).dtype
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"{name} must be a floating-point array, got dtype {dtype}; "
                f"cast it with {name}.astype(jnp.float32)"
            )


def check_integer(**arrays):
    """Each argument must be an integer array (TypeError otherwise)."""
    for name, x in arrays.items():
        dtype = jnp.asarray(x).dtype
        if not jnp.issubdtype(dtype, jnp.integer):
            raise TypeError(
                f"{name} must be an integer array of class indices, got dtype {dtype}; "
                "for one-hot or probability targets use categorical_cross_entropy"
            )


def check_same_shape(**arrays):
    """All arguments must have the same shape; the error names them all."""
    (n1, a1), *rest = arrays.items()
    for n2, a2 in rest:
        s1, s2 = jnp.shape(a1), jnp.shape(a2)
        if s1 != s2:
            raise ValueError(
                f"{n1} and {n2} must have the same shape, got {n1} {s1} and {n2} {s2}"
            )


def check_shape(name, x, expected, reason):
    if jnp.shape(x) != tuple(expected):
        raise ValueError(f"{name} has shape {jnp.shape(x)} but {reason} needs shape {tuple(expected)}")


def check_broadcastable(name, x, shape):
    """``x`` must broadcast to ``shape`` without changing it (None passes)."""
    if x is None:
        return
    xs = jnp.shape(x)
    try:
        out = np.broadcast_shapes(xs, tuple(shape))
    except ValueError:
        out = None
    if out != tuple(shape):
        raise ValueError(
            f"{name} has shape {xs}, which does not broadcast to the unreduced loss "
            f"shape {tuple(shape)}"
        )


def check_axis(axis, ndim, name="logits"):
    if not -ndim <= axis < ndim or ndim == 0:
        raise ValueError(f"axis={axis} is out of range for {name} with {ndim} dimensions")
    return axis % ndim


def check_convention(reduction, weights, where, loss_shape):
    """The checks every loss shares: reduction, weights, where."""
    check_reduction(reduction)
    check_broadcastable("weights", weights, loss_shape)
    check_broadcastable("where", where, loss_shape)
    if where is not None and jnp.asarray(where).dtype != jnp.bool_:
        raise TypeError(f"where must be a boolean mask, got dtype {jnp.asarray(where).dtype}")


def concrete(x):
    """``x`` as a NumPy array when its value is known now, else None."""
    if x is None or isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def check_range(name, value, *, low=None, high=None, low_open=False, high_open=False):
    """A hyperparameter in [low, high] (ends open as asked); traced values pass."""
    v = concrete(value)
    if v is None:
        return
    bad = False
    if low is not None:
        bad |= bool(np.any(v <= low)) if low_open else bool(np.any(v < low))
    if high is not None:
        bad |= bool(np.any(v >= high)) if high_open else bool(np.any(v > high))
    if bad or bool(np.any(np.isnan(v))):
        lo = "" if low is None else ("(" if low_open else "[") + f"{low}"
        hi = "" if high is None else f"{high}" + (")" if high_open else "]")
        if low is not None and high is not None:
            span = f"in {lo}, {hi}"
        elif low is not None:
            span = f"{'>' if low_open else '>='} {low}"
        else:
            span = f"{'<' if high_open else '<='} {high}"
        raise ValueError(f"{name} must be {span}, got {v.tolist() if v.ndim else v.item()}")


def check_int(name, value, *, low):
    """``value`` must be a Python or NumPy integer >= ``low`` (a bool is not one); returns it as int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def is_zero(value):
    """True when ``value`` is known to be exactly 0 (lets a kernel skip work)."""
    v = concrete(value)
    return v is not None and v.ndim == 0 and float(v) == 0.0


# ----------------------------------------------------------------- value checks

_CHECKING = contextvars.ContextVar("jloss_checking", default=False)


def check_values(bad, message, **arrays):
    """Raise when ``bad(**arrays)`` is True anywhere.

    ``bad`` is written with ``jnp`` and returns a boolean array; positions a
    loss masks out should already be False in it. Eager inputs raise
    :class:`LossInputError`; traced inputs raise only inside :func:`checked`.
    """
    values = {k: concrete(v) for k, v in arrays.items()}
    if all(v is not None for v in values.values()):
        with jax.ensure_compile_time_eval():  # concrete values inside a trace stay eager
            failed = bool(np.any(np.asarray(bad(**{k: jnp.asarray(v) for k, v in values.items()}))))
        if failed:
            raise LossInputError(message)
    elif _CHECKING.get():
        checkify.check(jnp.logical_not(jnp.any(bad(**arrays))), message)


def checked(fn):
    """Wrap ``fn`` (a loss, a train step, ...) so value checks raise under jit too.

    The function is traced with jloss's value checks turned into
    ``jax.experimental.checkify`` checks, compiled with ``jax.jit`` and run;
    a failed check raises :class:`LossInputError`. Non-array arguments
    (strings, Python numbers, None) are passed as static values. A function
    already wrapped by ``jax.jit`` is unwrapped first, so checks are traced
    even if it ran before without them.

    Example::

        safe_loss = jloss.checked(jloss.sparse_categorical_cross_entropy)
        safe_loss(logits, labels)   # LossInputError if a label is >= C
    """
    inner = getattr(fn, "__wrapped__", fn) if hasattr(fn, "lower") else fn

    def traced(dynamic, static, treedef, is_dynamic):
        it_d, it_s = iter(dynamic), iter(static)
        leaves = [next(it_d) if d else next(it_s) for d in is_dynamic]
        args, kwargs = jax.tree_util.tree_unflatten(treedef, leaves)
        token = _CHECKING.set(True)
        try:
            return inner(*args, **kwargs)
        finally:
            _CHECKING.reset(token)

    compiled = jax.jit(
        checkify.checkify(traced, errors=checkify.user_checks), static_argnums=(1, 2, 3)
    )

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
        is_dynamic = tuple(isinstance(x, (jax.Array, np.ndarray, np.generic)) for x in leaves)
        dynamic = [x for x, d in zip(leaves, is_dynamic, strict=False) if d]
        static = tuple(x for x, d in zip(leaves, is_dynamic, strict=False) if not d)
        err, out = compiled(dynamic, static, treedef, is_dynamic)
        message = err.get()
        if message is not None:
            raise LossInputError(message.split(" (`check` failed)")[0].strip())
        return out

    return wrapper


# ------------------------------------------------------- shared value checks


def check_class_labels(labels, num_classes, mask):
    """Integer labels in [0, num_classes) wherever ``mask`` counts them."""
    def bad(labels, mask=None):
        out = (labels < 0) | (labels >= num_classes)
        return out if mask is None else out & mask

    arrays = {"labels": labels} if mask is None else {"labels": labels, "mask": mask}
    check_values(bad, f"labels must be in [0, {num_classes}) (or ignore_index); "
                      f"found a label outside that range", **arrays)


def check_unit_interval(name, x, mask, hint=""):
    """Values in [0, 1] wherever ``mask`` (broadcast over trailing axes) counts them."""
    def bad(x, mask=None):
        out = (x < 0) | (x > 1) | jnp.isnan(x)
        if mask is not None:
            out = out & mask.reshape(mask.shape + (1,) * (out.ndim - mask.ndim))
        return out

    arrays = {"x": x} if mask is None else {"x": x, "mask": mask}
    check_values(bad, f"{name} must lie in [0, 1]{hint}", **arrays)


def check_distribution(name, x, axis, mask, hint=""):
    """Non-negative values summing to 1 along ``axis`` wherever counted."""
    def bad(x, mask=None):
        xf = x.astype(jnp.float32)
        tol = 1e-3 if x.dtype in (jnp.float32, jnp.float64) else 2e-2
        out = jnp.any((xf < 0) | (xf > 1) | jnp.isnan(xf), axis=axis)
        out = out | (jnp.abs(jnp.sum(xf, axis=axis) - 1) > tol)
        return out if mask is None else out & mask

    arrays = {"x": x} if mask is None else {"x": x, "mask": mask}
    check_values(bad, f"{name} must be probabilities in [0, 1] summing to 1 along axis "
                      f"{axis}{hint}", **arrays)



def check_sign_labels(labels, mask, name="labels"):
    """Labels in {-1, +1} wherever ``mask`` counts them (pair and margin losses)."""
    def bad(labels, mask=None):
        out = (labels != -1) & (labels != 1)
        return out if mask is None else out & mask

    arrays = {"labels": labels} if mask is None else {"labels": labels, "mask": mask}
    check_values(bad, f"{name} must be -1 or +1; found another value", **arrays)


def check_nonnegative(name, x, mask, hint=""):
    """Finite values >= 0 wherever ``mask`` (broadcast over trailing axes) counts them."""
    def bad(x, mask=None):
        out = (x < 0) | ~jnp.isfinite(x)
        if mask is not None:
            out = out & mask.reshape(mask.shape + (1,) * (out.ndim - mask.ndim))
        return out

    arrays = {"x": x} if mask is None else {"x": x, "mask": mask}
    check_values(bad, f"{name} must be finite and >= 0{hint}", **arrays)

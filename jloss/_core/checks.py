"""Input checks.

Two kinds, with different timing:

* static checks (shapes, ranks, dtypes, option strings, static ints) run at
  trace time, so they fire under ``jax.jit`` too. Shapes, ranks and dtypes are
  chex assertions (``chex.assert_shape``, ``assert_equal_shape``,
  ``assert_type``, ...) raising ValueError / TypeError with a message that
  names the argument; ``chex.disable_asserts()`` turns them off with the rest
  of chex's assertions;
* value checks (labels in range, probabilities that are probabilities,
  non-negative weights) need the numbers. They raise :class:`LossInputError`
  when the inputs are concrete (eager calls), are skipped under a plain
  ``jax.jit`` (the loss then returns NaN for the offending example), and
  become ``checkify`` checks inside :func:`checked`, which raises them under
  ``jit`` as well. Their messages name the first offending value, its
  position and the number of bad entries.

Hyperparameters are validated when concrete and accepted when traced, so a
schedule may feed ``gamma`` or ``label_smoothing`` inside a jitted step;
inside :func:`checked` a traced hyperparameter is checked too.
"""

import contextvars
import functools
import math
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify
from jax.experimental.xla_metadata import set_xla_metadata

from jloss._core.reduce import REDUCTIONS, loss_mask


class LossInputError(ValueError):
    """Input values a loss cannot be computed from (labels out of range, ...).

    A ``ValueError``, raised by value checks when the inputs are concrete (eager
    calls), and under ``jax.jit`` inside :func:`checked`.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> try:
      ...     jloss.sparse_categorical_cross_entropy(jnp.zeros((2, 3)), jnp.array([0, 3]))
      ... except jloss.LossInputError:
      ...     print("label 3 is not a class of 3")
      label 3 is not a class of 3
      >>> issubclass(jloss.LossInputError, ValueError)
      True
    """


class InputWarning(UserWarning):
    """Inputs a loss accepts but that look like a mistake (probabilities passed as logits).

    Raised as a warning, in eager calls only (never under ``jax.jit``, never an error).

    Examples:
      >>> import warnings
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> with warnings.catch_warnings(record=True) as caught:
      ...     warnings.simplefilter("always")
      ...     _ = jloss.sparse_categorical_cross_entropy(jnp.array([[0.9, 0.1]]), jnp.array([0]))
      >>> [w.category.__name__ for w in caught]
      ['InputWarning']
    """


# ----------------------------------------------------------------- array-likes


def array_likes(*xs):
    """Lists, tuples and Python numbers as arrays (every array argument accepts them).

    They become NumPy arrays, so their values stay concrete (checked) under a
    trace; a list holding traced arrays becomes a traced array.
    """
    out = tuple(x if x is None or hasattr(x, "shape") else _as_array(x) for x in xs)
    return out if len(out) > 1 else out[0]


def _as_array(x):
    traced = any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(x))
    return jnp.asarray(x) if traced else np.asarray(x)


# ---------------------------------------------------------------- static checks


def check_reduction(reduction):
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _dtype(x):
    return x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype


def check_float(**arrays):
    """Each argument must be a real floating-point array (TypeError otherwise)."""
    for name, x in arrays.items():
        chex.assert_type(x, float, exception_type=TypeError, custom_message=(
            f"{name} must be a floating-point array, got dtype {_dtype(x)}; "
            f"cast it with {name}.astype(jnp.float32)"))


def check_real(**arrays):
    """No argument may be complex (TypeError otherwise); None passes."""
    # chex has no "any real dtype" assertion: assert_type takes one expected type.
    for name, x in arrays.items():
        if x is not None and jnp.issubdtype(_dtype(x), jnp.complexfloating):
            raise TypeError(f"{name} must be real, got complex dtype {_dtype(x)}; "
                            f"pass the real part or the magnitude")


def check_integer(**arrays):
    """Each argument must be an integer array (TypeError otherwise)."""
    for name, x in arrays.items():
        chex.assert_type(x, int, exception_type=TypeError, custom_message=(
            f"{name} must be an integer array of class indices, got dtype {_dtype(x)}; "
            "for one-hot or probability targets use categorical_cross_entropy, or take "
            "the argmax"))


def check_same_shape(**arrays):
    """All arguments must have the same shape; the error names them all."""
    (n1, a1), *rest = arrays.items()
    for n2, a2 in rest:
        s1, s2 = jnp.shape(a1), jnp.shape(a2)
        chex.assert_equal_shape([a1, a2], exception_type=ValueError, custom_message=(
            f"{n1} and {n2} must have the same shape, got {n1} {s1} and {n2} {s2}"))


def check_shape(name, x, expected, reason, hint=""):
    expected = tuple(expected)
    chex.assert_shape(x, expected, exception_type=ValueError, custom_message=(
        f"{name} has shape {jnp.shape(x)} but {reason} needs shape {expected}{hint}"))


def check_rank(name, x, rank, what):
    chex.assert_rank(x, rank, exception_type=ValueError, custom_message=(
        f"{name} must have shape {what}, got shape {jnp.shape(x)}"))


def check_broadcastable(name, x, shape):
    """``x`` must broadcast to ``shape`` without changing it (None passes)."""
    if x is None:
        return
    chex.assert_is_broadcastable(jnp.shape(x), tuple(shape), exception_type=ValueError,
                                 custom_message=(
        f"{name} has shape {jnp.shape(x)}, which does not broadcast to the unreduced loss "
        f"shape {tuple(shape)}"))


def static_int(name, value, *, low=None):
    """A static integer option (Python int, NumPy integer or 0-d integer array) as an int."""
    if isinstance(value, jax.core.Tracer):
        raise ValueError(f"{name} must be a static int, got a traced value; pass a Python int "
                         f"(mark it static with static_argnames under jax.jit)")
    dtype = getattr(value, "dtype", None)
    is_int = isinstance(value, int) or (dtype is not None and jnp.issubdtype(dtype, jnp.integer))
    if (isinstance(value, (bool, np.bool_)) or not is_int or np.ndim(value) != 0
            or (low is not None and int(value) < low)):
        at_least = "" if low is None else f" >= {low}"
        raise ValueError(f"{name} must be an int{at_least}, got {value!r}")
    return int(value)


def check_int(name, value, *, low):
    """``value`` must be an int >= ``low`` (Python, NumPy or a 0-d array; a bool is not one)."""
    return static_int(name, value, low=low)


def optional_int(name, value):
    """A static int option that may be None (``ignore_index``)."""
    return None if value is None else static_int(name, value)


def check_axis(axis, ndim, name="logits"):
    axis = static_int("axis", axis)
    if not -ndim <= axis < ndim or ndim == 0:
        raise ValueError(f"axis={axis} is out of range for {name} with {ndim} dimensions")
    return axis % ndim


def check_convention(reduction, weights, where, loss_shape):
    """The checks every loss shares: reduction, weights (shape and values), where."""
    check_reduction(reduction)
    check_broadcastable("weights", weights, loss_shape)
    check_broadcastable("where", where, loss_shape)
    if where is not None and _dtype(where) != jnp.bool_:
        raise TypeError(f"where must be a boolean mask, got dtype {_dtype(where)}")
    if weights is not None:
        w = concrete(weights)
        w = jnp.broadcast_to(weights, loss_shape) if w is None else np.broadcast_to(w, loss_shape)
        check_nonnegative("weights", w, loss_mask(where, loss_shape))


def regression_inputs(predictions, targets, weights, where, reduction, name="predictions"):
    """The checks of an elementwise ``(predictions, targets)`` loss: float predictions,
    real targets of the same shape, the convention arguments; returns the four
    arrays with lists and tuples as arrays."""
    predictions, targets, weights, where = array_likes(predictions, targets, weights, where)
    check_float(**{name: predictions})
    check_real(targets=targets)
    check_same_shape(**{name: predictions, "targets": targets})
    check_convention(reduction, weights, where, jnp.shape(predictions))
    return predictions, targets, weights, where


def concrete(x):
    """``x`` as a NumPy array when its value is known now, else None."""
    if x is None or isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _span(low, high, low_open, high_open):
    lo = "" if low is None else ("(" if low_open else "[") + f"{low}"
    hi = "" if high is None else f"{high}" + (")" if high_open else "]")
    if low is not None and high is not None:
        return f"in {lo}, {hi}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"{'<' if high_open else '<='} {high}"


def check_range(name, value, *, low=None, high=None, low_open=False, high_open=False,
                shape=None):
    """A hyperparameter in [low, high] (ends open as asked), never NaN.

    Concrete values (Python and NumPy scalars, arrays) raise ValueError now;
    traced values pass, except inside :func:`checked` where they become a
    check. With ``shape``, the value must broadcast to it (ValueError).
    Returns the value, a list or tuple as an array.
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = _as_array(value)
    check_real(**{name: value})
    if shape is not None:
        check_broadcastable(name, value, shape)

    def bad(v, xp):
        out = xp.isnan(v)
        if low is not None:
            out |= (v <= low) if low_open else (v < low)
        if high is not None:
            out |= (v >= high) if high_open else (v > high)
        return out

    span = _span(low, high, low_open, high_open)
    v = concrete(value)
    if v is not None:
        if np.any(bad(v.astype(np.float64), np)):
            raise ValueError(f"{name} must be {span}, got {v.tolist() if v.ndim else v.item()}")
    elif _CHECKING.get():
        checkify.check(jnp.logical_not(jnp.any(bad(jnp.asarray(value), jnp))),
                       f"{name} must be {span}, got {{value}}", value=jnp.asarray(value))
    return value


def check_number(name, value, *, low=None, low_open=False):
    """``value`` must be a finite real number (Python, NumPy or a 0-d array; not a bool), ``>= low``
    (``> low`` with ``low_open``); returns it as a float. A traced value passes unchanged."""
    if isinstance(value, jax.core.Tracer):
        return value
    ok = not isinstance(value, (bool, np.bool_)) and np.ndim(value) == 0
    try:
        number = float(value) if ok else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or (low is not None and (number <= low if low_open else number < low)):
        bound = "" if low is None else f" {'>' if low_open else '>='} {low}"
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    return number


def is_zero(value):
    """True when ``value`` is known to be exactly 0 (lets a kernel skip work)."""
    v = concrete(value)
    return v is not None and v.ndim == 0 and float(v) == 0.0


# ----------------------------------------------------------------- value checks

_CHECKING = contextvars.ContextVar("jloss_checking", default=False)


def _expand(mask, ndim):
    return mask.reshape(mask.shape + (1,) * (ndim - mask.ndim))


def check_values(x, bad, message, mask=None, hint=None):
    """Raise when ``bad(x)`` is True at a counted position.

    ``bad(x, xp)`` is written with ``xp`` (NumPy for concrete inputs, ``jnp``
    for traced ones) and returns a boolean array of ``x.shape``
    (elementwise checks) or of a leading part of it (row checks, e.g. a
    distribution along the class axis); ``mask`` (where it has fewer axes, it
    covers the leading ones) marks the counted positions. The error reads
    "``message``; found K bad entries, the first V at position P", plus
    ``hint(counted values of x)`` when given (eager calls only). Eager inputs
    raise :class:`LossInputError`; traced inputs raise only inside
    :func:`checked` (a checkify check with the same numbers).
    """
    xc, mc = concrete(x), concrete(mask)
    if xc is not None and (mask is None or mc is not None):
        flags = np.asarray(bad(xc, np))
        if mc is not None:
            flags = flags & _expand(mc.astype(bool), flags.ndim)
        count = int(np.count_nonzero(flags))
        if count:
            first = np.unravel_index(int(np.argmax(flags.reshape(-1))), flags.shape)
            what = f" {_show(xc[first])}" if flags.shape == xc.shape else ""
            unit = ("entry", "entries") if flags.shape == xc.shape else ("row", "rows")
            counted = xc if mc is None else xc[np.broadcast_to(_expand(mc.astype(bool), xc.ndim),
                                                                 xc.shape)]
            extra = hint(counted) if hint is not None else ""
            raise LossInputError(f"{message}; found {count} bad {unit[count > 1]}, "
                                 f"the first{what} at position {tuple(int(i) for i in first)}"
                                 f"{extra}")
    elif _CHECKING.get():
        flags = bad(jnp.asarray(x), jnp)
        if mask is not None:
            flags = flags & _expand(jnp.asarray(mask, bool), flags.ndim)
        flat = flags.reshape(-1)
        index = jnp.argmax(flat)
        fields = {"count": jnp.sum(flat), "position": jnp.stack(jnp.unravel_index(index, flags.shape))
                  if flags.ndim else jnp.zeros((0,), jnp.int32)}
        what = ""
        if flags.shape == jnp.shape(x):
            fields["value"] = jnp.asarray(x).reshape(-1)[index]
            what = " {value}"
        checkify.check(jnp.logical_not(jnp.any(flat)),
                       f"{message}; found {{count}} bad entries, the first{what} "
                       f"at position {{position}}", **fields)


def _show(v):
    v = np.asarray(v)
    return repr(v.item()) if v.ndim == 0 else np.array2string(v, precision=4)


def checked(fn):
    """Wrap ``fn`` (a loss, a train step, ...) so that value checks raise under jit too.

    ``fn`` is traced with jloss's value checks turned into
    ``jax.experimental.checkify`` checks, compiled with ``jax.jit`` and run; a
    failed check raises :class:`LossInputError`. Arrays (JAX and NumPy with at
    least one axis) are traced; everything else (strings, Python and NumPy
    scalars, 0-d NumPy arrays, None) is static, so hyperparameters given as
    numbers are validated as in an eager call (one compilation per value:
    pass a ``jnp`` array for a value that changes every call). A function
    already wrapped by ``jax.jit`` is unwrapped first, so its checks are
    traced even if it ran before without them.

    Under other transformations: ``jax.grad(checked(f))``, ``checked(jax.grad(f))``,
    ``checked(jax.jit(f))`` and ``jax.vmap(checked(f))`` raise
    :class:`LossInputError` as above; ``jax.jit(checked(f))`` raises from
    inside the compiled computation when it runs (a
    ``jax.errors.JaxRuntimeError`` whose message holds the LossInputError:
    wrap the jitted function instead, ``checked(jax.jit(f))``, for the
    LossInputError itself); a ``checked`` function called inside another
    passes its checks to the outer one. A ``jax.jit`` function that ``fn`` calls and
    that was compiled before without checks keeps that cached trace: wrap the
    outermost function.

    Args:
      fn: the function to wrap.

    Returns:
      A function with the signature of ``fn`` that returns what ``fn`` returns.

    Raises:
      LossInputError: (from the wrapped function) when a value check fails.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> safe_loss = jloss.checked(jloss.sparse_categorical_cross_entropy)
      >>> round(float(safe_loss(jnp.zeros((2, 3)), jnp.array([0, 2]))), 4)
      1.0986
      >>> try:
      ...     safe_loss(jnp.zeros((2, 3)), jnp.array([0, 3]))
      ... except jloss.LossInputError:
      ...     print("caught")
      caught

    References:
      ``jax.experimental.checkify``; ``chex.chexify``.
    """
    # chex.chexify does this job for chex's own assertions, but it refuses traced
    # arguments (jax.grad / jax.jit around it), static arguments and raises AssertionError.
    inner = getattr(fn, "__wrapped__", fn) if hasattr(fn, "lower") else fn

    def traced(dynamic, static, treedef, is_dynamic):
        it_d, it_s = iter(dynamic), iter(static)
        leaves = [next(it_d) if d else next(it_s).value for d in is_dynamic]
        args, kwargs = jax.tree_util.tree_unflatten(treedef, leaves)
        token = _CHECKING.set(True)
        try:
            # The metadata is part of every jax.jit cache key: a jitted function that fn calls
            # is traced apart with its checks, and its plain compiled version stays check-free.
            with set_xla_metadata(jloss_checked="true"):
                return inner(*args, **kwargs)
        finally:
            _CHECKING.reset(token)

    compiled = jax.jit(
        checkify.checkify(traced, errors=checkify.user_checks), static_argnums=(1, 2, 3)
    )

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
        is_dynamic = tuple(_is_dynamic(x) for x in leaves)
        dynamic = [x for x, d in zip(leaves, is_dynamic, strict=True) if d]
        static = tuple(_Static(x) for x, d in zip(leaves, is_dynamic, strict=True) if not d)
        if not any(isinstance(x, jax.core.Tracer) for x in dynamic):
            err, out = compiled(dynamic, static, treedef, is_dynamic)
            _raise(err)
            return out
        # Under an outer transformation the checks run on their own (their unused outputs
        # are pruned under jit): differentiating through checkify drops or breaks the
        # gradients of custom_vjp functions (zeros, or "foreach() argument 2 is shorter").
        err, _ = compiled(jax.lax.stop_gradient(dynamic), static, treedef, is_dynamic)
        if _CHECKING.get():
            checkify.check_error(err)  # inside an outer checked(): its checkify raises it
        else:
            jax.debug.callback(_raise, err)  # inside jax.jit / vmap: raise when it runs
        return inner(*args, **kwargs)

    return wrapper


def _raise(err):
    message = err.get()
    if message is not None:
        raise LossInputError(message.split(" (`check` failed)")[0].strip())


def _is_dynamic(x):
    if isinstance(x, np.ndarray):
        return x.ndim > 0
    return isinstance(x, jax.Array)


class _Static:
    """A static leaf of :func:`checked`: hashed by value, NumPy scalars included."""

    def __init__(self, value):
        self.value = value
        v = np.asarray(value) if isinstance(value, (np.ndarray, np.generic)) else None
        self._key = (type(value), v.dtype.str, v.item()) if v is not None else (type(value), value)

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Static) and self._key == other._key


# ------------------------------------------------------- shared value checks


def _label_hint(num_classes):
    def hint(labels):
        if labels.size and labels.min() >= 1 and labels.max() == num_classes:
            return f"; labels look 1-based (1..{num_classes}): subtract 1"
        return ""
    return hint


def check_class_labels(labels, num_classes, mask):
    """Integer labels in [0, num_classes) wherever ``mask`` counts them."""
    check_values(labels, lambda y, xp: (y < 0) | (y >= num_classes),
                 f"labels must be in [0, {num_classes}) (or ignore_index)", mask,
                 _label_hint(num_classes))


def check_unit_interval(name, x, mask, hint=""):
    """Values in [0, 1] wherever ``mask`` (broadcast over trailing axes) counts them."""
    check_values(x, lambda v, xp: ~((v >= 0) & (v <= 1)), f"{name} must lie in [0, 1]{hint}", mask)


def check_nonnegative(name, x, mask=None):
    """Finite values >= 0 (weights, class weights, soft targets) wherever counted."""
    if x is None:
        return
    check_real(**{name: x})
    check_values(x, lambda v, xp: ~((v >= 0) & xp.isfinite(v)),
                 f"{name} must be non-negative and finite", mask)


def check_soft_targets(name, x, axis, mask):
    """Soft targets: finite and non-negative (they need not sum to 1, as torch and optax)."""
    v = concrete(x)
    check_nonnegative(name, jnp.moveaxis(x, axis, -1) if v is None else np.moveaxis(v, axis, -1),
                      mask)


def check_distribution(name, x, axis, mask, hint=""):
    """Non-negative values summing to 1 along ``axis`` wherever counted (per row)."""
    def bad(x, xp):
        xf = xp.moveaxis(x, axis, -1).astype(xp.float32)
        tol = 1e-3 if x.dtype in (np.float32, np.float64) else 2e-2
        out = xp.any(~((xf >= 0) & (xf <= 1)), axis=-1)
        return out | (xp.abs(xp.sum(xf, axis=-1) - 1) > tol)

    check_values(x, bad, f"{name} must be probabilities in [0, 1] summing to 1 along axis {axis}{hint}",
                 mask)


def warn_if_probabilities(logits, axis, name="logits", stacklevel=3):
    """Warn (eager calls only) when every row of ``logits`` already looks like probabilities.

    ``stacklevel`` 3 points the warning at the caller of the loss that calls this."""
    x = concrete(logits)
    if x is None or x.size == 0 or x.shape[axis] < 2:
        return
    x = np.moveaxis(x.astype(np.float64), axis, -1)
    if np.all((x >= 0) & (x <= 1)) and np.allclose(x.sum(-1), 1.0, atol=1e-3):
        warnings.warn(f"every row of {name} lies in [0, 1] and sums to 1: these look like "
                      "probabilities; pass logits, or from_logits=False", InputWarning,
                      stacklevel=stacklevel)


def check_sign_labels(labels, mask, name="labels"):
    """Labels in {-1, +1} wherever ``mask`` counts them (pair and margin losses)."""
    check_values(labels, lambda v, xp: (v != -1) & (v != 1), f"{name} must be -1 or +1", mask)

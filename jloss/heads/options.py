"""Options shared by the fused heads: mesh axis names and a static temperature."""

from jloss._core import checks


def axis_names(axes):
    """``batch_axes`` / ``vocab_axis`` as a tuple of mesh axis names (empty for None)."""
    if axes is None:
        return ()
    return (axes,) if isinstance(axes, str) else tuple(axes)


def static_temperature(temperature):
    """None when the temperature is statically 1 (the logits are not divided), else itself."""
    t = checks.concrete(temperature)
    return None if t is not None and t.ndim == 0 and float(t) == 1.0 else temperature

"""The sizes of the demo's experiments: the full run and the quick one of the tests."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes of the experiments. ``quick`` is the small version used by the tests."""

    quick: bool = False
    seed: int = 0
    repeats: int = 3            # independent seeds (data split + init) per setting (digits)
    small_repeats: int = 10     # the same for the small data sets (diabetes, breast cancer)
    outlier_steps: int = 300
    classify_steps: int = 600   # ce-vs-mse
    wrong_steps: int = 300      # gradients: recovery from a confidently wrong start
    imbalance_steps: int = 1000
    optimizer_steps: int = 400
    calibration_steps: int = 2000
    finder_steps: int = 120
    landscape_steps: int = 600
    landscape_num: int = 25
    batch_size: int = 128
    progress: bool = True


def config(quick=False, seed=0, progress=True):
    """The full (``quick=False``) or quick configuration."""
    if quick:
        return Config(quick=True, seed=seed, repeats=2, small_repeats=4, outlier_steps=300,
                      classify_steps=200, wrong_steps=150, imbalance_steps=400, optimizer_steps=150,
                      calibration_steps=600, finder_steps=60, landscape_steps=200, landscape_num=11,
                      progress=progress)
    return Config(seed=seed, progress=progress)

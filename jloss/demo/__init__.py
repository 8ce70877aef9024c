"""``jloss demo``: measure the claims of the learning material on real data.

Small models are trained on data sets bundled with scikit-learn (no
download): digits (10 classes), breast cancer (binary) and diabetes
(regression). Each claim is a module with a ``measure(cfg)`` function that
returns its typed result (a :class:`~jloss.demo.result.ClaimResult` subclass)
with the measured numbers, a table and ``holds`` (True / False: the demo
reports what the data says, also when a claim does not hold).
:func:`~jloss.demo.report.run` runs them all, prints the tables and writes PNG
plots.

Modules: ``config`` (sizes), ``data`` and ``model`` (scikit-learn data, a
small MLP), ``runs`` (many runs trained as one compiled program), ``result``
(the common report), one module per experiment (``outliers``, ``ce_vs_mse``,
``gradients``, ``imbalance``, ``optimizers``, ``calibration``, ``lr_finder``,
``landscape``) and ``report`` (the runner). The demo uses only jloss's public
API: losses, :func:`jloss.optimizer`, :func:`jloss.make_train_step`,
:func:`jloss.set_learning_rate`, :mod:`jloss.metrics`, :func:`jloss.lr_finder`,
:func:`jloss.loss_landscape` and :mod:`jloss.plot`.
"""

from jloss.demo.calibration import SMOOTHING
from jloss.demo.config import Config, config
from jloss.demo.optimizers import LEARNING_RATES
from jloss.demo.report import CLAIMS, format_table, run

__all__ = ["CLAIMS", "LEARNING_RATES", "SMOOTHING", "Config", "config", "format_table", "run"]

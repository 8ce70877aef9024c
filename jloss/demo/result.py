"""What an experiment of the demo returns: its report, and per claim its measured numbers, typed."""

import abc
import dataclasses
import math
from typing import ClassVar

import numpy as np

VERDICTS = {True: "HOLDS", False: "DOES NOT HOLD", None: "(tool)"}


# metadata of a result field kept for the figure (curves, landscapes), left out of the numbers and the JSON
FIGURE_ONLY = {"json": False}


@dataclasses.dataclass(kw_only=True)
class ClaimResult(abc.ABC):
    """The report of one experiment; each claim's subclass adds its measured numbers as fields.

    Attributes:
      key: the experiment's name (as for ``--only``); its plot is ``demo-<key>.png``.
      letter: the claim's letter in the learning material ("" for the tools).
      statement: the claim, in words.
      setup: data, model, optimizer and sizes.
      holds: whether the claim holds on the data (None for a tool, which claims nothing).
      summary: the measured numbers in a sentence.
      short: the key numbers, for the summary table.
      headers, rows: the main table.
      tables: further ``(headers, rows)`` tables.
      plot: the path of the PNG plot, once drawn.
      seconds: the experiment's wall-clock time, once run.
    """

    columns: ClassVar[int] = 2  # panels of the figure

    key: str
    letter: str
    statement: str
    setup: str
    holds: bool | None
    summary: str
    short: str
    headers: list
    rows: list
    tables: list = dataclasses.field(default_factory=list)
    plot: str | None = None
    seconds: float | None = None

    @property
    def verdict(self):
        """``HOLDS``, ``DOES NOT HOLD``, or ``(tool)``."""
        return VERDICTS[self.holds]

    def numbers(self):
        """The claim's measured numbers: the fields its subclass adds, except those kept for the figure."""
        base = {f.name for f in dataclasses.fields(ClaimResult)}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in base and f.metadata.get("json", True)}

    @abc.abstractmethod
    def draw(self, axes):
        """Draw the claim's figure on ``axes``, a list of ``columns`` matplotlib Axes."""


def to_plain(x):
    """JSON-ready copy: dataclasses to dicts, NumPy scalars and arrays to numbers and lists, keys to str."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: to_plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {str(k): to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_plain(x.tolist())
    if isinstance(x, np.generic):
        return to_plain(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x

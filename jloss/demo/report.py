"""Running the demo: the experiments in order, their tables, plots, summary and JSON."""

import json
import os
import time

import jax

from jloss.demo import (
    calibration,
    ce_vs_mse,
    gradients,
    imbalance,
    landscape,
    lr_finder,
    optimizers,
    outliers,
)
from jloss.demo.config import config
from jloss.demo.result import to_plain
from jloss.recommend import guide_rows

# name (for --only) -> measure(cfg) -> ClaimResult, in the order they run
CLAIMS = {
    "outliers": outliers.measure,
    "ce-vs-mse": ce_vs_mse.measure,
    "gradients": gradients.measure,
    "imbalance": imbalance.measure,
    "optimizers": optimizers.measure,
    "calibration": calibration.measure,
    "lr-finder": lr_finder.measure,
    "landscape": landscape.measure,
}


def format_table(headers, rows):
    """A plain-text table with aligned columns."""
    cells = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([fmt(cells[0]), line, *map(fmt, cells[1:])])


def _title(res):
    return f"({res.letter}) {res.key}" if res.letter else res.key


def print_result(res, file=None):
    """Print one experiment: verdict, claim, setup, tables, measured numbers, plot and time."""
    print(f"\n== {_title(res)}: {res.verdict}", file=file)
    print(f"claim: {res.statement}", file=file)
    print(f"setup: {res.setup}", file=file)
    print(format_table(res.headers, res.rows), file=file)
    for headers, rows in res.tables:
        print(file=file)
        print(format_table(headers, rows), file=file)
    print(f"measured: {res.summary}", file=file)
    if res.plot:
        print(f"plot: {res.plot}", file=file)
    if res.seconds is not None:
        print(f"time: {res.seconds:.1f} s", file=file)


def summary_rows(results):
    """Rows ``(claim, verdict, key numbers)`` of the summary table."""
    return [(_title(r), r.verdict, r.short) for r in results]


def to_json(results):
    """The results as JSON-ready dicts: the report, the verdict and the numbers (no curves or landscapes)."""
    return [to_plain({"key": r.key, "claim": r.letter, "statement": r.statement, "holds": r.holds,
                      "summary": r.summary, "headers": r.headers, "rows": r.rows, "numbers": r.numbers(),
                      "setup": r.setup, "tables": r.tables, "plot": r.plot, "verdict": r.verdict,
                      "short": r.short, "seconds": r.seconds})
            for r in results]


def draw(res, out):
    """Draw ``res``'s figure into ``out/demo-<key>.png`` (matplotlib's Agg canvas: no display); its path."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * res.columns, 3.8), layout="constrained")
    res.draw([fig.add_subplot(1, res.columns, i + 1) for i in range(res.columns)])
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"demo-{res.key}.png")
    fig.savefig(path, dpi=80)
    return path


def run(quick=False, seed=0, out="jloss-demo", progress=True, only=None, file=None, json_path=None):
    """Run the demo: print the selection guide, run each claim, print tables, write plots to ``out``.

    Args:
      quick: the small, fast configuration (used by the tests).
      seed: base seed; repeat r of an experiment uses seed + r.
      out: folder for the PNG plots (None: no plots).
      progress: show tqdm progress bars.
      only: names of the experiments to run (keys of ``CLAIMS``); default all.
      file: where to print (default: standard output).
      json_path: also write the results (numbers, tables, verdicts) to this JSON file.

    Returns:
      The list of results, one :class:`jloss.demo.result.ClaimResult` per experiment.

    Raises:
      ValueError: for a name in ``only`` that is not a key of ``CLAIMS``.
    """
    names = list(CLAIMS) if not only else list(only)
    unknown = [n for n in names if n not in CLAIMS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {', '.join(unknown)}; known: {', '.join(CLAIMS)}")
    cfg = config(quick=quick, seed=seed, progress=progress)
    start = time.perf_counter()
    print(f"jloss demo ({'quick' if quick else 'full'}, seed {seed}) on {jax.devices()[0].platform.upper()}, "
          f"JAX {jax.__version__}", file=file)
    if not only:
        print("\nWhich loss? (jloss.recommend)", file=file)
        print(format_table(["situation", "loss", "activation", "options"], guide_rows()), file=file)
    results = []
    for name in names:
        t0 = time.perf_counter()
        res = CLAIMS[name](cfg)
        if out:
            res.plot = draw(res, out)
        res.seconds = time.perf_counter() - t0
        print_result(res, file=file)
        results.append(res)
    print("\n== summary", file=file)
    print(format_table(["claim", "verdict", "measured"], summary_rows(results)), file=file)
    print(f"\n{len(results)} experiments in {time.perf_counter() - start:.0f} s"
          + (f"; plots in {out}" if out else ""), file=file)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(to_json(results), f, indent=1)
    return results

"""``jloss demo``: the quick run on a fixed seed computes every claim's numbers.

The quick demo runs once, through the command line (``python -m jloss demo
--quick --json ...``) in a subprocess, and each test reads its claim from the
JSON. Where a claim holds on the data, its test checks that it holds; where it
does not (label smoothing and ECE, CE vs MSE under Adam), the test checks that
the numbers are computed and that the verdict follows from them.
"""

import ast
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from jloss import cli, demo, metrics
from jloss.demo.calibration import reliability
from jloss.demo.report import to_json
from jloss.demo.result import to_plain

ROOT = pathlib.Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def _run(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "jloss", *args], capture_output=True, text=True, env=env,
                          cwd=kwargs.get("cwd", ROOT), timeout=900)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = _run("demo", "--quick", "--seed", "0", "--no-progress", "--out", str(out), "--json",
                str(out / "results.json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {r["key"]: r for r in json.loads((out / "results.json").read_text())}
    return {"out": out, "stdout": proc.stdout, "results": results}


def test_runs_every_experiment_and_prints_the_tables(quick):
    assert list(quick["results"]) == list(demo.CLAIMS)
    text = quick["stdout"]
    assert "Which loss? (jloss.recommend)" in text and "huber" in text  # the guide
    assert "== summary" in text
    for key, res in quick["results"].items():
        assert f"{key}: " in text
        assert res["rows"] and all(len(r) == len(res["headers"]) for r in res["rows"])
        assert res["verdict"] in text


def test_writes_the_plots(quick):
    names = sorted(p.name for p in quick["out"].glob("*.png"))
    assert names == sorted(f"demo-{k}.png" for k in demo.CLAIMS)
    for res in quick["results"].values():
        data = pathlib.Path(res["plot"]).read_bytes()
        assert data[:8] == PNG and len(data) < 200_000


def test_a_outliers(quick):
    res = quick["results"]["outliers"]
    rmse = res["numbers"]["rmse"]
    assert set(rmse) == {"MSE (clean targets, reference)", "MSE", "MAE", "Huber (delta=1)"}
    assert all(np.isfinite(v) and v > 0 for v in rmse.values())
    assert res["holds"] is True
    assert rmse["MAE"] < rmse["MSE"] and rmse["Huber (delta=1)"] < rmse["MSE"]
    # the outliers are what hurts MSE: trained on clean targets it does better
    assert rmse["MSE (clean targets, reference)"] < rmse["MSE"]


def test_b_ce_vs_mse(quick):
    res = quick["results"]["ce-vs-mse"]
    steps, verdicts = res["numbers"]["steps"], res["numbers"]["verdicts"]
    assert set(steps) == {"SGD lr=0.1 / cross-entropy", "SGD lr=0.1 / MSE on softmax",
                          "SGD lr=1.0 / MSE on softmax", "Adam lr=1e-3 / cross-entropy",
                          "Adam lr=1e-3 / MSE on softmax"}
    for v in steps.values():
        assert 0 <= v["final_accuracy"] <= 1 and len(v["steps"]) == 2
    # holds with SGD: cross-entropy gets there, MSE on softmax at the same rate does not
    assert verdicts["SGD lr=0.1"] == "CE faster"
    assert steps["SGD lr=0.1 / cross-entropy"]["median_steps"] is not None
    # with Adam the two are measured; the overall verdict follows from both comparisons
    assert steps["Adam lr=1e-3 / cross-entropy"]["median_steps"] is not None
    assert res["holds"] == all(v == "CE faster" for v in verdicts.values())


def test_c_gradients(quick):
    res = quick["results"]["gradients"]
    n = res["numbers"]
    np.testing.assert_allclose(np.round(n["bce"], 2), [4.61, 2.30, 0.69, 0.11, 0.01])
    np.testing.assert_allclose(n["grad_bce"], np.array([0.01, 0.10, 0.50, 0.90, 0.99]) - 1, atol=1e-6)
    p = np.array([0.01, 0.10, 0.50, 0.90, 0.99])
    np.testing.assert_allclose(n["grad_mse"], 2 * (p - 1) * p * (1 - p), atol=1e-6)
    assert n["ratio_at_p001"] == pytest.approx(1 / (2 * 0.01 * 0.99), rel=1e-4)
    assert n["table_matches"] is True
    assert n["data_grad_ratio"] >= 10
    assert n["start_accuracy"] < 0.2  # the start really is confidently wrong
    assert res["holds"] is True


def test_d_imbalance(quick):
    res = quick["results"]["imbalance"]
    n = res["numbers"]
    assert 0.03 < n["train_positives"] / n["train_size"] < 0.07
    assert all(0 <= v <= 1 for v in n["recall"].values())
    assert res["holds"] is True
    weighted = next(k for k in n["recall"] if k.startswith("BCE, pos_weight"))
    assert n["recall"][weighted] > n["recall"]["BCE"]
    assert weighted in n["better_than_bce"]
    assert n["recall_gain"][weighted] > 2 * n["recall_gain_se"][weighted]


def test_e_learning_rates_and_optimizers(quick):
    res = quick["results"]["optimizers"]
    lrs = res["numbers"]["learning_rates"]
    assert [float(k) for k in lrs] == list(demo.LEARNING_RATES)
    assert lrs[str(demo.LEARNING_RATES[-1])]["verdict"] == "diverged"
    assert lrs[str(demo.LEARNING_RATES[0])]["verdict"] == "crawled"
    assert res["holds"] is True
    opts = res["numbers"]["optimizers"]
    assert len(opts) == 4 and all(0 <= v["test_accuracy"] <= 1 for v in opts.values())
    assert {k.split()[0] for k in opts} == {"sgd", "momentum", "adam", "rmsprop"}


def test_f_calibration(quick):
    res = quick["results"]["calibration"]
    by = res["numbers"]["by_smoothing"]
    assert [float(k) for k in by] == list(demo.SMOOTHING)
    for v in by.values():
        assert 0 <= v["ece"] <= 1 and 0 <= v["accuracy"] <= 1 and v["nll"] > 0
    assert res["holds"] == (by["0.1"]["ece"] < by["0.0"]["ece"])
    # label smoothing lowers the confidence, whatever that does to the ECE
    assert by["0.1"]["confidence"] < by["0.0"]["confidence"]


def test_tools(quick):
    finder = quick["results"]["lr-finder"]["numbers"]
    assert 1e-4 <= finder["suggested_lr"] <= 100 and finder["steps"] >= 2
    land = quick["results"]["landscape"]["numbers"]
    assert all(np.isfinite(v) for v in land["center"].values())
    assert land["surface_min"] <= min(land["center"].values()) + 1e-6


# ----------------------------------------------------------- command line, helpers


def test_help():
    proc = _run("demo", "--help")
    assert proc.returncode == 0
    for word in ("--quick", "--out", "--seed", "--no-progress", "--only", "outliers", "calibration",
                 "scikit-learn"):
        assert word in proc.stdout


def test_only_unknown_experiment_is_an_error(capsys, monkeypatch):
    # the suite's conftest sets xla_backend_optimization_level itself: start without it
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    with pytest.raises(SystemExit) as err:
        cli.main(["demo", "--only", "nope"])
    assert err.value.code == 2
    assert "unknown experiment" in capsys.readouterr().err
    # rejected before anything is set up: the test process's XLA flags are left alone
    assert "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", "")


def test_no_command_is_an_error():
    with pytest.raises(SystemExit):
        cli.main([])


def test_run_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown experiment"):
        demo.run(only=["nope"], out=None)


def test_reliability_uses_the_ece_bins():
    labels = np.array([0, 1, 0, 1])
    confident = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # conf 1, accuracy 3/4
    centers, acc = reliability(confident, labels, bins=4)
    np.testing.assert_allclose(centers, [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_array_equal(np.isnan(acc), [True, True, True, False])
    assert acc[-1] == pytest.approx(0.75)
    ece = metrics.expected_calibration_error(confident, labels, from_logits=False, num_bins=4)
    assert float(ece) == pytest.approx(0.25)
    # confidence exactly on an edge goes to the bin below it, as in the ECE: (b/M, (b+1)/M]
    on_edge = np.array([[0.5, 0.5]] * 4)  # conf 0.5, argmax 0: accuracy 1/2
    _, acc = reliability(on_edge, labels, bins=4)
    assert acc[1] == pytest.approx(0.5) and np.isnan(acc[2])
    ece = metrics.expected_calibration_error(on_edge, labels, from_logits=False, num_bins=4)
    assert float(ece) == pytest.approx(0.0)


def test_specificity_is_the_recall_of_flipped_predictions():
    # what claim_imbalance computes: recall, and specificity as binary_recall of ~pred, ~label
    pred, labels = np.array([1, 0, 1, 1, 0]) == 1, np.array([1, 1, 0, 1, 0]) == 1
    assert float(metrics.binary_recall(pred, labels)) == pytest.approx(2 / 3)
    assert float(metrics.binary_recall(~pred, ~labels)) == pytest.approx(1 / 2)


def test_format_table():
    text = demo.format_table(["a", "bb"], [("x", 1), ("yyy", 22)])
    assert text.splitlines() == ["a    bb", "---  --", "x    1", "yyy  22"]


def _ce_vs_mse_result(verdicts):
    from jloss.demo.ce_vs_mse import CeVsMseResult, StepsToAccuracy

    return CeVsMseResult(key="ce-vs-mse", letter="b", statement="s", setup="u",
                         holds=all(v == "CE faster" for v in verdicts.values()), summary="m", short="k",
                         headers=["h"], rows=[("r",)],
                         steps={"SGD / CE": StepsToAccuracy([3, None], 3.0, 0.5)}, verdicts=verdicts,
                         threshold=0.9, curves={("SGD", "CE"): np.zeros((2, 3))})


def test_typed_result_gives_its_numbers_and_json_without_the_figure_data():
    res = _ce_vs_mse_result({"SGD lr=0.1": "CE faster", "Adam lr=1e-3": "tie (within 10%)"})
    assert set(res.numbers()) == {"steps", "verdicts"}  # not threshold, not the curves
    (plain,) = to_json([res])
    assert plain["numbers"]["steps"] == {"SGD / CE": {"steps": [3, None], "median_steps": 3.0,
                                                      "final_accuracy": 0.5}}
    assert plain["claim"] == "b" and plain["holds"] is False
    assert plain["verdict"] == "PARTLY: SGD: CE faster, Adam: tie (within 10%)"
    json.dumps(plain)  # plain data only
    assert _ce_vs_mse_result({"SGD lr=0.1": "CE faster"}).verdict == "HOLDS"
    # float keys, NumPy values and non-finite numbers become JSON
    assert to_plain({0.1: np.float32(0.5), "x": np.array([1.0, np.inf])}) == {
        "0.1": 0.5, "x": [1.0, "inf"]}


def _private_jloss_uses(source):
    """The private jloss names a module's source imports or reaches (``jloss.x._y``, ``metrics._y``)."""
    tree = ast.parse(source)
    bound, found = {"jloss"}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jloss"):
            if node.module.startswith("jloss.demo"):
                continue
            names = [a.name for a in node.names]
            found += [f"{node.module}.{n}" for n in names
                      if any(p.startswith("_") for p in [*node.module.split("."), n])]
            bound.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):
            bound.update(a.asname or a.name.split(".")[0] for a in node.names if a.name.startswith("jloss"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            root = node
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in bound:
                found.append(ast.unparse(node))
    return found


def test_demo_uses_only_public_jloss_names():
    for path in sorted((ROOT / "jloss" / "demo").glob("*.py")):
        assert _private_jloss_uses(path.read_text()) == [], path.name
    # what the check catches: the monolithic demo.py reached into viz and metrics
    old = "from jloss import metrics, viz\nfrom jloss._core.checks import x\nviz._set_learning_rate(s, 1)\n" \
          "metrics._calibration_bins(p, y, 10)\n"
    assert _private_jloss_uses(old) == ["jloss._core.checks.x", "viz._set_learning_rate",
                                        "metrics._calibration_bins"]

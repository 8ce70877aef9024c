"""The documentation: every public docstring has the project's sections and runnable
examples, every public name has a docs page, and the Sphinx site builds without a warning.
"""

import doctest
import inspect
import pathlib
import re
import subprocess
import sys

import pytest

import jloss

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

FUNCTION_SECTIONS = ("Args:", "Returns:", "Raises:", "Examples:", "References:")
CLASS_SECTIONS = ("Examples:",)
RAISE_NOTHING = {"jloss.learning_rate"}  # functions with no error to document
FORMULA_MODULES = ("jloss.losses.", "jloss.heads.", "jloss.metrics")  # losses and metrics: a formula


def _public():
    """``(qualified name, object)`` of every public function and class, aliases once."""
    out, seen = [], set()
    for module, prefix in ((jloss, "jloss"), (jloss.metrics, "jloss.metrics")):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj) or id(obj) in seen:
                continue
            seen.add(id(obj))
            # an alias (mse) is documented under the function's own name (mean_squared_error)
            own = getattr(obj, "__name__", name)
            out.append((f"{prefix}.{own if getattr(module, own, None) is obj else name}", obj))
    return out


PUBLIC = _public()
IDS = [name for name, _ in PUBLIC]


def test_public_list_is_complete():
    assert len(PUBLIC) >= 45
    assert "jloss.mean_squared_error" in IDS and "jloss.mse" not in IDS
    assert "jloss.metrics.accuracy" in IDS


@pytest.mark.parametrize(("name", "obj"), PUBLIC, ids=IDS)
def test_docstring_sections(name, obj):
    doc = inspect.getdoc(obj) or ""
    summary = doc.split("\n", 1)[0]
    assert summary.endswith(".") and len(summary) <= 110, f"{name}: one-line summary, got {summary!r}"
    required = CLASS_SECTIONS if inspect.isclass(obj) else FUNCTION_SECTIONS
    if name in RAISE_NOTHING:
        required = tuple(r for r in required if r != "Raises:")
    if getattr(obj, "__module__", "").startswith(FORMULA_MODULES):
        required += (".. math::",)
    missing = [s for s in required if not re.search(rf"^{re.escape(s)}", doc, re.M)]
    assert not missing, f"{name} has no {', '.join(missing)} section"


@pytest.mark.parametrize(("name", "obj"), PUBLIC, ids=IDS)
def test_docstring_examples_run(name, obj):
    tests = doctest.DocTestFinder(recurse=False).find(obj, name, globs={})
    assert sum(len(t.examples) for t in tests) > 0, f"{name} has no '>>>' example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    for t in tests:
        runner.run(t, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_every_public_name_has_a_docs_page():
    pages = "\n".join(p.read_text() for p in sorted((DOCS / "api").glob("*.md")))
    # ".. autofunction:: jloss.name" in an {eval-rst} block, or the MyST form "```{autofunction} jloss.name"
    documented = re.findall(r"^\s*(?:\.\. auto(?:function|class)::|```\{auto(?:function|class)\}) +"
                            r"(jloss(?:\.metrics)?\.\w+)", pages, re.M)
    assert len(documented) == len(set(documented)), "a name is documented twice"
    missing = [name for name in IDS if name not in documented]
    assert not missing, f"no docs/api page documents {missing}"


def test_nothing_refers_to_files_outside_the_repository():
    # The contract a user needs lives in docs/conventions.md, not in a file they do not have.
    outside = re.compile(r"API" r"\.md|\.\./shared|shared/" r"API")
    offenders = [str(p.relative_to(ROOT)) for folder in ("jloss", "tests", "docs")
                 for p in sorted((ROOT / folder).rglob("*"))
                 if p.suffix in (".py", ".md") and outside.search(p.read_text())]
    assert not offenders


def test_sphinx_build_has_no_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-6000:]
    built = {p.relative_to(tmp_path / "html").as_posix() for p in (tmp_path / "html").rglob("*.html")}
    assert {"conventions.html", "api/regression.html", "notebooks/01_losses_tour.html"} <= built

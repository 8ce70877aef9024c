"""Every notebook in notebooks/ runs top to bottom without an error, and is kept tidy.

The notebooks are executed with nbclient in a fresh ``python3`` kernel whose
``PYTHONPATH`` starts with this checkout, so they test this jloss and not an
installed one. The kernel does not inherit the 4 forced CPU devices of
conftest.py: a notebook that wants them sets ``XLA_FLAGS`` itself, as it
must in Colab.
"""

import importlib.util
import os
import pathlib
import re
import time

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
TIMEOUT_S = 300  # per notebook, all cells together (each runs in under 2 minutes on 2 CPU cores)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FORCED_DEVICES = re.compile(r"--xla_force_host_platform_device_count=\S+")


def _kernel_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    flags = _FORCED_DEVICES.sub("", env.get("XLA_FLAGS", "")).strip()
    if flags:
        env["XLA_FLAGS"] = flags
    else:
        env.pop("XLA_FLAGS", None)
    env.pop("MPLBACKEND", None)  # the kernel's inline backend, as in Jupyter and Colab
    return env


def _execute(nb, name, timeout_s=TIMEOUT_S):
    """Run ``nb`` in place; fail naming the notebook, the cell and its error."""
    deadline = time.monotonic() + timeout_s
    current = {"index": None}

    def on_cell_start(cell, cell_index):
        current["index"] = cell_index

    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
        on_cell_start=on_cell_start,
    )
    failure = None
    try:
        client.execute(env=_kernel_env())
    except nbclient.exceptions.CellTimeoutError:
        index = current["index"]
        source = "(before the first cell)" if index is None else nb.cells[index].source
        failure = (f"{name}: timed out in cell {index} (the notebook's budget of {timeout_s} s ran out)\n"
                   f"--- cell source ---\n{source}")
    except (nbclient.exceptions.CellExecutionError, nbclient.exceptions.DeadKernelError) as err:
        failure = f"{name}: cell {current['index']} failed\n{_ANSI.sub('', str(err))}"
    if failure:
        pytest.fail(failure, pytrace=False)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path):
    _execute(nbformat.read(path, as_version=4), path.name)


def test_kernel_imports_this_checkout():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import jloss\nprint(jloss.__file__)")])
    _execute(nb, "probe", timeout_s=120)
    printed = "".join(o.get("text", "") for o in nb.cells[0].outputs).strip()
    assert pathlib.Path(printed).resolve() == ROOT / "jloss" / "__init__.py"


def _builder():
    spec = importlib.util.spec_from_file_location("notebook_build", NOTEBOOK_DIR / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 1


def test_notebooks_are_built_from_their_sources():
    build = _builder()
    built = {notebook for _, notebook in build.targets()}
    assert built == set(NOTEBOOKS), "every notebook has a source in notebooks/src/ and vice versa"
    for source, notebook in build.targets():
        assert notebook.read_text(encoding="utf-8") == build.render(source), (
            f"{notebook.name} differs from {source.name}: run python notebooks/_build.py")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_clean_and_opens_with_the_colab_install(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name}: clear outputs"
    assert 'if "google.colab" in sys.modules:' in code[0].source
    assert "%pip install" in code[0].source and _builder().REPO_URL in code[0].source


def test_readme_links_every_notebook():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Notebooks", 1)[1].split("\n## ", 1)[0]
    linked = set(re.findall(r"\]\((notebooks/[^)]+\.ipynb)\)", section))
    assert linked == {f"notebooks/{p.name}" for p in NOTEBOOKS}
    build = _builder()
    for path in NOTEBOOKS:
        assert build.colab_url(path.name) in section, f"README: no Open in Colab link for {path.name}"

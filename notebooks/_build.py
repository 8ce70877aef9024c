"""Build the notebooks in notebooks/ from their sources in notebooks/src/.

The sources are plain Python in the "percent" format, so they can be read,
diffed and linted like any module:

    # ruff: noqa: E402           lines before the first "# %%" are not copied
    # %% [markdown]
    # # Title                    a markdown cell: "# " is removed from each line
    # %% [install] extras=plot
    # (optional code that must run before the install, e.g. XLA_FLAGS)
    # %%
    import jloss                 a code cell

The ``[install]`` cell gets the Colab install block (below) appended: it
pip-installs jloss with the listed extras from ``REPO_URL`` only when the
notebook runs in Colab. Notebooks are written with their outputs cleared.

    python notebooks/_build.py            # rebuild every notebook
    python notebooks/_build.py --check    # exit 1 if a notebook is out of date
"""

import pathlib
import re
import sys

import nbformat

# The one place the repository URL lives: the notebooks' install cells and the
# README's "Open in Colab" links are made from it.
REPO_URL = "https://github.com/jloss-dev/jloss"

HERE = pathlib.Path(__file__).resolve().parent
SOURCES = HERE / "src"

INSTALL = '''\
import sys

# Colab only: install jloss from its repository. Elsewhere install it yourself,
# e.g. `pip install "jloss[{extras}]"` in a clone of the repository.
JLOSS_REPO_URL = "{url}"  # <-- the jloss repository (change it here for a fork)
if "google.colab" in sys.modules:
    %pip install -q "jloss[{extras}] @ git+{{JLOSS_REPO_URL}}"'''

_MARKER = re.compile(r"^# %%(?: \[(?P<kind>\w+)\])?(?P<options>.*)$")


def colab_url(notebook_name):
    """The "Open in Colab" address of ``notebooks/<notebook_name>`` on the main branch."""
    path = REPO_URL.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{path}/blob/main/notebooks/{notebook_name}"


def _markdown(lines):
    out = []
    for line in lines:
        if line.strip() == "#":
            out.append("")
        elif line.startswith("# "):
            out.append(line[2:])
        else:
            raise ValueError(f"markdown line does not start with '# ': {line!r}")
    return "\n".join(out).strip("\n")


def _options(text):
    return dict(item.split("=", 1) for item in text.split())


def build(source):
    """The notebook (an ``nbformat.NotebookNode``) made from one source file."""
    lines = pathlib.Path(source).read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if _MARKER.match(line)]
    if not starts:
        raise ValueError(f"{source}: no '# %%' cell markers")
    cells, installs = [], []
    for start, end in zip(starts, [*starts[1:], len(lines)], strict=True):
        match = _MARKER.match(lines[start])
        kind, body = match["kind"], lines[start + 1:end]
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(_markdown(body))
        elif kind in (None, "install"):
            code = "\n".join(body).strip("\n")
            if kind == "install":
                installs.append(len(cells))
                extras = _options(match["options"]).get("extras", "")
                install = INSTALL.format(extras=extras, url=REPO_URL)
                code = f"{code}\n\n{install}" if code else install
            cell = nbformat.v4.new_code_cell(code)
        else:
            raise ValueError(f"{source}:{start + 1}: unknown cell kind {kind!r}")
        cell["id"] = f"cell-{len(cells):02d}"
        cells.append(cell)
    if installs != [1] or cells[0].cell_type != "markdown":
        raise ValueError(f"{source}: needs a title markdown cell, then exactly one [install] cell")
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    }
    nbformat.validate(nb)
    return nb


def render(source):
    """The .ipynb text for one source file."""
    return nbformat.writes(build(source)) + "\n"


def targets():
    """``(source, notebook)`` paths for every source in notebooks/src/."""
    return [(src, HERE / f"{src.stem}.ipynb") for src in sorted(SOURCES.glob("[0-9]*.py"))]


def main(argv):
    check = "--check" in argv
    stale = []
    for source, notebook in targets():
        text = render(source)
        if notebook.exists() and notebook.read_text(encoding="utf-8") == text:
            continue
        if check:
            stale.append(notebook.name)
        else:
            notebook.write_text(text, encoding="utf-8")
            print(f"wrote {notebook.relative_to(HERE.parent)}")
    if stale:
        print("out of date (run python notebooks/_build.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

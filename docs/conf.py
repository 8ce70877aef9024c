"""Sphinx configuration: the jloss documentation.

Build with ``sphinx-build -W -b html docs docs/_build/html`` (``pip install "jloss[docs]"``).
The API pages are written from the docstrings (autodoc + napoleon, Google style); the
pages are Markdown (MyST) and the notebooks in ``notebooks/`` are rendered as they are
stored, never executed. Nothing is fetched from the network at build time.
"""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # document this checkout, not an installed copy

import jloss  # noqa: E402

project = "jloss"
author = "jloss contributors"
copyright = "jloss contributors"
release = version = jloss.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_nb",  # Markdown pages (it loads myst-parser) and .ipynb notebooks
]

source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "notebooks/src", "notebooks/.ipynb_checkpoints"]

# Docstrings: Google-style sections (Args, Returns, Raises, Examples, References).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"

# Notebooks are rendered with the outputs they are stored with.
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"jloss {release}"

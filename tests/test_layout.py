"""The package layout rule: no jloss module uses another jloss module's private names.

``from jloss.a import _x`` and ``a._x`` (with ``a`` a jloss module) are
violations; importing a module whose path has a private package in it
(``from jloss._core import checks``) is not: ``_core`` is the package's
internal API. Parsed with ``ast``, so nothing is imported.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "jloss"


def _module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _resolve(node, bound):
    """The dotted jloss module an expression names (``checks``, ``jloss.losses``), or None."""
    if isinstance(node, ast.Name):
        return bound.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, bound)
        if base is not None and f"{base}.{node.attr}" in MODULES:
            return f"{base}.{node.attr}"
    return None


def private_uses(source, this):
    """``(line, text)`` of every use of another jloss module's private name in ``source``
    (the text of module ``this``)."""
    tree = ast.parse(source)
    bound, found = {}, []
    for node in ast.walk(tree):  # names bound to jloss modules, anywhere in the file
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "jloss":
                    bound[alias.asname or "jloss"] = alias.name if alias.asname else "jloss"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "jloss":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in MODULES:
                    bound[alias.asname or alias.name] = full
                elif _private(alias.name) and node.module != this:
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = _resolve(node.value, bound)
            if owner is not None and owner != this and f"{owner}.{node.attr}" not in MODULES:
                found.append((node.lineno, f"{owner}.{node.attr}"))
    return sorted(found)


def test_the_scan_sees_the_package():
    assert {"jloss", "jloss._core.checks", "jloss.losses.regression"} <= set(MODULES)


def test_the_scan_finds_both_kinds_of_violation():
    source = ("from jloss._core import checks\nfrom jloss._core.checks import _CHECKING\n"
              "import jloss.kernels.common as common\nimport jloss\nx = checks._CHECKING\n"
              "y = common._private\nz = jloss.losses.regression._check\n"
              "ok = checks.check_float, checks.__name__\nfrom jloss.losses.regression import _x\n")
    found = [text for _, text in private_uses(source, "jloss.losses.probe")]
    assert found == ["from jloss._core.checks import _CHECKING", "jloss._core.checks._CHECKING",
                     "jloss.kernels.common._private", "jloss.losses.regression._check",
                     "from jloss.losses.regression import _x"]
    assert private_uses(source, "jloss.losses.regression") == [
        (2, "from jloss._core.checks import _CHECKING"), (5, "jloss._core.checks._CHECKING"),
        (6, "jloss.kernels.common._private")]


def test_no_module_uses_another_modules_private_names():
    violations = [f"{path.relative_to(ROOT)}:{line}: {text}"
                  for name, path in sorted(MODULES.items())
                  for line, text in private_uses(path.read_text(), name)]
    assert not violations, "private names used across modules:\n" + "\n".join(violations)

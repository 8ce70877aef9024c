"""The README's two set-up commands and CI stay in step."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_ci_runs_the_readme_test_command():
    main_job, test_cmd = _readme_commands()[:2]
    assert "pytest" in test_cmd and "pytest" not in main_job
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert test_cmd in ci


def test_changelog_has_unreleased_section():
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()

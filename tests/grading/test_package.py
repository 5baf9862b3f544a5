"""The grading package stands apart from the students' ``helpers``: helpers never imports it, and the old
``python -m helpers.course`` still works for one release, saying where the command went."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.labtools import ROOT


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_helpers_never_imports_the_grading_package():
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "helpers").rglob("*.py"))
        if path.name != "course.py"  # the deprecation shim, which forwards to seglabs_grading on purpose
        and any(name.split(".")[0] == "seglabs_grading" for name in _imported_modules(path))
    ]
    assert not offenders, f"helpers must not import seglabs_grading: {offenders}"


def test_old_module_path_still_runs_the_course_command_with_a_deprecation_note():
    run = subprocess.run(
        [sys.executable, "-m", "helpers.course", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "usage: course" in run.stdout
    assert "deprecated" in run.stderr and "seglabs_grading" in run.stderr

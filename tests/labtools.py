"""Shared tools of the lab test harness: discover labs, read nbgrader metadata, run nbgrader's real commands.

Every lab under ``solutions/NN_name/NN_name.ipynb`` is picked up automatically; nothing here names a lab.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
LABS = ROOT / "labs"
VENV_BIN = Path(sys.executable).parent

SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN_MARKERS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
HIDDEN_BLOCK = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)
SOLUTION_BLOCK = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?### END SOLUTION[ \t]*$", re.S | re.M)


def lab_names() -> list[str]:
    """Names of all labs with a solution notebook, in order."""
    return sorted(p.name for p in SOLUTIONS.iterdir() if (p / f"{p.name}.ipynb").is_file())


def solution_path(lab: str) -> Path:
    return SOLUTIONS / lab / f"{lab}.ipynb"


def release_path(lab: str) -> Path:
    return LABS / lab / f"{lab}.ipynb"


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


@dataclass(frozen=True)
class GradedCell:
    grade_id: str
    cell_type: str
    points: float
    autograded: bool  # a test cell (True) or a manually graded answer (False)


def graded_cells(nb) -> list[GradedCell]:
    """Cells that carry points: autograded test cells and manually graded answers."""
    out = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if meta.get("grade"):
            out.append(
                GradedCell(
                    meta["grade_id"],
                    cell.cell_type,
                    float(meta.get("points", 0)),
                    autograded=not meta.get("solution", False),
                )
            )
    return out


def answer_code_cells(nb) -> list[str]:
    """grade_ids of autograded answer cells (code cells students fill in)."""
    return [
        nbgrader_meta(c)["grade_id"]
        for c in nb.cells
        if c.cell_type == "code" and nbgrader_meta(c).get("solution") and not nbgrader_meta(c).get("grade")
    ]


def hidden_test_lines(nb) -> list[str]:
    """Distinctive source lines of the hidden-test blocks: what must never reach students.

    Lines that also occur outside the hidden blocks (a shared import, a visible check) and short or generic
    lines (``def case():``, ``})``) are left out: seeing them reveals nothing.
    """
    hidden, visible = [], set()
    for cell in nb.cells:
        blocks = HIDDEN_BLOCK.findall(cell.source)
        outside = HIDDEN_BLOCK.sub("", cell.source)
        visible.update(line.strip() for line in outside.splitlines())
        for block in blocks:
            hidden.extend(line.strip() for line in block.splitlines())
    return [
        line
        for line in dict.fromkeys(hidden)
        if len(line) >= 25 and not line.startswith("#") and line not in visible
    ]


def nbgrader_env(grading_dir: Path | None = None, budget: str = "ci") -> dict:
    """Environment for nbgrader subprocesses: the venv first on PATH (nbgrader runs `alembic`)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["SEGLAB_BUDGET"] = budget
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    # One thread per kernel: with two test workers on two cores, torch's default threads thrash (10x slower).
    env.setdefault("OMP_NUM_THREADS", "1")
    if grading_dir is not None:
        env["SEGLAB_GRADING_DIR"] = str(grading_dir)
    return env


def nbgrader(args: list[str], cwd: Path, env: dict, timeout: float = 1200) -> subprocess.CompletedProcess:
    """Run one real nbgrader command; output captured for assertions and failure messages."""
    return subprocess.run(
        [str(VENV_BIN / "nbgrader"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def make_course(tmp: Path, labs: list[str]) -> Path:
    """A throw-away course directory: the project's nbgrader_config.py and copies of the solutions."""
    course = tmp / "course"
    (course / "solutions").mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    for lab in labs:
        shutil.copytree(
            SOLUTIONS / lab,
            course / "solutions" / lab,
            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"),
        )
    return course


def normalised(path: Path) -> dict:
    """Notebook JSON for comparison: ignore what nbformat fills in on write (minor version, ids order)."""
    data = json.loads(path.read_text())
    data.pop("nbformat_minor", None)
    return data

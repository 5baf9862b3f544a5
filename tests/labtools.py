"""Shared tools of the lab test harness: discover labs, read nbgrader metadata, run nbgrader's real commands.

Every lab under ``solutions/NN_name/NN_name.ipynb`` is picked up automatically; nothing here names a lab.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from seglabs_grading.cells import (  # noqa: F401  (re-exported for the tests)
    HIDDEN_BLOCK,
    HIDDEN_MARKERS,
    SOLUTION_BLOCK,
    SOLUTION_MARKERS,
    GradedCell,
    answer_code_cells,
    graded_cells,
    hidden_test_lines,
    is_answer_cell,
    is_test_cell,
    nbgrader_meta,
    read,
)
from seglabs_grading.cells import lab_names as _lab_names

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
LABS = ROOT / "labs"
VENV_BIN = Path(sys.executable).parent


def lab_names() -> list[str]:
    """Names of all labs with a solution notebook, in order."""
    return _lab_names(SOLUTIONS)


def solution_path(lab: str) -> Path:
    return SOLUTIONS / lab / f"{lab}.ipynb"


def release_path(lab: str) -> Path:
    return LABS / lab / f"{lab}.ipynb"


def nbgrader_env(grading_dir: Path | None = None, budget: str = "ci") -> dict:
    """Environment for nbgrader subprocesses: the venv first on PATH (nbgrader runs `alembic`)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["SEGLAB_BUDGET"] = budget
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    # One thread per kernel: with two test workers on two cores, torch's default threads thrash (10x slower).
    env.setdefault("OMP_NUM_THREADS", "1")
    # The tests grade the project's own (and crafted) notebooks with plain nbgrader, outside the sandbox.
    env["SEGLAB_UNSANDBOXED_GRADING"] = "1"
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

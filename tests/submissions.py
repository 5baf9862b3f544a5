"""Synthetic submissions for the grading tests and benchmark: correct, partially wrong, blank, hostile, tampered.

Every builder works for any lab (it reads the solution and the generated student version); nothing names a lab.
Hostile code is prepended to the lab's first answer cell, so a submission that survives the attack still
defines the right function: its score then shows the attack changed nothing. Every attack is bounded (6 GB
against a 2 GB cap, 200 forks against a cap of 64, 100 MB of output, loops stopped by the time limits), so a
sandbox failure cannot take the machine down.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.labtools import answer_code_cells, nbgrader_meta, read, solution_path


@dataclass(frozen=True)
class Targets:
    """What an attack aims at: real paths of the course being graded."""

    course: Path  # the course folder
    gradebook: Path  # the real gradebook
    other_submission: Path  # another student's submitted notebook
    canary: Path  # a file outside the course that must stay unchanged


# Each attack prints ESCAPED when it achieved something it must not; the tests look for that word.
ATTACKS: dict[str, str] = {
    "delete_files": """
import os, shutil
for _victim in [{canary!r}, {other!r}, {config!r}]:
    try:
        os.remove(_victim); print("ESCAPED: deleted", _victim)
    except OSError as _err:
        print("blocked:", type(_err).__name__)
for _folder in [{submitted!r}, {course!r}]:
    _existed = os.path.exists(_folder)  # in a sandbox it does not exist at all: nothing to remove
    shutil.rmtree(_folder, ignore_errors=True)
    print("ESCAPED: removed " + _folder if _existed and not os.path.exists(_folder) else "blocked: rmtree")
for _name in os.listdir("."):  # its own scratch folder: allowed, harmless
    shutil.rmtree(_name, ignore_errors=True) if os.path.isdir(_name) else os.remove(_name)
""",
    "overwrite_gradebook": """
import glob, os
_targets = [{gradebook!r}, "../grading/gradebook.db", "../../grading/gradebook.db", "gradebook.db"]
_targets += glob.glob("/tmp/seglabs-grade-*/job-*/grading/gradebook.db")
for _path in _targets:
    try:
        with open(_path, "r+b") as _fh:
            _fh.write(b"garbage"); print("ESCAPED: overwrote", _path)
    except OSError as _err:
        print("blocked:", type(_err).__name__)
try:
    _parent = os.getppid()
    os.kill(_parent, 9)  # in a sandbox, its own PID 1: the signal is ignored, and the kernel lives on
    import time; time.sleep(1)
    print("ESCAPED: killed the grader" if os.getppid() != _parent else "blocked: the parent ignored SIGKILL")
except OSError as _err:
    print("blocked:", type(_err).__name__)
""",
    "read_others": """
import glob
_paths = [{other!r}, {solution!r}] + glob.glob({submitted!r} + "/*/*/*.ipynb")
_paths += glob.glob("/tmp/seglabs-grade-*/job-*/grading/submitted/*/*/*.ipynb")
_paths += glob.glob("/tmp/seglabs-grade-*/job-*/course/source/*/*")
for _path in _paths:
    try:
        with open(_path) as _fh:
            _fh.read(); print("ESCAPED: read", _path)
    except OSError as _err:
        print("blocked:", type(_err).__name__)
""",
    "sys_exit": """
import sys
def _leave():
    sys.exit(3)
""",
    "kill_kernel": """
import os
os.kill(os.getpid(), 9)
""",
    "fork_past_cap": """
import os, time
_children = []
try:
    for _ in range(200):
        _pid = os.fork()
        if _pid == 0:
            time.sleep(120)
            os._exit(0)
        _children.append(_pid)
    print("ESCAPED: forked 200")
except OSError as _err:
    print("blocked after", len(_children), "forks:", type(_err).__name__)
""",
    "allocate_past_cap": """
try:
    _big = bytearray(6 * 1024**3); print("ESCAPED: allocated 6 GB"); del _big
except MemoryError:
    print("blocked: MemoryError")
""",
    "print_100mb": """
_line = "x" * (1 << 20)
for _ in range(100):
    print(_line)
""",
    "infinite_loop": """
while True:  # interrupted by the per-cell time limit
    pass
""",
    "loop_ignoring_interrupt": """
import signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:  # ignores the cell limit's interrupt: only the notebook limit can stop it
    pass
""",
}

# Attacks placed after the answer in its cell (the others come first, so a survivor still defines it).
AFTER_ANSWER = {"sys_exit", "print_100mb"}


def _cell(nb, grade_id: str):
    for cell in nb.cells:
        if nbgrader_meta(cell).get("grade_id") == grade_id:
            return cell
    raise KeyError(grade_id)


def test_cell_ids(nb) -> list[str]:
    """grade_ids of autograded test cells, in notebook order."""
    return [
        nbgrader_meta(c)["grade_id"]
        for c in nb.cells
        if nbgrader_meta(c).get("grade") and not nbgrader_meta(c).get("solution") and c.cell_type == "code"
    ]


test_cell_ids.__test__ = False  # a helper, not a pytest test


def correct(lab: str, release: Path):
    return read(solution_path(lab))


def blank(lab: str, release: Path):
    return read(release)


def partial(lab: str, release: Path):
    """The solution with its first answer replaced by the stub: strictly between 0 and full marks."""
    nb = read(solution_path(lab))
    stub = read(release)
    first = answer_code_cells(nb)[0]
    _cell(nb, first).source = _cell(stub, first).source
    return nb


def hostile(lab: str, release: Path, attack: str, targets: Targets):
    nb = read(solution_path(lab))
    code = ATTACKS[attack].format(
        canary=str(targets.canary),
        other=str(targets.other_submission),
        config=str(targets.course / "nbgrader_config.py"),
        submitted=str(targets.gradebook.parent / "submitted"),
        course=str(targets.course),
        gradebook=str(targets.gradebook),
        solution=str(targets.course / "solutions" / lab / f"{lab}.ipynb"),
    )
    if attack == "sys_exit":
        code += "_leave()\n"
    if attack in AFTER_ANSWER:  # at the end of the cell: the answer is defined whatever the attack does
        cell = _cell(nb, answer_code_cells(nb)[0])
        cell.source = cell.source + "\n" + code
        return nb
    cell = _cell(nb, answer_code_cells(nb)[0])
    cell.source = code.lstrip() + "\n" + cell.source
    return nb


def tampered(lab: str, release: Path, how: str):
    """Cell-level tampering a student can do by hand in the notebook's JSON."""
    nb = read(solution_path(lab))
    tests = test_cell_ids(nb)
    if how == "test_cell_deleted":
        nb.cells = [c for c in nb.cells if nbgrader_meta(c).get("grade_id") != tests[0]]
    elif how == "test_metadata_stripped":
        _cell(nb, tests[-1]).metadata.pop("nbgrader")
    elif how == "test_points_changed":
        meta = _cell(nb, tests[0]).metadata["nbgrader"]
        meta["points"] = float(meta["points"]) * 100
    elif how == "test_unlocked":
        _cell(nb, tests[0]).metadata["nbgrader"]["locked"] = False
    elif how == "duplicate_grade_id":
        answer = answer_code_cells(nb)[0]
        index = next(i for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("grade_id") == answer)
        pasted = copy.deepcopy(
            nb.cells[index]
        )  # JupyterLab's copy-paste: a new cell id, the same nbgrader metadata
        if "id" in pasted:
            pasted["id"] = f"{pasted['id'][:20]}-copy"
        nb.cells.insert(index, pasted)
    elif how == "test_source_emptied":
        # nbgrader restores a test cell's source from the gradebook: with the stub answer this must score 0 there.
        stub = read(release)
        first = answer_code_cells(nb)[0]
        _cell(nb, first).source = _cell(stub, first).source
        _cell(nb, tests[0]).source = "pass"
    else:
        raise ValueError(how)
    return nb


TAMPERING = [
    "test_cell_deleted",
    "test_metadata_stripped",
    "test_points_changed",
    "test_unlocked",
    "duplicate_grade_id",
    "test_source_emptied",
]


def _dumps(nb) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def submit(nb, submitted: Path, student: str, lab: str) -> Path:
    path = submitted / student / lab / f"{lab}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dumps(nb))
    return path


def corrupt(submitted: Path, student: str, lab: str) -> Path:
    path = submitted / student / lab / f"{lab}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"cells": [ this is not JSON')
    return path


_TEMPLATES: dict[str, Path] = {}


@atexit.register
def _remove_templates() -> None:
    import shutil

    for template in _TEMPLATES.values():
        shutil.rmtree(template.parent, ignore_errors=True)


def released_course(root: Path, lab: str) -> Path:
    """A throw-away course in ``root/course`` with ``lab`` generated by nbgrader (gradebook included).

    ``nbgrader generate_assignment`` runs once per test process and lab; later calls copy that template.
    The caller must point ``SEGLAB_GRADING_DIR`` at ``root/course/grading`` while using it.
    """
    import shutil
    import tempfile

    from seglabs_grading import course as course_mod
    from tests.labtools import make_course

    if lab not in _TEMPLATES:
        template_root = Path(tempfile.mkdtemp(prefix="seglabs-template-"))
        template = make_course(template_root, [lab])
        saved = os.environ.get("SEGLAB_GRADING_DIR")
        os.environ["SEGLAB_GRADING_DIR"] = str(template / "grading")
        try:
            # `course release` = nbgrader generate_assignment, exercised here for every test that needs a course.
            assert course_mod.release(course_mod.load_course(template), [lab]) == [lab]
        finally:
            if saved is None:
                os.environ.pop("SEGLAB_GRADING_DIR")
            else:
                os.environ["SEGLAB_GRADING_DIR"] = saved
        assert (template / "labs" / lab / f"{lab}.ipynb").exists()
        _TEMPLATES[lab] = template
    course = root / "course"
    shutil.copytree(_TEMPLATES[lab], course)
    return course


@contextlib.contextmanager
def throwaway_course(lab: str, prefix: str, *, private: bool = False, config: str = "") -> Iterator[Path]:
    """:func:`released_course` in a fresh folder under ``/tmp`` (mode 0755, or 0700 when ``private``: a checkout
    other users cannot enter), with ``SEGLAB_GRADING_DIR`` and ``SEGLAB_BUDGET=ci`` set while it is in use and
    ``config`` appended to its ``nbgrader_config.py``; the folder is removed afterwards."""
    import shutil
    import tempfile

    import pytest

    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if not private:
        os.chmod(root, 0o755)
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("SEGLAB_GRADING_DIR", str(root / "course" / "grading"))
        mp.setenv("SEGLAB_BUDGET", "ci")
        course = released_course(root, lab)
        if config:
            with open(course / "nbgrader_config.py", "a") as fh:
                fh.write("\n" + config + "\n")
        yield course
    finally:
        mp.undo()
        shutil.rmtree(root, ignore_errors=True)

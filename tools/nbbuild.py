"""Tiny helpers for maintainers who write solution notebooks from a script (see docs/authoring.md).

    from tools.nbbuild import md, code, answer, tests, written, save
    save("solutions/00_x/00_x.ipynb", [md("# Lab"), code("import torch"), ...])

The committed .ipynb stays the single source of truth; a build script is only a convenience.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def _nbgrader(
    grade_id: str, *, grade: bool, solution: bool, locked: bool, points: float | None = None
) -> dict:
    meta = {
        "grade": grade,
        "solution": solution,
        "locked": locked,
        "grade_id": grade_id,
        "schema_version": 3,
        "task": False,
    }
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def md(text: str, *, locked_id: str | None = None):
    """A markdown cell; with ``locked_id`` it is read-only for students."""
    meta = _nbgrader(locked_id, grade=False, solution=False, locked=True) if locked_id else {}
    return new_markdown_cell(text.strip("\n"), metadata=meta)


def code(text: str, *, locked_id: str | None = None):
    """A plain code cell; with ``locked_id`` it is read-only for students."""
    meta = _nbgrader(locked_id, grade=False, solution=False, locked=True) if locked_id else {}
    return new_code_cell(text.strip("\n"), metadata=meta)


def answer(grade_id: str, text: str):
    """An autograded answer cell; ``text`` holds ### BEGIN SOLUTION / ### END SOLUTION."""
    return new_code_cell(
        text.strip("\n"), metadata=_nbgrader(grade_id, grade=False, solution=True, locked=False)
    )


def tests(grade_id: str, points: float, text: str):
    """A locked test cell worth ``points``; hidden part between ### BEGIN/END HIDDEN TESTS."""
    return new_code_cell(
        text.strip("\n"), metadata=_nbgrader(grade_id, grade=True, solution=False, locked=True, points=points)
    )


def written(grade_id: str, points: float, text: str):
    """A manually graded markdown answer; the rubric goes inside ### BEGIN/END SOLUTION."""
    return new_markdown_cell(
        text.strip("\n"), metadata=_nbgrader(grade_id, grade=True, solution=True, locked=False, points=points)
    )


def save(path: str | Path, cells: list) -> None:
    """Write a notebook without outputs, with the standard kernelspec."""
    nb = new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC, "language_info": {"name": "python"}})
    for index, cell in enumerate(nb.cells):  # stable ids keep diffs readable when a script rebuilds a lab
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        cell["id"] = grade_id or f"cell-{index:03d}"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))

"""Reading nbgrader's graded cells: the one home of the rules the ``course`` command, the harness, the tests and the
Makefile share (which cells carry points, which are test and answer cells, where hidden tests and solutions start
and end).

``python -m seglabs_grading.cells --write-release-ids tests/grade_ids.json`` records every lab's grade_ids
and points as released (``make release-ids``).
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN_MARKERS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
HIDDEN_BLOCK = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)
SOLUTION_BLOCK = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?### END SOLUTION[ \t]*$", re.S | re.M)


def read(path: Path):
    """The notebook at ``path`` as an nbformat v4 node."""
    import nbformat

    return nbformat.read(str(path), as_version=4)


def nbgrader_meta(cell) -> dict:
    """The cell's nbgrader metadata (empty for an ordinary cell)."""
    return cell.get("metadata", {}).get("nbgrader", {})


def is_test(cell_type: str | None, *, grade: object, solution: object) -> bool:
    """The rule for a test cell, from a cell's type and nbgrader flags (a notebook's metadata or the gradebook's
    records): a code cell that carries points (``grade``) and that students do not answer (no ``solution``)."""
    return cell_type == "code" and bool(grade) and not solution


def is_test_cell(cell) -> bool:
    """Whether a notebook cell (a node or a plain dict) is an autograded test cell (see :func:`is_test`)."""
    meta = nbgrader_meta(cell)
    return is_test(cell.get("cell_type"), grade=meta.get("grade"), solution=meta.get("solution"))


def is_answer_cell(cell) -> bool:
    """Whether a notebook cell is an autograded answer cell: a code cell students fill in (``solution``) that
    carries no points itself (its test cell does)."""
    meta = nbgrader_meta(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("solution")) and not meta.get("grade")


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
            points = float(meta.get("points", 0))
            out.append(GradedCell(meta["grade_id"], cell.cell_type, points, is_test_cell(cell)))
    return out


def grade_points(path: Path) -> dict[str, float]:
    """``{grade_id: points}`` of the notebook at ``path``."""
    return {cell.grade_id: cell.points for cell in graded_cells(read(path))}


def answer_code_cells(nb) -> list[str]:
    """grade_ids of autograded answer cells (code cells students fill in)."""
    return [nbgrader_meta(c)["grade_id"] for c in nb.cells if is_answer_cell(c)]


def hidden_test_lines(nb) -> list[str]:
    """Distinctive source lines of the hidden-test blocks: what must never reach students.

    Lines that also occur outside the hidden blocks (a shared import, a visible check) and short or generic
    lines (``def case():``, ``})``) are left out: seeing them reveals nothing.
    """
    hidden, visible = [], set()
    for cell in nb.cells:
        visible.update(line.strip() for line in HIDDEN_BLOCK.sub("", cell.source).splitlines())
        for block in HIDDEN_BLOCK.findall(cell.source):
            hidden.extend(line.strip() for line in block.splitlines())
    return [
        line
        for line in dict.fromkeys(hidden)
        if len(line) >= 25 and not line.startswith("#") and line not in visible
    ]


def lab_names(source: Path) -> list[str]:
    """Labs under ``source`` (folders ``<lab>/<lab>.ipynb``), in order."""
    return sorted(p.name for p in source.iterdir() if (p / f"{p.name}.ipynb").is_file())


def release_ids(source: Path) -> dict[str, dict[str, float]]:
    """``{lab: {grade_id: points}}`` for every lab under ``source``."""
    return {lab: grade_points(source / lab / f"{lab}.ipynb") for lab in lab_names(source)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, default=Path("solutions"), help="folder of the source notebooks"
    )
    parser.add_argument("--write-release-ids", type=Path, metavar="JSON", required=True)
    args = parser.parse_args(argv)
    ids = release_ids(args.source)
    args.write_release_ids.write_text(json.dumps(ids, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.write_release_ids} ({len(ids)} labs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

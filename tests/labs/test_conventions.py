"""Every lab follows the conventions of docs/authoring.md (checked statically, in milliseconds)."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict

import pytest

from tests.labtools import (
    HIDDEN_MARKERS,
    ROOT,
    SOLUTION_MARKERS,
    answer_code_cells,
    graded_cells,
    is_test_cell,
    lab_names,
    nbgrader_meta,
    read,
    release_path,
    solution_path,
)
from tests.setup_cell import SETUP_CELL

LABS = lab_names()
EXERCISE_HEADING = re.compile(r"^## Exercise (\d+) — .+\((\d+(?:\.\d+)?) points?\)\s*$", re.M)
GRADE_IDS_FILE = ROOT / "tests" / "grade_ids.json"


def test_there_are_labs():
    assert "00_getting_started" in LABS, "solutions/00_getting_started/00_getting_started.ipynb is missing"


@pytest.mark.parametrize("lab", LABS)
def test_header_cell(lab):
    nb = read(solution_path(lab))
    header = nb.cells[0]
    assert header.cell_type == "markdown", f"{lab}: the first cell must be the markdown header"
    number = lab.split("_", 1)[0]
    assert re.match(rf"# Lab {number} — \S", header.source), (
        f"{lab}: header must start with '# Lab {number} — Title'"
    )
    for field in ("**Learning goals**", "**Prerequisites**", "**Estimated time**"):
        assert field in header.source, f"{lab}: header lacks {field}"
    assert nbgrader_meta(header).get("locked"), f"{lab}: the header cell must be locked"


@pytest.mark.parametrize("lab", LABS)
def test_setup_cell_is_the_standard_one(lab):
    nb = read(solution_path(lab))
    assert nb.cells[1].cell_type == "code" and nb.cells[1].source == SETUP_CELL.strip("\n"), (
        f"{lab}: the second cell must be the standard setup cell from tests/setup_cell.py"
    )


@pytest.mark.parametrize("lab", LABS)
def test_points_add_up(lab):
    nb = read(solution_path(lab))
    total = re.search(r"\*\*Total: (\d+(?:\.\d+)?) points\*\*", nb.cells[0].source)
    assert total, f"{lab}: header must state '**Total: N points**'"
    cells = graded_cells(nb)
    assert cells, f"{lab}: no graded cell"
    assert sum(c.points for c in cells) == float(total.group(1)), (
        f"{lab}: graded cells carry {sum(c.points for c in cells)} points, header says {total.group(1)}"
    )
    headings = {int(k): float(p) for k, p in EXERCISE_HEADING.findall("\n".join(c.source for c in nb.cells))}
    per_exercise = defaultdict(float)
    for cell in cells:
        match = re.match(r"ex(\d+)_", cell.grade_id)
        assert match, f"{lab}: graded cell {cell.grade_id!r} must be named exK_..."
        per_exercise[int(match.group(1))] += cell.points
    assert dict(per_exercise) == headings, (
        f"{lab}: points per exercise in cells {dict(per_exercise)} differ from the headings {headings}"
    )


@pytest.mark.parametrize("lab", LABS)
def test_grade_ids_unique_and_cells_well_formed(lab):
    nb = read(solution_path(lab))
    ids = [nbgrader_meta(c)["grade_id"] for c in nb.cells if nbgrader_meta(c)]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert not duplicates, f"{lab}: duplicated grade_id {duplicates}"
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if meta.get("solution"):
            assert all(m in cell.source for m in SOLUTION_MARKERS), (
                f"{lab}/{meta['grade_id']}: no solution region"
            )
        if meta.get("solution") and meta.get("grade") and cell.cell_type == "markdown":
            assert "rubric" in cell.source.lower(), (
                f"{lab}/{meta['grade_id']}: a written answer needs a rubric"
            )
        if any(m in cell.source for m in HIDDEN_MARKERS):
            assert is_test_cell(cell), f"{lab}: hidden tests outside a test cell ({meta.get('grade_id')})"
    assert answer_code_cells(nb), f"{lab}: no autograded answer cell"


@pytest.mark.parametrize("lab", LABS)
def test_every_test_cell_is_graded_by_the_harness(lab):
    """Hidden tests run outside the student's kernel: every autograded test cell has a harness-form hidden block
    (a cell without one scores 0 when graded, see seglabs_grading.harness.preprocessors)."""
    from seglabs_grading.harness.runner import split_test_cell

    nb = read(solution_path(lab))
    not_harness = [
        nbgrader_meta(c)["grade_id"]
        for c in nb.cells
        if is_test_cell(c) and split_test_cell(c.source) is None
    ]
    assert not not_harness, f"{lab}: test cells without a '# harness' hidden block: {not_harness}"


@pytest.mark.parametrize("lab", LABS)
def test_committed_without_outputs(lab):
    for path in (solution_path(lab), release_path(lab)):
        if not path.exists():
            continue
        nb = read(path)
        dirty = [
            i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)
        ]
        assert not dirty, (
            f"{path.relative_to(ROOT)}: cells {dirty} have outputs; clear them before committing"
        )


@pytest.mark.parametrize("lab", LABS)
def test_training_cells_read_the_budget_setting(lab):
    text = "\n".join(c.source for c in read(solution_path(lab)).cells if c.cell_type == "code")
    if re.search(r"\bfit\(|\.step\(\)", text):
        assert "budget(" in text, f"{lab}: trains a model but never reads helpers.config.budget"


def test_released_grade_ids_are_stable():
    """A released lab keeps every grade_id and its points, so a mid-term fix cannot orphan submitted grades."""
    released = json.loads(GRADE_IDS_FILE.read_text())
    for lab, expected in released.items():
        assert lab in LABS, f"released lab {lab} has no solution notebook any more"
        now = {c.grade_id: c.points for c in graded_cells(read(solution_path(lab)))}
        for grade_id, points in expected.items():
            assert grade_id in now, (
                f"{lab}: released grade_id {grade_id!r} disappeared (see README: fixing a lab)"
            )
            assert now[grade_id] == points, f"{lab}: {grade_id!r} changed points {points} -> {now[grade_id]}"

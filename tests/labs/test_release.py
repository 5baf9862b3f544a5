"""labs/ is exactly what `nbgrader generate_assignment` makes of solutions/, and leaks nothing."""

from __future__ import annotations

import re

import nbformat
import pytest

from tests.labtools import (
    HIDDEN_MARKERS,
    LABS,
    ROOT,
    SOLUTION_MARKERS,
    hidden_test_lines,
    lab_names,
    make_course,
    nbgrader,
    nbgrader_env,
    normalised,
    read,
    release_path,
    solution_path,
)

LAB_LIST = lab_names()


@pytest.fixture(scope="module")
def fresh_release(tmp_path_factory):
    """Generate every lab from a copy of solutions/ with nbgrader's real command."""
    tmp = tmp_path_factory.mktemp("release")
    course = make_course(tmp, LAB_LIST)
    env = nbgrader_env(grading_dir=tmp / "grading")
    for lab in LAB_LIST:
        result = nbgrader(["generate_assignment", lab, "--force"], cwd=course, env=env, timeout=300)
        assert result.returncode == 0, f"generate_assignment {lab} failed:\n{result.stdout}\n{result.stderr}"
    return course / "labs"


@pytest.mark.parametrize("lab", LAB_LIST)
def test_labs_match_a_fresh_generation(lab, fresh_release):
    committed = release_path(lab)
    assert committed.exists(), f"{committed.relative_to(ROOT)} is missing: run `make labs` and commit labs/"
    assert normalised(committed) == normalised(fresh_release / lab / f"{lab}.ipynb"), (
        f"labs/{lab} is out of sync with solutions/{lab}: run `make labs` and commit labs/ (never edit labs/ by hand)"
    )


def test_no_release_without_a_source():
    orphans = sorted(p.name for p in LABS.iterdir() if p.is_dir() and p.name not in LAB_LIST)
    assert not orphans, f"labs/ has {orphans} without a solutions/ source: delete them or add the source"


@pytest.mark.parametrize("lab", LAB_LIST)
def test_release_leaks_no_solution_and_no_hidden_test(lab):
    path = release_path(lab)
    if not path.exists():
        pytest.fail(f"labs/{lab} is missing: run `make labs`")
    nb = read(path)
    nbformat.validate(nb)
    text = "\n".join(cell.source for cell in nb.cells)
    for marker in SOLUTION_MARKERS + HIDDEN_MARKERS:
        assert marker not in text, f"labs/{lab} contains {marker!r}"
    leaked = [line for line in hidden_test_lines(read(solution_path(lab))) if line in text]
    assert not leaked, f"labs/{lab} contains hidden-test lines, e.g. {leaked[0]!r}"
    stubs = sum("raise NotImplementedError()" in cell.source for cell in nb.cells if cell.cell_type == "code")
    assert stubs > 0, f"labs/{lab} has no answer stub left for students"


@pytest.mark.parametrize("lab", LAB_LIST)
def test_release_holds_no_instructor_only_material(lab):
    """Instructor notes and rubrics live in docs/instructors.md or inside solution regions, never in labs/."""
    instructor_only = re.compile(r"instructors?'?s?'? (notes?|guide|only)|for instructors|rubric", re.I)
    for cell in read(release_path(lab)).cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        found = instructor_only.search(cell.source) or instructor_only.search(grade_id.replace("_", " "))
        assert not found, (
            f"labs/{lab} holds instructor-only material ({found.group(0)!r}): move it to docs/instructors.md"
        )

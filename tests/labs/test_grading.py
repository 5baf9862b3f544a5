"""The grading pipeline end to end, for every lab, with nbgrader's real commands.

One batch per lab, in a throw-away course directory, holds these "students":

- ``solution``: the instructor's solution submitted as a student -> full marks on every autograded cell;
- ``blank``: the untouched student version -> 0 on every autograded cell, and the grader does not crash;
- ``stub-<grade_id>``: the solution with exactly one answer cell replaced by its stub -> strictly between 0 and
  full. ``make test`` grades one such submission (the last answer); ``make test-full`` sets
  ``SEGLAB_TEST_ALL_STUBS=1`` and grades one per answer cell, proving that every graded answer is caught when wrong
  (one notebook run per answer: too slow for the 15-minute budget of ``make test``);
- ``loop``: an infinite loop in the first answer cell -> that cell times out and its part scores 0, while the rest
  of the batch is still graded. The timeout and the interrupt are nbgrader's and the harness's, the same for every
  lab, and the looping student costs a timeout plus a whole solution run: ``make test`` grades it in the first lab
  only, ``make test-full`` in every lab;
- ``corrupt``: a notebook file that is not JSON -> reported with the student's name; the batch goes on.

Then ``nbgrader generate_feedback`` must show which tests failed and why, but never the source of hidden tests.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from tests.labtools import (
    answer_code_cells,
    graded_cells,
    hidden_test_lines,
    lab_names,
    make_course,
    nbgrader,
    nbgrader_env,
    nbgrader_meta,
    read,
    solution_path,
)

CELL_TIMEOUT_S = 20  # per cell while grading in tests; every CI-budget cell runs well below this
# A student's infinite loop. It sleeps so that waiting for the timeout leaves the CPU to the other test worker;
# the interrupt on timeout is the same for a busy loop.
LOOP = "import time\n\nwhile True:  # a student's infinite loop\n    time.sleep(0.05)\n"

ALL_STUBS = os.environ.get("SEGLAB_TEST_ALL_STUBS") == "1"
LOOPING_LABS = lab_names() if ALL_STUBS else lab_names()[:1]
LABS = [pytest.param(lab, marks=pytest.mark.xdist_group(f"grading-{lab}")) for lab in lab_names()]
pytestmark = pytest.mark.slow


@dataclass
class Batch:
    lab: str
    course: Path
    grading: Path
    autograde_log: str
    scores: dict  # student -> {grade_id: auto_score} for autograded test cells; missing when ungraded
    max_scores: dict  # grade_id -> points of autograded test cells
    stubbed: list  # grade_ids of answer cells, one stub-<id> student each


def _write(nb, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def _submissions(lab: str, course: Path, submitted: Path) -> list[str]:
    solution = read(solution_path(lab))
    release = read(course / "labs" / lab / f"{lab}.ipynb")
    stub_source = {nbgrader_meta(c)["grade_id"]: c.source for c in release.cells if nbgrader_meta(c)}

    def submit(student: str, nb) -> None:
        _write(nb, submitted / student / lab / f"{lab}.ipynb")

    submit("solution", solution)
    submit("blank", release)
    answers = answer_code_cells(solution)
    stubbed = answers if ALL_STUBS else answers[-1:]
    for grade_id in stubbed:
        variant = read(solution_path(lab))
        for cell in variant.cells:
            if nbgrader_meta(cell).get("grade_id") == grade_id:
                cell.source = stub_source[grade_id]
        submit(f"stub-{grade_id}", variant)
    if lab in LOOPING_LABS:
        looping = read(solution_path(lab))
        for cell in looping.cells:
            if nbgrader_meta(cell).get("grade_id") == answers[0]:
                cell.source = LOOP + cell.source
        submit("loop", looping)
    corrupt = submitted / "corrupt" / lab / f"{lab}.ipynb"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text('{"cells": [ this is not JSON')
    return stubbed


@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    cache: dict[str, Batch] = {}

    def grade(lab: str) -> Batch:
        if lab in cache:
            return cache[lab]
        tmp = tmp_path_factory.mktemp(f"grade-{lab}")
        course = make_course(tmp, [lab])
        grading = tmp / "grading"
        env = nbgrader_env(grading_dir=grading)
        env["SEGLAB_CELL_TIMEOUT"] = str(CELL_TIMEOUT_S)
        gen = nbgrader(["generate_assignment", lab, "--force"], cwd=course, env=env, timeout=300)
        assert gen.returncode == 0, f"generate_assignment failed:\n{gen.stdout}\n{gen.stderr}"
        stubbed = _submissions(lab, course, grading / "submitted")
        run = nbgrader(["autograde", lab, "--force"], cwd=course, env=env, timeout=1800)
        log = run.stdout + run.stderr
        solution = read(solution_path(lab))
        max_scores = {c.grade_id: c.points for c in graded_cells(solution) if c.autograded}
        scores = {}
        with Gradebook(f"sqlite:///{grading / 'gradebook.db'}") as gb:
            for student in gb.students:
                try:
                    submission = gb.find_submission_notebook(lab, lab, student.id)
                except Exception:  # noqa: BLE001 - no graded notebook for this student
                    continue
                scores[student.id] = {g.name: g.auto_score for g in submission.grades if g.name in max_scores}
        cache[lab] = Batch(lab, course, grading, log, scores, max_scores, stubbed)
        return cache[lab]

    return grade


def _total(batch: Batch, student: str) -> float:
    assert student in batch.scores, f"{batch.lab}: {student} was not graded\n{batch.autograde_log[-3000:]}"
    return sum(score or 0.0 for score in batch.scores[student].values())


@pytest.mark.parametrize("lab", LABS)
def test_solution_scores_full_marks(lab, graded):
    batch = graded(lab)
    for grade_id, points in batch.max_scores.items():
        got = batch.scores.get("solution", {}).get(grade_id)
        assert got == points, (
            f"{lab}: the solution scored {got} of {points} on {grade_id}\n{batch.autograde_log[-3000:]}"
        )


@pytest.mark.parametrize("lab", LABS)
def test_untouched_student_version_scores_zero(lab, graded):
    batch = graded(lab)
    assert _total(batch, "blank") == 0, f"{lab}: the untouched notebook scored {batch.scores['blank']}"


@pytest.mark.parametrize("lab", LABS)
def test_one_wrong_answer_scores_between_zero_and_full(lab, graded):
    batch = graded(lab)
    full = sum(batch.max_scores.values())
    scores = {g: _total(batch, f"stub-{g}") for g in batch.stubbed}
    assert any(0 < score < full for score in scores.values()), (
        f"{lab}: no submission with one wrong answer scored strictly between 0 and {full}: {scores}"
    )


@pytest.mark.skipif(not ALL_STUBS, reason="one notebook run per answer cell: runs in `make test-full`")
@pytest.mark.parametrize("lab", LABS)
def test_every_answer_is_caught_when_wrong(lab, graded):
    batch = graded(lab)
    full = sum(batch.max_scores.values())
    uncaught = [g for g in batch.stubbed if _total(batch, f"stub-{g}") >= full]
    assert not uncaught, f"{lab}: replacing these answers by their stub still scores full marks: {uncaught}"
    partial = [g for g in batch.stubbed if 0 < _total(batch, f"stub-{g}") < full]
    assert partial, f"{lab}: no submission with one wrong answer scored strictly between 0 and {full}"


@pytest.mark.parametrize("lab", LABS)
def test_infinite_loop_times_out_and_batch_goes_on(lab, graded):
    if lab not in LOOPING_LABS:
        pytest.skip(f"the looping student is graded in {LOOPING_LABS[0]} only; every lab in `make test-full`")
    batch = graded(lab)
    assert "loop" in batch.scores, (
        f"{lab}: the looping submission was not graded\n{batch.autograde_log[-3000:]}"
    )
    assert _total(batch, "loop") < sum(batch.max_scores.values()), (
        f"{lab}: an infinite loop scored full marks"
    )
    assert re.search(r"timed? ?out|Timeout", batch.autograde_log, re.I), f"{lab}: no timeout was reported"
    # Graded after the looping and the corrupt student (alphabetical order): the batch went on.
    assert "solution" in batch.scores and any(s.startswith("stub-") for s in batch.scores)


@pytest.mark.parametrize("lab", LABS)
def test_corrupt_notebook_is_reported_by_name_and_does_not_stop_the_batch(lab, graded):
    batch = graded(lab)
    corrupt = batch.scores.get("corrupt", {})
    assert all(score is None for score in corrupt.values()), f"{lab}: a corrupt file got a score {corrupt}"
    assert re.search(r"corrupt", batch.autograde_log), f"{lab}: the corrupt submission's student is not named"
    # Students are graded in alphabetical order: those after "corrupt" (solution, stub-...) show the batch went on.
    others = {p.name for p in (batch.grading / "submitted").iterdir()} - {"corrupt"}
    ungraded = sorted(others - set(batch.scores))
    assert not ungraded, f"{lab}: the batch stopped at the corrupt file; not graded: {ungraded}"


def _visible_text(html_text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", html_text))


@pytest.mark.parametrize("lab", LABS)
def test_feedback_explains_failures_without_hidden_tests(lab, graded):
    batch = graded(lab)
    env = nbgrader_env(grading_dir=batch.grading)
    run = nbgrader(["generate_feedback", lab, "--force"], cwd=batch.course, env=env, timeout=600)
    feedback = batch.grading / "feedback"
    stub_student = f"stub-{batch.stubbed[0]}"
    pages = {s: feedback / s / lab / f"{lab}.html" for s in ("solution", "blank", stub_student)}
    missing = [s for s, p in pages.items() if not p.exists()]
    assert not missing, f"{lab}: no feedback for {missing}\n{run.stdout}\n{run.stderr}"
    hidden = hidden_test_lines(read(solution_path(lab)))
    for student, page in pages.items():
        text = _visible_text(page.read_text())
        leaked = [line for line in hidden if line in text]
        assert not leaked, f"{lab}: feedback for {student} shows hidden-test source, e.g. {leaked[0]!r}"
    # The lab's own text may mention NotImplementedError; the stubbed answer's feedback must add the failure.
    mentions = {s: _visible_text(p.read_text()).count("NotImplementedError") for s, p in pages.items()}
    assert mentions[stub_student] > mentions["solution"], (
        f"{lab}: feedback for a stubbed answer does not say why the test failed"
    )

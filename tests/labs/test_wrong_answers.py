"""Realistic wrong answers (``tests/labs/wrong_answers/<lab>.py``) are caught, visibly and by the hidden tests,
and cost points in their own exercise only (issue 18).

For each wrong answer, in one kernel per lab that ran the full solution (``tests/labs/harness_runs.py``): its
source replaces the answer cell; the visible part of that answer's test cells (``TEST_CELLS``, else the test
cells right after the answer) must show an error — a ✗ the student sees before submitting; every harness-form
hidden block is graded, and the score must drop in at least one of those cells and in no other cell except those
that declare the answer in their ``PREREQUISITES``; then the solution's objects are put back. A correct
alternative (``CORRECT_ALTERNATIVES``) must show no error and keep full marks everywhere; a known gap
(``NOT_CAUGHT_BY_HIDDEN_TESTS``) must show a ✗ and, until it is moved back, still keep full hidden marks.

``make test`` tries the first wrong answer of each answer cell; ``SEGLAB_TEST_ALL_STUBS=1`` (``make test-full``)
tries every one, the correct alternatives and known gaps, and labs 04 and 05, whose solutions take minutes in a
kernel.

Not covered here (the one-kernel shortcut): what later cells made from the correct answer stays alive (a model
trained with the correct ``FCN``, files on disk), and objects a wrong answer changed in place are not restored,
so a wrong answer that only shows in those is not seen here. ``tests/labs/test_grading.py`` grades real
submissions with ``nbgrader autograde`` from a fresh kernel.
"""

from __future__ import annotations

import pytest

from tests.labs.harness_runs import (
    ALL,
    checked_run,
    close_lab_run,
    extra_losses,
    load_wrong_answers,
    marks,
    own_cells,
    read_lab,
)
from tests.labtools import lab_names


def _params(kind: str):
    for name in lab_names():
        lab = read_lab(name)
        wrong = load_wrong_answers(lab)
        if wrong is None:
            yield pytest.param(
                name, "", "", "", id=name, marks=pytest.mark.skip(reason=f"{name}: no wrong answers")
            )
            continue
        table = {"wrong": wrong.answers, "alternative": wrong.alternatives, "gap": wrong.known_gaps}[kind]
        for answer, pairs in table.items():
            for title, source in pairs if ALL or kind != "wrong" else pairs[:1]:
                yield pytest.param(
                    name, answer, title, source, id=f"{name}-{answer}-{title}", marks=marks(lab)
                )


def _graded(lab: str, answer: str, source: str, workdir):
    """(the lab, the answer's own test cells, the variant's outcome, the cells where it lost points)."""
    notebook = read_lab(lab)
    own = own_cells(notebook, answer)
    run = checked_run(notebook, workdir)
    outcome = run.variant(answer, source, own)
    return notebook, own, outcome, outcome.lost(run.baseline)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    """Where the lab kernels run (copies of the lab folders); the last kernel is shut at the end."""
    yield tmp_path_factory.mktemp("harness-runs")
    close_lab_run()


@pytest.mark.parametrize("lab", lab_names())
def test_every_answer_cell_has_wrong_answers_that_match_the_notebook(lab):
    notebook = read_lab(lab)
    wrong = load_wrong_answers(notebook)  # raises on a name that is not an answer or test cell of the lab
    if wrong is None:
        pytest.skip(f"{lab}: no tests/labs/wrong_answers/{lab}.py")
    missing = [answer for answer in notebook.answers if not wrong.answers.get(answer)]
    assert not missing, f"{lab}: answer cells without a wrong answer: {missing}"


@pytest.mark.parametrize(("lab", "answer", "title", "source"), list(_params("wrong")))
def test_a_wrong_answer_is_caught_visibly_and_hidden_in_its_own_cells_only(
    lab, answer, title, source, workdir
):
    notebook, own, outcome, lost = _graded(lab, answer, source, workdir)
    what = f"{lab}: {answer} '{title}'" + (
        f" (its cell raised {outcome.cell_errors})" if outcome.cell_errors else ""
    )
    assert any(outcome.visible_errors.values()), f"{what}: no visible check of {list(own)} shows a ✗"
    assert set(lost) & set(own), f"{what}: the hidden tests of {list(own)} give full marks"
    extra = extra_losses(notebook, answer, lost)
    assert not extra, f"{what}: costs points in other exercises' cells: {extra}"


@pytest.mark.skipif(not ALL, reason="known gaps run with SEGLAB_TEST_ALL_STUBS=1 (make test-full)")
@pytest.mark.parametrize(("lab", "answer", "title", "source"), list(_params("gap")))
def test_a_known_gap_is_caught_visibly_and_still_not_by_the_hidden_tests(lab, answer, title, source, workdir):
    notebook, own, outcome, lost = _graded(lab, answer, source, workdir)
    what = f"{lab}: {answer} '{title}' (NOT_CAUGHT_BY_HIDDEN_TESTS)"
    assert any(outcome.visible_errors.values()), f"{what}: no visible check of {list(own)} shows a ✗"
    assert not set(lost) & set(own), (
        f"{what}: now caught by the hidden tests ({lost}): move it to WRONG_ANSWERS"
    )
    extra = extra_losses(notebook, answer, lost)
    assert not extra, f"{what}: costs points in other exercises' cells: {extra}"


@pytest.mark.skipif(not ALL, reason="correct alternatives run with SEGLAB_TEST_ALL_STUBS=1 (make test-full)")
@pytest.mark.parametrize(("lab", "answer", "title", "source"), list(_params("alternative")))
def test_a_correct_alternative_keeps_full_marks(lab, answer, title, source, workdir):
    notebook, own, outcome, lost = _graded(lab, answer, source, workdir)
    shown = {cell: errors for cell, errors in outcome.visible_errors.items() if errors}
    assert not outcome.cell_errors and not shown, (
        f"{lab}: {answer} '{title}' shows errors: {outcome.cell_errors} {shown}"
    )
    assert not lost, f"{lab}: {answer} '{title}', a correct answer, loses points: {lost}"

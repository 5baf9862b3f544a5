"""Every exercise is graded on its own, shown by running it: the full solution with one answer cell stubbed (the
student version's ``raise NotImplementedError()``) loses points in that answer's test cells, every one of them,
and nowhere else except the test cells that declare the answer in their ``PREREQUISITES`` (issue 18).

One kernel per lab (``tests/labs/harness_runs.py``): the solution runs once (CI budget, hidden blocks removed);
then for each answer cell its stub goes in, the names the solution's cell bound and no earlier cell binds are
removed, every harness-form hidden block is graded in this process, and the solution's objects are put back.
``tests/labs/test_independence.py`` is the cheap static version (which names a hidden block may use).

Not covered here (the one-kernel shortcut): what later cells made from the correct answer stays alive — a
model trained with the correct ``FCN``, a checkpoint or results file on disk, a figure's data — so a test cell
that reads those does not lose points when the answer is stubbed, whether or not it should; and objects an
earlier answer changed in place are not restored. ``tests/labs/test_grading.py`` grades real stubbed
submissions with ``nbgrader autograde`` from a fresh kernel (every answer under ``make test-full``).

Labs whose hidden blocks are still legacy are skipped (named in the skip message); labs 04 and 05 run only with
``SEGLAB_TEST_ALL_STUBS=1`` (``make test-full``): their solutions take minutes in a kernel.
"""

from __future__ import annotations

import pytest

from tests.labs.harness_runs import checked_run, close_lab_run, extra_losses, marks, own_cells, read_lab, stub
from tests.labtools import lab_names


def _params():
    for name in lab_names():
        lab = read_lab(name)
        for answer in lab.answers:
            yield pytest.param(name, answer, id=f"{name}-{answer}", marks=marks(lab))


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    """Where the lab kernels run (copies of the lab folders); the last kernel is shut at the end."""
    yield tmp_path_factory.mktemp("harness-runs")
    close_lab_run()


@pytest.mark.parametrize(("lab", "answer"), list(_params()))
def test_a_stub_costs_points_in_its_own_cells_and_its_declared_dependants_only(lab, answer, workdir):
    notebook = read_lab(lab)
    own = own_cells(notebook, answer)
    assert own, f"{lab}: answer {answer} has no harness-form test cell after it"
    run = checked_run(notebook, workdir)
    lost = run.variant(answer, stub(notebook.answers[answer]), own).lost(run.baseline)
    kept = [cell for cell in own if cell not in lost]
    assert not kept, f"{lab}: with {answer} stubbed, its own test cells {kept} still score full marks"
    extra = extra_losses(notebook, answer, lost)
    assert not extra, f"{lab}: stubbing {answer} costs points in other exercises' cells: {extra}"

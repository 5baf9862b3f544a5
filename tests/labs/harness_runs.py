"""One kernel per lab: grade variants of one answer cell at a time against the rest of the full solution.

The tests of issue 18 (``test_wrong_answers.py``, ``test_stub_independence.py``) use this. :class:`LabRun` runs a
lab's solution notebook once in a plain kernel the way ``python -m seglabs_grading.harness.try`` does (the CI
budget, every hidden block removed), in a copy of the lab's folder so that checkpoints and results files land in
a temporary folder. Then :meth:`LabRun.variant` puts one answer cell's replacement (a wrong answer, or the
student version's stub) into that kernel, runs the visible part of the answer's test cells there, grades every
harness-form hidden block in this process, and puts the solution's objects back.

What one kernel cannot show: objects that later given or answer cells made from the *correct* answer (a trained
model, a results file on disk, a dataset) stay as they were, and objects the variant changed in place are not put
back (names and the files in the lab's folder are). ``tests/labs/test_grading.py`` (real ``nbgrader autograde`` of stubbed notebooks) covers that.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers.config import ENV_VAR as BUDGET
from helpers.config import setting
from seglabs_grading.harness.proxy import Student
from seglabs_grading.harness.runner import Verdict, hidden_block, run_hidden, split_test_cell
from seglabs_grading.harness.seed import seed_for
from seglabs_grading.harness.transport import JupyterTransport
from tests.labs.test_independence import defined_names, prerequisites
from tests.labtools import (
    HIDDEN_BLOCK,
    SOLUTIONS,
    is_answer_cell,
    is_test_cell,
    nbgrader_meta,
    read,
    solution_path,
)

try_tool = importlib.import_module("seglabs_grading.harness.try")  # `try` is a keyword: no plain import
WRONG_ANSWERS = Path(__file__).resolve().parent / "wrong_answers"
# One cell of the solution, or one variant, at the CI budget on a loaded machine: a generous bound of these tests,
# not the grading cell timeout (that is SEGLAB_CELL_TIMEOUT, helpers.config.SETTINGS).
CELL_TIMEOUT_S = 600.0
LAB_OUTPUTS = (".ipynb_checkpoints", "__pycache__", "runs", "checkpoints", "*.pt", "*.pth")  # not copied
SAVED = "_harness_runs_saved"  # the kernel's name for the solution's objects while a variant is in


@dataclass(frozen=True)
class HarnessCell:
    """A harness-form test cell: its visible part runs in the kernel, its hidden block in the harness."""

    grade_id: str
    points: float
    visible: str
    block: str
    prerequisites: tuple[str, ...]


@dataclass
class Lab:
    """What the tests need to know about a solution notebook."""

    name: str
    cells: list[tuple[str, str]] = field(default_factory=list)  # (grade_id or "cell N", source) of code cells
    answers: dict[str, str] = field(default_factory=dict)  # answer cell grade_id -> solution source
    tests: dict[str, HarnessCell] = field(default_factory=dict)  # harness-form test cells, in order
    legacy: list[str] = field(default_factory=list)  # test cells with a hidden block not of the harness form
    following: dict[str, tuple[str, ...]] = field(default_factory=dict)  # answer -> the test cells after it
    bound_before: dict[str, set[str]] = field(default_factory=dict)  # answer -> names earlier code cells bind

    def dependants(self, answer: str) -> set[str]:
        """Test cells whose hidden block declares ``answer`` among its ``PREREQUISITES``."""
        return {gid for gid, cell in self.tests.items() if answer in cell.prerequisites}


def read_lab(name: str) -> Lab:
    """The solution notebook of ``name``, split into what :class:`LabRun` runs and grades."""
    lab, bound, last_answer = Lab(name), set(), None
    for index, cell in enumerate(read(solution_path(name)).cells):
        if cell.cell_type != "code":
            continue
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id", f"cell {index}")
        lab.cells.append((grade_id, cell.source))
        if is_answer_cell(cell):
            lab.answers[grade_id], lab.bound_before[grade_id] = cell.source, set(bound)
            lab.following[grade_id], last_answer = (), grade_id
        elif is_test_cell(cell) and hidden_block(cell.source) is not None:
            split = split_test_cell(cell.source)
            if split is None:
                lab.legacy.append(grade_id)
            else:
                points = float(meta.get("points", 0))
                lab.tests[grade_id] = HarnessCell(
                    grade_id, points, split[0], split[1], prerequisites(split[1])
                )
                if last_answer is not None:
                    lab.following[last_answer] += (grade_id,)
        bound |= defined_names(HIDDEN_BLOCK.sub("", cell.source))
    return lab


def stub(source: str) -> str:
    """The student version of an answer cell: every solution region replaced by ``raise NotImplementedError()``."""
    return try_tool.stubbed(source)


# --- the wrong answers of tests/labs/wrong_answers/<lab>.py ---------------------------------------------------
@dataclass(frozen=True)
class WrongAnswers:
    """A lab's wrong answers (``{answer: [(name, source)]}``), the test cells where each must lose points, the
    correct alternatives the text allows (they must keep full marks) and the known gaps: wrong answers the visible
    checks catch but the hidden tests cannot yet (they must stay caught visibly, and uncaught until moved back)."""

    answers: dict[str, list[tuple[str, str]]]
    test_cells: dict[str, tuple[str, ...]]
    alternatives: dict[str, list[tuple[str, str]]]
    known_gaps: dict[str, list[tuple[str, str]]]
    declared_test_cells: bool  # False: no TEST_CELLS in the file; the test cells after each answer count


def _pairs(value, what: str) -> dict[str, list[tuple[str, str]]]:
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a dict: answer grade_id -> [(name, source), ...]")
    for answer, pairs in value.items():
        if not all(
            isinstance(p, tuple) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in pairs
        ):
            raise TypeError(f"{what}[{answer!r}] must be a list of (name, source) pairs of strings")
        names = [n for n, _ in pairs]
        if len(set(names)) != len(names):
            raise ValueError(f"{what}[{answer!r}]: two entries share a name")
    return {answer: list(pairs) for answer, pairs in value.items()}


def load_wrong_answers(lab: Lab) -> WrongAnswers | None:
    """``tests/labs/wrong_answers/<lab>.py`` read and checked against the notebook, or None when there is none.

    Forms accepted: ``WRONG_ANSWERS`` (required), ``TEST_CELLS`` (optional; default: the test cells that follow
    each answer cell), ``CORRECT_ALTERNATIVES`` and ``NOT_CAUGHT_BY_HIDDEN_TESTS`` (optional).
    """
    if lab.name not in _loaded:
        _loaded[lab.name] = _load(lab)
    return _loaded[lab.name]


_loaded: dict[str, WrongAnswers | None] = {}


def _load(lab: Lab) -> WrongAnswers | None:
    path = WRONG_ANSWERS / f"{lab.name}.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"wrong_answers_{lab.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "WRONG_ANSWERS"):
        raise ValueError(f"{path}: defines no WRONG_ANSWERS")
    answers = _pairs(module.WRONG_ANSWERS, f"{path.name}: WRONG_ANSWERS")
    alternatives = _pairs(getattr(module, "CORRECT_ALTERNATIVES", {}), f"{path.name}: CORRECT_ALTERNATIVES")
    gaps = _pairs(
        getattr(module, "NOT_CAUGHT_BY_HIDDEN_TESTS", {}), f"{path.name}: NOT_CAUGHT_BY_HIDDEN_TESTS"
    )
    declared = getattr(module, "TEST_CELLS", None)
    test_cells = dict(declared) if declared is not None else dict(lab.following)
    for answer in {*answers, *alternatives, *gaps}:
        if answer not in lab.answers:
            raise ValueError(f"{path}: {answer!r} is not an answer cell of {lab.name}")
    for answer, cells in test_cells.items():
        unknown = [c for c in cells if c not in lab.tests and c not in lab.legacy]
        if answer not in lab.answers or unknown or not cells:
            raise ValueError(
                f"{path}: TEST_CELLS[{answer!r}] = {cells!r} does not name test cells of that answer"
            )
    return WrongAnswers(answers, test_cells, alternatives, gaps, declared is not None)


# --- one kernel per lab -----------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What one variant of an answer cell did."""

    cell_errors: list[str]  # running the variant itself
    visible_errors: dict[str, list[str]]  # own test cell -> the error lines of its visible part
    verdicts: dict[str, Verdict]  # every harness-form test cell's verdict with the variant in

    def lost(self, baseline: dict[str, Verdict]) -> dict[str, str]:
        """Test cells scoring less than with the solution: ``{grade_id: "9 -> 4.5 (✗ case: message; ...)"}``."""
        out = {}
        for grade_id, verdict in self.verdicts.items():
            if verdict.score < baseline[grade_id].score:
                failed = [f"{c.name}: {c.message}" for c in verdict.cases + verdict.checks if not c.passed]
                why = verdict.error or "; ".join(failed)
                out[grade_id] = f"{baseline[grade_id].score:g} -> {verdict.score:g} ({why[:300]})"
        return out


class LabRun:
    """A kernel that ran the lab's full solution, and the verdicts of its hidden blocks (``baseline``)."""

    def __init__(self, lab: Lab, workdir: Path):
        self.lab = lab
        self.folder = folder = Path(tempfile.mkdtemp(prefix=f"{lab.name}-", dir=workdir)) / lab.name
        shutil.copytree(SOLUTIONS / lab.name, folder, ignore=shutil.ignore_patterns(*LAB_OUTPUTS))
        self.seed = seed_for(b"tests/labs/harness_runs", lab.name, "one-kernel")
        self.km, self.kc = try_tool.start_kernel(folder, "ci")
        try:
            self.transport = JupyterTransport.connect(
                self.km.get_connection_info(), self.km.interrupt_kernel, self.km.is_alive
            )
            self.solution_errors = {}  # grade_id -> error lines of the solution's cells (none expected)
            for grade_id, source in lab.cells:
                errors = self.run(HIDDEN_BLOCK.sub("", source))
                if errors:
                    self.solution_errors[grade_id] = errors
            self.baseline = self.grade()
        except BaseException:
            self.km.shutdown_kernel(now=True)
            raise

    def run(self, source: str) -> list[str]:
        """Execute ``source`` in the kernel; its error lines."""
        return try_tool.run_cell(self.kc, source, CELL_TIMEOUT_S)

    def grade(self) -> dict[str, Verdict]:
        """Every harness-form hidden block graded against the kernel as it is now, with the kernel's budget."""
        saved = os.environ.get(BUDGET)
        os.environ[BUDGET] = "ci"  # hidden blocks read quality bars and time budgets through budget()
        try:
            return {
                grade_id: run_hidden(
                    cell.block, Student(self.transport), seed=self.seed, points=cell.points, grade_id=grade_id
                )
                for grade_id, cell in self.lab.tests.items()
            }
        finally:
            if saved is None:
                os.environ.pop(BUDGET)
            else:
                os.environ[BUDGET] = saved

    def variant(self, answer: str, source: str, test_cells: tuple[str, ...]) -> Outcome:
        """Grade the solution with answer cell ``answer`` replaced by ``source``, then put the solution back.

        The names the solution's cell or ``source`` bind are saved first; those no earlier cell binds are removed
        (as if the solution's cell had never run), so a variant that fails to define a name leaves it undefined.
        The files in the lab's folder (checkpoints, results JSON) are put back too.
        """
        files = {path: path.read_bytes() for path in self.folder.rglob("*") if path.is_file()}
        names = sorted(defined_names(self.lab.answers[answer]) | defined_names(source))
        dropped = [n for n in names if n not in self.lab.bound_before[answer]]
        save = f"{SAVED} = {{n: globals()[n] for n in {names!r} if n in globals()}}\n"
        self._setup(save + f"for _n in {dropped!r}:\n    globals().pop(_n, None)\n")
        try:
            cell_errors = self.run(source)
            visible = {c: self.run(self.lab.tests[c].visible) for c in test_cells if c in self.lab.tests}
            return Outcome(cell_errors, visible, self.grade())
        finally:
            restore = f"for _n in {names!r}:\n    globals().pop(_n, None)\nglobals().update({SAVED})\n"
            self._setup(restore + f"del {SAVED}\nglobals().pop('_n', None)\n")
            _put_back(self.folder, files)

    def _setup(self, code: str) -> None:
        errors = self.run(code)
        if errors:
            raise RuntimeError(f"{self.lab.name}: could not save or restore the solution's objects: {errors}")

    def close(self) -> None:
        try:
            self.transport.close()
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=True)


def _put_back(folder: Path, files: dict[Path, bytes]) -> None:
    """Make the files under ``folder`` exactly ``files`` again (new ones removed, changed ones rewritten)."""
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file() and path not in files:
            path.unlink()
    for path, data in files.items():
        if not path.is_file() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


_current: LabRun | None = None


def lab_run(lab: Lab, workdir: Path) -> LabRun:
    """The kernel of ``lab``, its folder under ``workdir`` (one at a time: another lab closes the previous one)."""
    global _current
    if _current is not None and _current.lab.name != lab.name:
        close_lab_run()
    if _current is None:
        _current = LabRun(lab, workdir)
    return _current


def close_lab_run() -> None:
    """Shut the kernel :func:`lab_run` keeps, if any."""
    global _current
    if _current is not None:
        run, _current = _current, None
        run.close()


# --- what the tests of issue 18 share: which labs run, in which xdist group, and the checked kernel --------------
ALL = setting("SEGLAB_TEST_ALL_STUBS") == "1"
# Too slow for `make test`: what one kernel took here (CI budget, 2 cores shared with other work; 2026-12-01).
SLOW_LABS = {
    "04_fcn": "the solution takes 35-170 s in a kernel and each variant 10-20 s",
    "05_classifier_to_fcn": "the solution takes 65-95 s in a kernel and each variant 10-25 s",
}


def lab_skip(lab: Lab) -> str | None:
    """Why the kernel tests skip ``lab`` now, or None."""
    if lab.legacy:
        return f"{lab.name}: hidden blocks still legacy (not `# harness`): {', '.join(lab.legacy)}"
    if lab.name in SLOW_LABS and not ALL:
        return f"{lab.name}: {SLOW_LABS[lab.name]}; runs with SEGLAB_TEST_ALL_STUBS=1 (make test-full)"
    return None


def marks(lab: Lab) -> list:
    """Slow, one xdist group per lab (``--dist loadgroup``: one worker, so one kernel, for both test files)."""
    skip = lab_skip(lab)
    out = [pytest.mark.slow, pytest.mark.xdist_group(f"harness-{lab.name}")]
    return out + ([pytest.mark.skip(reason=skip)] if skip else [])


def own_cells(lab: Lab, answer: str) -> tuple[str, ...]:
    """The test cells where a wrong ``answer`` must lose points: the wrong-answers file's TEST_CELLS, if any."""
    wrong = load_wrong_answers(lab)
    return wrong.test_cells.get(answer, lab.following[answer]) if wrong else lab.following[answer]


def checked_run(lab: Lab, workdir: Path) -> LabRun:
    """The lab's kernel, after checking that the full solution ran cleanly and scores full marks there."""
    run = lab_run(lab, workdir)
    assert not run.solution_errors, (
        f"{lab.name}: the solution's cells raised in one kernel: {run.solution_errors}"
    )
    short = {
        gid: f"{v.score:g} of {v.points:g}" + (f" ({v.error})" if v.error else "")
        for gid, v in run.baseline.items()
        if v.score != v.points or v.error
    }
    assert not short, f"{lab.name}: the full solution does not score full marks in one kernel: {short}"
    return run


def extra_losses(lab: Lab, answer: str, lost: dict[str, str]) -> dict[str, str]:
    """Losses outside ``answer``'s own test cells and the cells that declare it a prerequisite."""
    allowed = set(own_cells(lab, answer)) | lab.dependants(answer)
    return {gid: why for gid, why in lost.items() if gid not in allowed}

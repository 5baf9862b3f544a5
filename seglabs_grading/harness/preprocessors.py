"""nbgrader integration: hidden tests of the harness form are judged here, and only their verdict is graded.

Configured in the course's ``nbgrader_config.py`` (``Autograde.autograde_preprocessors``), so ``course grade``,
plain ``nbgrader autograde`` and the formgrader's autograde button grade the same way:

- :class:`HarnessExecute` (in place of nbgrader's ``Execute``) runs every cell in the kernel as nbgrader does,
  except a test cell whose hidden block starts with ``# harness``: only its *visible* part runs in the kernel;
  then, while the kernel is still alive, its hidden block runs in this process against that kernel
  (:mod:`.runner`). Tags and metadata that change how a test cell runs (``skip-execution``,
  ``raises-exception``, ``init_cell``, ``execution``, ...) are ignored for every test cell.
- :class:`HarnessVerdicts` (before ``SaveAutoGrades``) writes each such test cell's outputs from the harness's
  verdict alone: the visible part's output as plain stdout text (no ``error``, no ``stderr``, no
  ``execute_result`` of the kernel's), one stdout stream listing every case, and one ``execute_result`` holding
  the score, which nbgrader's ``determine_grade`` reads as the cell's points.

Where the harness cannot run (the kernel cannot import its kernel side, or the pipeline lacks one of these two
steps), grading that notebook fails with a message naming ``course grade``: never a silent 0.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Float, Unicode

from helpers.config import setting
from seglabs_grading.cells import HIDDEN_BLOCK, is_test, is_test_cell
from seglabs_grading.harness.errors import HarnessError
from seglabs_grading.harness.proxy import Student
from seglabs_grading.harness.runner import Verdict, run_hidden, split_test_cell
from seglabs_grading.harness.seed import course_secret, seed_for

STATE = "seglabs_harness"  # key in nbconvert's resources (and the autograded notebook's metadata)
VISIBLE_HEADER = "--- what this cell's visible checks printed in your notebook (not part of the grade) ---"
MAX_VISIBLE_TEXT = 20_000  # characters of the visible part's output kept in a test cell
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
NO_HARNESS_BLOCK = (
    "this test cell has no hidden tests of the harness form (first line `# harness`), so no points can be given; "
    "the instructor must port it (docs/authoring.md, 'Hidden tests')"
)
USE_COURSE_GRADE = "grade with `course grade` (see the README), which runs the course's own pipeline"


class HarnessUnavailable(HarnessError):
    """This notebook's hidden tests cannot be judged here; grading it must fail loudly."""


def harness_cells(nb: Any) -> list[Any]:
    """Test cells whose hidden block is of the harness form."""
    return [c for c in nb.cells if is_test_cell(c) and split_test_cell(c.source) is not None]


def trusted_test_cells(resources: dict[str, Any]) -> dict[str, tuple[tuple[str, str], float]]:
    """``{grade_id: ((visible part, hidden block), points)}`` of the notebook's harness-form test cells, **read from
    the gradebook** (the instructor's release), never from the submitted notebook: a cell a student adds or edits
    can never have its "hidden block" run in the grader's process."""
    from nbgrader.api import Gradebook

    info = resources.get("nbgrader", {})
    if not all(info.get(k) for k in ("db_url", "notebook", "assignment")):
        return {}
    out = {}
    with Gradebook(info["db_url"]) as gb:
        source_nb = gb.find_notebook(info["notebook"], info["assignment"])
        solutions = {c.name for c in source_nb.solution_cells}
        for grade_cell in source_nb.grade_cells:
            if not is_test(grade_cell.cell_type, grade=True, solution=grade_cell.name in solutions):
                continue
            source = gb.find_source_cell(grade_cell.name, info["notebook"], info["assignment"]).source
            # A test cell without a harness-form block is never left to the kernel's outputs: it scores 0 with
            # a message for the instructor (legacy in-kernel hidden tests are no longer graded).
            split = split_test_cell(source) or (_visible_without_hidden(source), None)
            out[grade_cell.name] = (split, float(grade_cell.max_score))
    return out


def _visible_without_hidden(source: str) -> str:
    """The visible part of a test cell that has no harness-form block. nbgrader recognises looser hidden-test markers
    than :data:`HIDDEN_BLOCK` (indented, trailing spaces): then nothing of the cell goes to the kernel."""
    visible = HIDDEN_BLOCK.sub("", source)
    return "" if "HIDDEN TESTS" in visible else visible


def plain_text(outputs: list[Any]) -> str:
    """What the kernel showed, as plain text: streams, ``ename: evalue`` of errors, text/plain of results."""
    parts = []
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            parts.append(str(out.get("text", "")))
        elif kind == "error":
            parts.append(f"{out.get('ename', 'Error')}: {out.get('evalue', '')}\n")
        elif kind in ("display_data", "execute_result"):
            text = out.get("data", {}).get("text/plain", "")
            parts.append(("".join(text) if isinstance(text, list) else str(text)) + "\n")
    text = ANSI.sub("", "".join(parts))
    return (
        text
        if len(text) <= MAX_VISIBLE_TEXT
        else text[:MAX_VISIBLE_TEXT] + "\n[... output cut by the grader]\n"
    )


def write_verdict(cell: Any, record: dict[str, Any]) -> None:
    """Set a harness test cell's outputs from the harness's record alone (see the module docstring)."""
    verdict = Verdict.from_dict(record["verdict"])
    # The verdict first, the kernel's own output after it and labelled: printed text cannot pass for a verdict.
    outputs = [new_output("stream", name="stdout", text="\n".join(verdict.lines()) + "\n")]
    if record.get("visible"):
        text = f"{VISIBLE_HEADER}\n{record['visible']}"
        outputs.append(new_output("stream", name="stdout", text=text))
    outputs.append(
        new_output("execute_result", data={"text/plain": f"{verdict.score:g}"}, execution_count=None)
    )
    cell.outputs = outputs


def _sync(call: Any) -> Any:
    """Run a kernel manager method whether it is sync or async (nbgrader uses an async manager)."""
    result = call()
    if inspect.isawaitable(result):
        from jupyter_core.utils import run_sync

        async def wait() -> Any:
            return await result

        return run_sync(wait)()
    return result


def refuse_outside_the_sandbox(kernel_manager_class: Any) -> None:
    """Plain ``nbgrader autograde`` and the formgrader's button would run a student's code as the instructor, next to
    the gradebook and the course secret: refuse unless the kernel is the sandbox's (``course grade``), or the
    project's own tests opted in (``SEGLAB_UNSANDBOXED_GRADING=1``)."""
    if getattr(kernel_manager_class, "sandboxed", False) or setting("SEGLAB_UNSANDBOXED_GRADING") == "1":
        return
    raise HarnessUnavailable(
        "refusing to grade outside the sandbox: plain `nbgrader autograde` (and the formgrader's autograde button) "
        "would run the student's code as you, with your files and the gradebook in reach; " + USE_COURSE_GRADE
    )


class HarnessExecute(Execute):
    """nbgrader's ``Execute``, with harness-form hidden tests judged in the grader's process (module docstring)."""

    secret_file = Unicode(
        "", help="the course secret SEED is made from (default: next to the gradebook)"
    ).tag(config=True)
    call_time_limit = Float(60.0, help="seconds one call of a hidden test may run in the kernel").tag(
        config=True
    )

    def preprocess(self, nb, resources=None, km=None):
        refuse_outside_the_sandbox(self.kernel_manager_class)
        resources = resources if resources is not None else {}
        info = resources.get("nbgrader", {})
        self._trusted = trusted_test_cells(resources)
        if harness_cells(nb) and not self._trusted:
            raise HarnessUnavailable(
                "this notebook has hidden tests of the harness form, but nbgrader gave no gradebook to read the "
                "released test cells from: " + USE_COURSE_GRADE
            )
        self._transport = None
        self._records: dict[str, Any] = {}
        self._seed = seed_for(
            self._secret(info), str(info.get("assignment", "")), str(info.get("student", ""))
        )
        try:
            nb, resources = super().preprocess(nb, resources, km)
        finally:
            if self._transport is not None:
                self._transport.close()
        resources[STATE] = {"records": self._records, "seed": self._seed, "cells": sorted(self._trusted)}
        return nb, resources

    def _secret(self, info: dict[str, Any]) -> bytes:
        if not self._trusted:
            return b""
        if self.secret_file:
            return course_secret(Path(self.secret_file).parent)
        db_url = str(info.get("db_url", ""))
        grading = Path(db_url.removeprefix("sqlite:///")).parent if db_url.startswith("sqlite:///") else None
        return course_secret(grading)

    def _connect(self) -> None:
        from seglabs_grading.harness.transport import JupyterTransport

        try:
            self._transport = JupyterTransport.connect(
                self.km.get_connection_info(),
                interrupt=lambda: _sync(self.km.interrupt_kernel),
                is_alive=lambda: bool(_sync(self.km.is_alive)),
            )
            Student(self._transport).has("__seglabs_probe__")
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # noqa: BLE001 - HarnessFailure included: this notebook fails, loudly
            raise HarnessUnavailable(
                f"the grading harness cannot talk to this kernel ({type(err).__name__}: {err}); the kernel must "
                f"import seglabs_grading.harness.kernel_side: {USE_COURSE_GRADE}"
            ) from err

    def preprocess_cell(self, cell, resources, index):
        if self._trusted and self._transport is None:
            self._connect()  # before the first cell: the student's code has not run yet
        if not is_test_cell(cell):
            return super().preprocess_cell(cell, resources, index)
        saved = cell.metadata
        cell.metadata = type(saved)(nbgrader=saved.get("nbgrader", {}))  # tags and run options ignored
        try:
            grade_id = str(cell.metadata["nbgrader"].get("grade_id"))
            if grade_id not in self._trusted:  # not a test cell of the release: nbgrader refuses the notebook
                return super().preprocess_cell(cell, resources, index)
            (visible, block), points = self._trusted[grade_id]
            source, cell.source = cell.source, visible
            try:
                super().preprocess_cell(cell, resources, index)
            finally:
                cell.source = source
            self._judge(cell, grade_id, block, points)
            return cell, resources
        finally:
            cell.metadata = saved

    def _judge(self, cell: Any, grade_id: str, block: str | None, points: float) -> None:
        if block is None:
            verdict = Verdict(grade_id, points, error=NO_HARNESS_BLOCK)
        else:
            student = Student(self._transport, time_limit_s=self.call_time_limit)
            verdict = run_hidden(block, student, seed=self._seed, points=points, grade_id=grade_id)
        record = {"verdict": verdict.to_dict(), "visible": plain_text(cell.get("outputs", []))}
        self._records[grade_id] = record
        write_verdict(cell, record)


class HarnessVerdicts(NbGraderPreprocessor):
    """Before ``SaveAutoGrades``: every harness test cell's outputs come from the harness's verdict alone."""

    def preprocess(self, nb, resources):
        state = resources.get(STATE)
        if state is None:
            trusted = trusted_test_cells(resources)
            if trusted or harness_cells(nb):
                raise HarnessUnavailable(
                    "this notebook has hidden tests of the harness form but the autograde pipeline did not run "
                    "seglabs_grading.harness.preprocessors.HarnessExecute (configure it in nbgrader_config.py): "
                    + USE_COURSE_GRADE
                )
            return nb, resources
        records = state["records"]
        for cell in nb.cells:
            grade_id = str(cell.get("metadata", {}).get("nbgrader", {}).get("grade_id"))
            if not is_test_cell(cell) or grade_id not in state["cells"]:
                continue
            points = float(cell.metadata["nbgrader"].get("points", 0))
            write_verdict(
                cell,
                records.get(grade_id) or {"verdict": Verdict(grade_id, points, error="not run").to_dict()},
            )
        if state["cells"]:
            nb.metadata[STATE] = {
                "seed": state["seed"],
                "scores": {g: r["verdict"]["score"] for g, r in records.items()},
            }
        return nb, resources

"""Try a notebook's harness-form hidden tests: ``python -m seglabs_grading.harness.try NOTEBOOK [--cell ID ...]``.

Starts a plain kernel (jupyter_client, no sandbox: for authors), runs the notebook's code cells in order with
every hidden block removed, and right after each test cell runs its harness-form hidden block in this process
against that kernel, printing each case (✓/✗ and its message) and the cell's score. A hidden block without the
``# harness`` first line is reported (graded, it would score 0) and not run. ``--stub ID`` replaces an answer cell's
solution by the student version's stub first, to see that a wrong answer is caught.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from helpers.config import setting
from seglabs_grading.cells import HIDDEN_BLOCK, SOLUTION_BLOCK, is_test_cell, nbgrader_meta, read
from seglabs_grading.harness.proxy import Student
from seglabs_grading.harness.runner import Verdict, hidden_block, is_harness_block, run_hidden
from seglabs_grading.harness.seed import ENV, seed_for
from seglabs_grading.harness.transport import JupyterTransport

STUB = "raise NotImplementedError()"


def start_kernel(cwd: Path, budget: str) -> tuple[Any, Any]:
    """A plain python3 kernel of this environment, with the CI budget unless told otherwise."""
    from jupyter_client import KernelManager

    env = dict(os.environ, SEGLAB_BUDGET=budget, MPLBACKEND="Agg", PYDEVD_DISABLE_FILE_VALIDATION="1")
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(cwd), env=env, extra_arguments=["--HistoryManager.hist_file=:memory:"])
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    return km, kc


def stubbed(source: str) -> str:
    """``source`` with its solution region replaced by the student version's stub."""
    return SOLUTION_BLOCK.sub(lambda m: f"{m.group(1)}# YOUR CODE HERE\n{m.group(1)}{STUB}", source)


def run_cell(kc: Any, source: str, timeout: float) -> list[str]:
    """Execute ``source`` in the kernel; the error lines it produced (empty when it ran cleanly)."""
    errors: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "error":
            errors.append(f"{msg['content']['ename']}: {msg['content']['evalue']}"[:300])

    try:
        kc.execute_interactive(source, timeout=timeout, output_hook=hook, allow_stdin=False)
    except TimeoutError:
        errors.append(f"cell did not finish within {timeout:g} s")
    return errors


def print_verdict(grade_id: str, verdict: Verdict) -> None:
    print(f"{grade_id} ({verdict.points:g} points): {verdict.score:g}")
    for line in verdict.lines():
        print(f"  {line}")


def try_notebook(
    path: Path, cells: list[str], stubs: list[str], student_id: str, timeout: float
) -> list[Verdict]:
    """Run the notebook and its harness-form hidden blocks; print as it goes; return the verdicts."""
    nb = read(path)
    lab = path.stem
    secret = (setting(ENV) or "seglabs-try").encode()
    seed = seed_for(secret, lab, student_id)
    km, kc = start_kernel(path.parent, setting("SEGLAB_BUDGET") if os.environ.get("SEGLAB_BUDGET") else "ci")
    transport = JupyterTransport.connect(km.get_connection_info(), km.interrupt_kernel, km.is_alive)
    verdicts: list[Verdict] = []
    try:
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            meta = nbgrader_meta(cell)
            grade_id = meta.get("grade_id", f"cell {index}")
            source = stubbed(cell.source) if grade_id in stubs else cell.source
            for error in run_cell(kc, HIDDEN_BLOCK.sub("", source), timeout):
                print(f"[{grade_id}] {error}")
            # As the grader does: only a test cell's hidden block is judged.
            block = hidden_block(cell.source) if is_test_cell(cell) else None
            if block is None or (cells and grade_id not in cells):
                continue
            if not is_harness_block(block):
                print(
                    f"{grade_id}: hidden block without '# harness' (it would score 0 when graded); not tried"
                )
                continue
            student = Student(transport)
            verdict = run_hidden(
                block, student, seed=seed, points=float(meta.get("points", 0)), grade_id=grade_id
            )
            verdicts.append(verdict)
            print_verdict(grade_id, verdict)
    finally:
        transport.close()
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m seglabs_grading.harness.try", description=__doc__.splitlines()[0]
    )
    parser.add_argument("notebook", type=Path)
    parser.add_argument(
        "--cell", action="append", default=[], metavar="GRADE_ID", help="only these test cells"
    )
    parser.add_argument(
        "--stub", action="append", default=[], metavar="GRADE_ID", help="stub this answer first"
    )
    parser.add_argument("--student", default="try", help="student id the SEED is made for (default: try)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per notebook cell (default 600)")
    parser.add_argument(
        "--expect-full", action="store_true", help="exit 1 unless every tried cell scores full"
    )
    args = parser.parse_args(argv)
    if not args.notebook.is_file():
        parser.error(f"{args.notebook}: no such notebook")
    verdicts = try_notebook(args.notebook.resolve(), args.cell, args.stub, args.student, args.timeout)
    total, points = sum(v.score for v in verdicts), sum(v.points for v in verdicts)
    print(f"total: {total:g} of {points:g} points in {len(verdicts)} harness-form test cells")
    broken = [v.grade_id for v in verdicts if v.error]
    if broken:
        print(f"hidden blocks that could not run: {', '.join(broken)}", file=sys.stderr)
        return 1
    if args.expect_full and total < points:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run a harness-form hidden block in a fresh namespace of the grader's process and score it per case.

A test cell of ``P`` points whose block registers ``K`` cases scores ``P × passed / K``; each failing kernel
check removes ``P / K`` (never below 0); the result is rounded half up to 2 decimals (exact arithmetic with
fractions, so ``6 × 2/3`` is ``4.0`` and ``10 × 1/3`` is ``3.33``).
"""

from __future__ import annotations

import builtins
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

from seglabs_grading.cells import HIDDEN_BLOCK
from seglabs_grading.harness.errors import StudentError

MARKER = "# harness"  # the first line of a hidden block that runs in the harness
MAX_MESSAGE = 1000  # characters of a case's message kept in the feedback


def hidden_block(source: str) -> str | None:
    """The text between the hidden-test markers of a cell, or None."""
    match = HIDDEN_BLOCK.search(source)
    return match.group(1) if match else None


def is_harness_block(block: str | None) -> bool:
    """Whether a hidden block is of the harness form (its first line is exactly ``# harness``)."""
    return block is not None and block.split("\n", 1)[0].strip() == MARKER


def split_test_cell(source: str) -> tuple[str, str] | None:
    """``(visible part, hidden block)`` of a test cell whose hidden block is of the harness form, else None."""
    match = HIDDEN_BLOCK.search(source)
    if not match or not is_harness_block(match.group(1)):
        return None
    visible = (source[: match.start()] + source[match.end() :]).rstrip()
    return (visible + "\n" if visible else ""), match.group(1)


@dataclass
class CaseResult:
    name: str
    passed: bool
    message: str = ""


@dataclass
class Verdict:
    """What the harness decided for one test cell."""

    grade_id: str
    points: float
    cases: list[CaseResult] = field(default_factory=list)
    checks: list[CaseResult] = field(default_factory=list)  # kernel checks: may only lower the score
    score: float = 0.0
    error: str = ""  # the block could not run (a broken test): the cell scores 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        cases = [CaseResult(**c) for c in data.get("cases", [])]
        checks = [CaseResult(**c) for c in data.get("checks", [])]
        return cls(
            data["grade_id"],
            float(data["points"]),
            cases,
            checks,
            float(data["score"]),
            data.get("error", ""),
        )

    def lines(self) -> list[str]:
        """The feedback text: every case by name with ✓ or ✗ and its message, then the score."""
        if self.error:
            return [f"Hidden tests could not run: {self.error}", f"Score: 0 of {self.points:g} points"]
        passed = sum(c.passed for c in self.cases)
        out = [f"Hidden tests: {passed} of {len(self.cases)} cases passed"]
        out += [
            f"  {'✓' if c.passed else '✗'} {c.name}" + ("" if c.passed else f": {c.message}")
            for c in self.cases
        ]
        if self.checks:
            share = self.points / len(self.cases)
            out.append("Kernel checks (each failure removes one case's share):")
            for c in self.checks:
                out.append(
                    f"  ✓ {c.name}" if c.passed else f"  ✗ {c.name}: {c.message} (-{share:.2f} points)"
                )
        out.append(f"Score: {self.score:g} of {self.points:g} points")
        return out


def cell_score(points: float, passed: int, total: int, failed_checks: int = 0) -> float:
    """``P × passed / K`` minus ``P / K`` per failed kernel check, at least 0, rounded half up to 2 decimals."""
    if total <= 0:
        return 0.0
    exact = max(Fraction(0), Fraction(points) * (passed - failed_checks) / total)
    return float(Fraction(math.floor(exact * 100 + Fraction(1, 2)), 100))


def _items(cases: Any, what: str) -> list[tuple[str, Callable[[], Any]]]:
    pairs = list(cases.items()) if isinstance(cases, Mapping) else list(cases)
    for pair in pairs:
        if not (
            isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str) and callable(pair[1])
        ):
            raise TypeError(f"{what} must map case names (str) to zero-argument callables")
    return pairs


CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def failure_message(err: BaseException) -> str:
    """A failed case's line: an AssertionError's message, else ``ExceptionType: message``."""
    if isinstance(err, AssertionError):
        text = str(err) or "wrong result"
    elif isinstance(err, StudentError):
        text = f"{err.type_name}: {err.message}" if err.message else err.type_name
    else:
        text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    # One line, printable characters only: a message from the kernel must not forge "✓ ..." or "Score:" lines.
    text = " ".join(CONTROL.sub(" ", text).split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def run_case(name: str, case: Callable[[], Any]) -> CaseResult:
    """A case passes when it returns without raising."""
    try:
        case()
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - every failure is a failed case, never a crash of the grader
        return CaseResult(name, False, failure_message(err))
    return CaseResult(name, True)


def run_hidden(block: str, student: Any, *, seed: int, points: float, grade_id: str) -> Verdict:
    """Execute ``block`` with ``student``, ``run_cases``, ``SEED`` and ``PREREQUISITES`` in a fresh namespace."""
    registered: list[tuple[str, Callable[[], Any]]] = []
    registered_checks: list[tuple[str, Callable[[], Any]]] = []

    def run_cases(cases: Mapping | Iterable, kernel_checks: Mapping | Iterable | None = None) -> None:
        """Register the cases (and kernel checks) of this test cell; the harness runs them afterwards."""
        registered.extend(_items(cases, "run_cases"))
        registered_checks.extend(_items(kernel_checks or {}, "kernel_checks"))

    namespace = {
        "__name__": f"hidden_tests_{grade_id}",
        "__builtins__": builtins,
        "student": student,
        "run_cases": run_cases,
        "SEED": int(seed),
        "PREREQUISITES": (),
    }
    verdict = Verdict(grade_id, float(points))
    try:
        exec(compile(block, f"<hidden tests of {grade_id}>", "exec"), namespace)  # noqa: S102 - the instructor's test
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - a HarnessFailure too: the cell scores 0, the batch goes on
        verdict.error = failure_message(err)
        return verdict
    names = [name for name, _ in registered + registered_checks]
    if not registered or len(set(names)) != len(names):
        verdict.error = "no cases registered (call run_cases)" if not registered else "two cases share a name"
        return verdict
    verdict.cases = [run_case(name, case) for name, case in registered]
    verdict.checks = [run_case(name, check) for name, check in registered_checks]
    passed = sum(c.passed for c in verdict.cases)
    failed_checks = sum(not c.passed for c in verdict.checks)
    verdict.score = cell_score(points, passed, len(verdict.cases), failed_checks)
    return verdict

"""Every status a graded submission can have, what each one means, and which wins when several apply.

One home for these strings: :mod:`seglabs_grading.sandbox` decides them, :mod:`seglabs_grading.course` records
and exports them, the README's table lists them. Only :data:`GRADED` counts (and :data:`UNVERIFIED`, for rows
nbgrader graded outside ``course grade``); every other status scores 0 with its reason.
"""

from __future__ import annotations

GRADED = (
    "graded"  # nbgrader graded it; a timed-out cell, truncated output or a memory cap is noted in `reason`
)

CORRUPT = "ungraded: corrupt notebook"  # not a readable notebook
TIMED_OUT = "ungraded: timed out"  # past --notebook-timeout, or a cell that ignored the interrupt
KERNEL_DIED = "ungraded: kernel died"  # the kernel exited (os._exit, a crash, the memory cap's OOM kill)
FAILED = "ungraded: grading failed"  # anything else; `reason` has nbgrader's error
NOT_GRADED_YET = "ungraded: not graded yet"  # collected, `course grade` not run since
CHANGED = "ungraded: submission changed since grading"  # the file differs from the copy that was graded

TEST_CELL_REMOVED = "tampered: test cell removed"  # a test cell, or its nbgrader metadata, is gone
TEST_CELL_CHANGED = "tampered: test cell metadata changed"  # points, lock or type of a test cell edited
DUPLICATE_GRADE_ID = "tampered: duplicate grade_id"  # two cells share a grade_id (a copy-pasted cell)
ANSWER_CELL_REMOVED = "tampered: graded answer cell removed"

UNVERIFIED = "unverified: graded by nbgrader directly"  # gradebook rows without a `course grade` record
NO_SUBMISSION = "no submission"

# When one notebook shows several kinds of tampering, the first of these is its status (the rest go to details).
TAMPERING = (TEST_CELL_REMOVED, TEST_CELL_CHANGED, DUPLICATE_GRADE_ID, ANSWER_CELL_REMOVED)

# The statuses one grading attempt can end with, in the order of precedence used when it shows several: a corrupt
# file cannot be graded at all; tampering outranks what happened while running; a timeout outranks a death it caused.
# (NOT_GRADED_YET, CHANGED, UNVERIFIED and NO_SUBMISSION describe a row, not an attempt: they never compete.)
PRECEDENCE = (CORRUPT, *TAMPERING, TIMED_OUT, KERNEL_DIED, FAILED, GRADED)


def first(*statuses: str | None) -> str:
    """The status that wins among ``statuses`` (``None`` entries are ignored; none at all: :data:`FAILED`)."""
    present = [s for s in statuses if s]
    if not present:
        return FAILED
    return min(present, key=lambda s: PRECEDENCE.index(s) if s in PRECEDENCE else len(PRECEDENCE))


def counts(status: str) -> bool:
    """Whether a row with ``status`` counts its scores in the export."""
    return status == GRADED or status == UNVERIFIED


def is_ungraded(status: str) -> bool:
    """An attempt that produced no trustworthy grade: ``course grade`` tries it again next time."""
    return status.startswith("ungraded")


def is_tampered(status: str) -> bool:
    return status in TAMPERING

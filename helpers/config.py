"""The course's settings: every ``SEGLAB_*`` environment variable, in one table, read through one function.

:data:`SETTINGS` is the table: each variable's default, what it means and who reads it. Print it with
``python -m helpers.config``. Read any variable with :func:`setting`: unset or empty gives the default, a
value of the wrong type is an error naming the variable. A new setting gets a row in :data:`SETTINGS`;
``tests/helpers/test_config.py`` fails when the code uses a ``SEGLAB_*`` name the table lacks.

The one setting that scales every training cell is ``SEGLAB_BUDGET``::

    from helpers.config import budget
    steps = budget(full=600, ci=20)      # 600 for students, 20 under CI

Accepted values: ``full`` (default) and ``ci``. Anything else is an error, so a typo cannot silently
give a student the tiny CI budget. This module imports nothing heavy (no torch), so the ``course`` command
and ``nbgrader_config.py`` can use it cheaply.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

__all__ = [
    "Setting",
    "SETTINGS",
    "setting",
    "settings_table",
    "budget",
    "budget_level",
    "data_dir",
    "ENV_VAR",
    "LEVELS",
]


@dataclass(frozen=True)
class Setting:
    """One ``SEGLAB_*`` environment variable: its default (None: unset), meaning and readers."""

    name: str
    default: str | None
    meaning: str
    read_by: str


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            "SEGLAB_BUDGET",
            "full",
            "training budget: full (students) or ci (tests, dry runs: seconds instead of minutes)",
            "helpers.config.budget (training cells, lab 04's quality bars); the sandbox passes it to kernels",
        ),
        Setting(
            "SEGLAB_DATA",
            None,
            "where generated datasets are cached (unset: the checkout's data/ if writable, else ~/.cache/seglabs)",
            "helpers.config.data_dir (helpers.scenes, course); the sandbox sets it for kernels",
        ),
        Setting(
            "SEGLAB_GRADING_DIR",
            None,
            "where gradebook, submissions and feedback live (unset: grading/ beside nbgrader_config.py)",
            "nbgrader_config.py; course and the grading tests set it",
        ),
        Setting(
            "SEGLAB_CELL_TIMEOUT",
            "120",
            "seconds one cell may run while autograding",
            "nbgrader_config.py (course grade's default), tests/grading, tests/labs",
        ),
        Setting(
            "SEGLAB_VOC_ROOT",
            None,
            "a PASCAL VOC 2012 tree on disk",
            "lab 04 exercise 5: reading it is the exercise (student code, not setting())",
        ),
        Setting(
            "SEGLAB_PET_ROOT",
            None,
            "an Oxford-IIIT Pet tree on disk",
            "lab 04 exercise 5: reading it is the exercise (student code, not setting())",
        ),
        Setting(
            "SEGLAB_INSTALL",
            None,
            "1: a lab's setup cell installs the course package into a kernel that lacks it",
            "every lab's setup cell (tests/setup_cell.py; it runs before helpers exists, so reads os.environ)",
        ),
        Setting(
            "SEGLAB_HARNESS_SECRET",
            None,
            "the per-course secret hidden-test seeds derive from (unset: grading/harness-secret, made once)",
            "seglabs_grading.harness.seed",
        ),
        Setting(
            "SEGLAB_BLOCK_IMPORTS",
            None,
            "comma-separated modules a test kernel may not import (as in a student's kernel)",
            "tests/student_kernel/sitecustomize.py (set by the Makefile and tests/labs)",
        ),
        Setting(
            "SEGLAB_UNSANDBOXED_GRADING",
            None,
            "1: let plain `nbgrader autograde` run kernels outside the sandbox, as you (the project's tests of "
            "its own notebooks; never for students' submissions: use `course grade`)",
            "seglabs_grading.harness.preprocessors; tests/labtools.nbgrader_env sets it",
        ),
        Setting(
            "SEGLAB_TEST_ALL_STUBS",
            None,
            "1: the grading tests grade every answer's stub, not one wrong answer per lab (make test-full)",
            "tests/labs/test_grading.py, test_wrong_answers.py, test_stub_independence.py, tests/grading/test_sandbox.py, "
            "tests/grading/test_forging.py",
        ),
        Setting(
            "SEGLAB_UI_SOLUTIONS",
            None,
            "1: the browser suite opens the solution notebooks too (make test-ui, make test-full)",
            "tests/ui/test_ui.py",
        ),
        Setting(
            "SEGLAB_UI_CELL_TIMEOUT",
            "240",
            "seconds the browser suite waits for one cell",
            "tests/ui/ui_jupyter.py",
        ),
        Setting(
            "SEGLAB_RESULT_FD",
            None,
            "internal: the pipe a sandboxed grading worker answers on (never set it yourself)",
            "seglabs_grading.sandbox (sets and reads it)",
        ),
    )
}
"""Every ``SEGLAB_*`` variable the project reads: the one table."""


def settings_table() -> str:
    """:data:`SETTINGS` as a Markdown table (``python -m helpers.config`` prints it)."""
    rows = ["| variable | default | meaning | who reads it |", "|---|---|---|---|"]
    for s in SETTINGS.values():
        default = f"`{s.default}`" if s.default is not None else "unset"
        rows.append(f"| `{s.name}` | {default} | {s.meaning} | {s.read_by} |")
    return "\n".join(rows)


def setting(name: str, cast: Callable[[str], T] = str) -> T | None:
    """The value of the ``SEGLAB_*`` variable ``name``, stripped and converted by ``cast`` (e.g. ``int``).

    Unset or empty gives the table's default (None where it has none). An unknown name is a ``KeyError``
    (add it to :data:`SETTINGS`); a value ``cast`` rejects is a ``ValueError`` naming the variable."""
    if name not in SETTINGS:
        raise KeyError(
            f"{name} is not a course setting; known: {', '.join(SETTINGS)} (see helpers/config.py)"
        )
    value = os.environ.get(name, "").strip() or SETTINGS[name].default
    if value is None:
        return None
    try:
        return cast(value)
    except ValueError:
        raise ValueError(
            f"{name}={os.environ.get(name)!r} is not a valid {getattr(cast, '__name__', 'value')} "
            f"({SETTINGS[name].meaning}); unset it for the default"
        ) from None


ENV_VAR = "SEGLAB_BUDGET"
LEVELS = ("full", "ci")


def budget_level() -> str:
    """Return the current budget level, read from the ``SEGLAB_BUDGET`` environment variable."""
    level = setting(ENV_VAR).lower()
    if level not in LEVELS:
        raise ValueError(
            f"{ENV_VAR}={os.environ[ENV_VAR]!r} is not a budget level; use one of {', '.join(LEVELS)} "
            f"(unset it to get the full student budget)."
        )
    return level


def budget(full: T, ci: T) -> T:
    """Pick ``full`` or ``ci`` according to ``SEGLAB_BUDGET`` (see module docstring)."""
    return ci if budget_level() == "ci" else full


META_FILE = "seglab.json"
"""The file that marks a generated dataset in :func:`data_dir` and records its parameters (written by
:func:`helpers.scenes.make_scenes`). Here, torch-free, so the grading sandbox can recognise datasets cheaply."""


def data_dir() -> Path:
    """Folder where generated datasets are cached: ``$SEGLAB_DATA`` if set, else the checkout's ``data/`` when it
    is writable (editable install), else ``~/.cache/seglabs``. Lives here, free of torch, so the ``course`` command
    can find it cheaply; ``helpers.data.data_dir`` is the same function."""
    chosen = setting("SEGLAB_DATA")
    if chosen:
        return Path(chosen).expanduser()
    checkout = Path(__file__).resolve().parents[1] / "data"
    if checkout.is_dir() and os.access(checkout, os.W_OK):
        return checkout
    return Path.home() / ".cache" / "seglabs"


if __name__ == "__main__":
    print(settings_table())

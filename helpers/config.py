"""The one setting that scales every training cell: ``SEGLAB_BUDGET``.

Students get the real budget by default. CI and the autograding tests export ``SEGLAB_BUDGET=ci``
so that training cells run for seconds, not minutes::

    from helpers.config import budget
    steps = budget(full=600, ci=20)      # 600 for students, 20 under CI

Accepted values: ``full`` (default) and ``ci``. Anything else is an error, so a typo cannot silently
give a student the tiny CI budget.
"""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")

ENV_VAR = "SEGLAB_BUDGET"
LEVELS = ("full", "ci")


def budget_level() -> str:
    """Return the current budget level, read from the ``SEGLAB_BUDGET`` environment variable."""
    level = os.environ.get(ENV_VAR, "full").strip().lower() or "full"
    if level not in LEVELS:
        raise ValueError(
            f"{ENV_VAR}={os.environ[ENV_VAR]!r} is not a budget level; use one of {', '.join(LEVELS)} "
            f"(unset it to get the full student budget)."
        )
    return level


def budget(full: T, ci: T) -> T:
    """Pick ``full`` or ``ci`` according to ``SEGLAB_BUDGET`` (see module docstring)."""
    return ci if budget_level() == "ci" else full


def is_ci_budget() -> bool:
    """True when training cells should run with the small CI budget."""
    return budget_level() == "ci"

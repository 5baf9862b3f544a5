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
from pathlib import Path
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



def data_dir() -> Path:
    """Folder where generated datasets are cached: ``$SEGLAB_DATA`` if set, else the checkout's ``data/`` when it
    is writable (editable install), else ``~/.cache/seglabs``. Lives here, free of torch, so the ``course`` command
    can find it cheaply; ``helpers.data.data_dir`` is the same function."""
    if os.environ.get("SEGLAB_DATA"):
        return Path(os.environ["SEGLAB_DATA"]).expanduser()
    checkout = Path(__file__).resolve().parents[1] / "data"
    if checkout.is_dir() and os.access(checkout, os.W_OK):
        return checkout
    return Path.home() / ".cache" / "seglabs"

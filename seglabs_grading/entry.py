"""The ``course`` command's entry point: without the ``grading`` extra it says how to get it, not a traceback.

A student's install (``pip install seglabs``) has the ``course`` script too but none of the grading stack;
``seglabs_grading.course`` imports nbgrader lazily, so the check happens here, before any command runs.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

# What seglabs_grading imports from the `grading` extra (pyproject.toml).
GRADING_MODULES = ("nbgrader", "nbformat", "nbclient", "jupyter_client", "traitlets", "packaging")


def missing_modules() -> list[str]:
    """The grading modules this Python cannot import."""
    absent = []
    for name in GRADING_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            absent.append(name)
    return absent


def main(argv: Sequence[str] | None = None) -> int:
    absent = missing_modules()
    if absent:
        print(
            f"course: the grading tools are not installed here (missing: {', '.join(absent)}).\n"
            "Install the course with its `grading` extra, from the course's checkout:\n"
            "    make install                                    # the maintainers' venv, exact pins\n"
            "    pip install -c constraints.txt -e '.[grading]'  # into the current environment\n"
            "or from where your students install it: pip install 'seglabs[grading] @ <git URL or wheel>'.",
            file=sys.stderr,
        )
        return 2
    from seglabs_grading.course import main as course_main

    return course_main(argv)


if __name__ == "__main__":
    sys.exit(main())

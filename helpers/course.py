"""Moved: the ``course`` command now lives in :mod:`seglabs_grading.course` (the instructors' package).

``python -m helpers.course ...`` still works for this release and says where the command went.
"""

import sys
import warnings

if __name__ == "__main__":
    print(
        "note: `python -m helpers.course` is deprecated; use `course ...` or `python -m seglabs_grading.course ...`",
        file=sys.stderr,
    )
    from seglabs_grading.course import main

    raise SystemExit(main())

warnings.warn("helpers.course moved to seglabs_grading.course", DeprecationWarning, stacklevel=2)
from seglabs_grading.course import *  # noqa: E402,F403

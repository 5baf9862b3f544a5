"""The grading harness: hidden tests run here, in the grader's process, never in the student's kernel.

The kernel only answers calls with plain data (:mod:`.protocol`, :mod:`.kernel_side`); the hidden tests talk to
it through the ``student`` proxy (:mod:`.proxy`) and are scored per case (:mod:`.runner`). nbgrader runs them
through :mod:`.preprocessors`; ``python -m seglabs_grading.harness.try NOTEBOOK`` tries them on a notebook.
How to write one: ``docs/authoring.md``, section "Hidden tests".

This module stays light: the kernel imports :mod:`.kernel_side` through it.
"""

from seglabs_grading.harness.errors import CallTimeout, HarnessError, HarnessFailure, KernelDied, StudentError

__all__ = ["CallTimeout", "HarnessError", "HarnessFailure", "KernelDied", "StudentError"]

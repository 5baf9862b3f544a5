"""Exceptions of the grading harness (importable inside the kernel: no dependencies)."""

from __future__ import annotations


class HarnessError(RuntimeError):
    """The harness could not do what a hidden test asked (a broken test, or a kernel that cannot answer)."""


class KernelDied(HarnessError):
    """The student's kernel exited (``os._exit``, a crash): every later call fails with this."""


class StudentError(Exception):
    """The student's code raised an exception of a type that is not a Python built-in.

    ``type_name`` is the kernel's claim of its dotted type name; ``str(err)`` is its message.
    """

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message

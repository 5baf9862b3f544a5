"""Exceptions of the grading harness (importable inside the kernel: no dependencies)."""

from __future__ import annotations


class HarnessError(RuntimeError):
    """The harness could not do what a hidden test asked (a broken test, or a kernel that cannot answer)."""


class HarnessFailure(BaseException):
    """The kernel did not answer a call properly (no reply, junk, exited, past its time limit): the case fails.

    A ``BaseException``, like ``KeyboardInterrupt``: no ``except Exception`` or ``except ValueError`` in a hidden
    test can turn a kernel's failure to answer into a passing case (the runner still catches it)."""


class KernelDied(HarnessFailure):
    """The student's kernel exited (``os._exit``, a crash): every later call fails with this."""


class CallTimeout(HarnessFailure):
    """A call ran past its time limit (the kernel was interrupted)."""


class StudentError(Exception):
    """The student's code raised an exception of a type that is not a Python built-in.

    ``type_name`` is the kernel's claim of its dotted type name; ``str(err)`` is its message.
    """

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message

"""Visible checks for students, and the small tools hidden tests are built from.

Students meet these right under an exercise::

    check_close("nearest_unpool", my_out, expected)   # prints ✓, or ✗ with the first mismatch and a hint

A failed visible check prints what is wrong and then raises :class:`CheckFailed` (an ``AssertionError``),
so the cell shows red and nbgrader's *Validate* button reports it; pass ``strict=False`` to only print.

Hidden tests (in the instructor's solution notebook only) use :func:`forbidden` to make the built-ins
that would answer an exercise raise while the student's function runs, and :func:`run_cases` to report
which named case failed *without* quoting the test's code or its expected values in the feedback.

Nothing here is the answer to a graded exercise.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch

__all__ = [
    "ForbiddenCallError",
    "HiddenTestFailure",
    "CheckFailed",
    "forbidden",
    "run_cases",
    "check_close",
    "check_equal",
    "check_shape",
    "rel_error",
    "require",
]


# --- capture what the checks rely on before any student code can monkeypatch it -----------------
_isinstance = builtins.isinstance
_allclose = torch.allclose
_equal = torch.equal
_setattr = builtins.setattr
_getattr = builtins.getattr


_INHERITED = object()  # marks a class attribute that was inherited, not defined on the class itself


class ForbiddenCallError(RuntimeError):
    """Raised when an exercise calls a built-in it is asked to implement itself."""


class _MessageOnly(AssertionError):
    """An AssertionError that IPython renders as its message alone, without quoting any cell source."""

    def _render_traceback_(self) -> list[str]:  # IPython's hook for custom traceback rendering
        return [
            f"{type(self).__name__}: {line}" if i == 0 else line
            for i, line in enumerate(str(self).splitlines())
        ]


class CheckFailed(_MessageOnly):
    """A visible check failed; the printed lines above it say what is wrong."""


class HiddenTestFailure(_MessageOnly):
    """One or more named hidden-test cases failed; the message lists which and why."""


def _resolve(dotted: str) -> tuple[Any, str, Any]:
    """Split ``"torch.nn.functional.interpolate"`` into (owner object, attribute name, current value)."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:-1]:
            owner = _getattr(owner, attr)
        return owner, parts[-1], _getattr(owner, parts[-1])
    raise ValueError(f"cannot resolve {dotted!r} to a module attribute")


def _raiser(dotted: str, hint: str, record: list[str] | None = None) -> Callable[..., Any]:
    def forbidden_call(*args: Any, **kwargs: Any) -> Any:
        if record is not None:
            record.append(dotted)  # reported even when the caller catches the error
        raise ForbiddenCallError(f"`{dotted}` is not allowed in this exercise. {hint}".strip())

    forbidden_call.__name__ = dotted.rsplit(".", 1)[-1]
    return forbidden_call


@contextlib.contextmanager
def forbidden(
    *names: str, namespace: dict | None = None, hint: str = "", record: list[str] | None = None
) -> Iterator[None]:
    """Make the named built-ins raise :class:`ForbiddenCallError` inside the ``with`` block.

    ``names`` are dotted paths such as ``"torch.nn.functional.interpolate"``, ``"torch.Tensor.max_unpool"``
    or an ``nn.Module`` class like ``"torch.nn.Upsample"`` (its ``forward`` is made to raise).
    Pass the notebook's ``globals()`` as ``namespace`` to also catch names imported directly
    (``from torch.nn.functional import interpolate``). Everything is restored on exit.

    This catches the honest mistake of calling the built-in an exercise asks you to write yourself;
    it does not (and cannot) stop deliberate circumvention such as ``torch.ops.aten``. Each forbidden call is
    appended to ``record`` when given (the grading harness reports a call even if the student's code caught
    the error).
    """
    restore: list[tuple[Any, str, Any]] = []
    originals: dict[int, Callable[..., Any]] = {}
    try:
        for dotted in names:
            owner, attr, value = _resolve(dotted)
            if _isinstance(value, type) and issubclass(value, torch.nn.Module):
                # An inherited forward may already be patched (parent listed first): restore by deleting ours.
                restore.append((value, "forward", value.__dict__.get("forward", _INHERITED)))
                _setattr(value, "forward", _raiser(dotted, hint, record))
                continue
            replacement = _raiser(dotted, hint, record)
            restore.append((owner, attr, value))
            _setattr(owner, attr, replacement)
            originals[id(value)] = replacement
        if namespace is not None:
            for key, value in list(namespace.items()):
                if id(value) in originals:
                    restore.append((namespace, key, value))
                    namespace[key] = originals[id(value)]
        yield
    finally:
        for owner, attr, value in reversed(restore):
            if owner is namespace:
                namespace[attr] = value
            elif value is _INHERITED:
                delattr(owner, attr)
            else:
                _setattr(owner, attr, value)


def run_cases(cases: Mapping[str, Callable[[], Any]] | Iterable[tuple[str, Callable[[], Any]]]) -> None:
    """Run named test cases; raise one :class:`HiddenTestFailure` naming every case that failed.

    A case passes when it returns without raising. An ``AssertionError`` contributes its message
    (write messages that say what is wrong, e.g. "wrong output shape for a non-square input", never the
    expected values); any other exception is reported as raised by the student's code. The raised error is
    rendered as its message alone (``_render_traceback_``), so nbgrader feedback cannot quote hidden tests.
    (Hidden tests of the harness form get the grading harness's own ``run_cases`` instead: per-case credit.)
    """
    items = list(cases.items()) if _isinstance(cases, Mapping) else list(cases)
    failures: list[str] = []
    for name, case in items:
        try:
            case()
        except AssertionError as err:
            failures.append(f"  ✗ {name}: {err or 'wrong result'}")
        except Exception as err:  # noqa: BLE001 - any error from student code is a failed case
            failures.append(f"  ✗ {name}: your code raised {type(err).__name__}: {err}")
    if failures:
        passed = len(items) - len(failures)
        message = f"{passed}/{len(items)} hidden cases passed\n" + "\n".join(failures)
        raise HiddenTestFailure(message) from None
    print(f"✓ all {len(items)} hidden cases passed")


def require(*names: str, exercise: int | str | None = None) -> None:
    """Stop a cell politely when an earlier answer has not defined ``names`` yet.

    Cells that use what an exercise defines call ``require("pixel_model", exercise=6)`` first, so an unanswered
    exercise shows the same ``NotImplementedError`` as its stub instead of a confusing ``NameError``.
    """
    namespace = sys._getframe(1).f_globals  # the notebook's namespace when called from a cell
    missing = [name for name in names if name not in namespace]
    if missing:
        where = f"Exercise {exercise}" if exercise is not None else "the exercise above"
        raise NotImplementedError(f"finish {where} first: {', '.join(missing)} not defined yet")


# --- visible checks ---------------------------------------------------------------------------------
def _agree(a: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Positions where ``a`` and ``e`` are equal or both NaN (the same infinity is equal)."""
    return (a == e) | (a.isnan() & e.isnan())


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest relative error ``|a - e| / max(1e-8, |a| + |e|)`` (the CS231n convention). Positions where both are
    NaN, or the same infinity, agree and count as 0; a NaN or an infinity where something else is expected counts
    as ``inf``."""
    a, e = torch.broadcast_tensors(
        torch.as_tensor(actual, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64)
    )
    finite = a.isfinite() & e.isfinite()
    if bool((~finite & ~_agree(a, e)).any()):
        return float("inf")
    err = ((a - e).abs() / (a.abs() + e.abs()).clamp_min(1e-8))[finite]
    return float(err.max()) if err.numel() else 0.0


def _first_mismatch(actual: torch.Tensor, expected: torch.Tensor, bad: torch.Tensor) -> str:
    index = tuple(int(i) for i in bad.nonzero()[0])
    return f"first mismatch at index {index}: got {actual[index].item():.6g}, expected {expected[index].item():.6g}"


def _positions(n: int) -> str:
    return f"{n} position" if n == 1 else f"{n} positions"


def _match_notes(a: torch.Tensor, e: torch.Tensor) -> str:
    """What a passing comparison should say about NaN and infinities that were expected."""
    both_nan = int((a.isnan() & e.isnan()).sum())
    same_inf = a.isinf() & (a == e)
    plus, minus = int((same_inf & (a > 0)).sum()), int((same_inf & (a < 0)).sum())
    notes = [f"{_positions(both_nan)} both NaN, as expected"] if both_nan else []
    notes += [f"{_positions(plus)} inf where inf was expected (fine)"] if plus else []
    notes += [f"{_positions(minus)} -inf where -inf was expected (fine)"] if minus else []
    return "".join(f"; {note}" for note in notes)


def _mismatch_text(a: torch.Tensor, e: torch.Tensor, bad: torch.Tensor) -> str:
    """What a failing comparison says: a NaN or an infinity in the wrong place is named plainly, since a relative
    error means nothing there; otherwise the relative error and the first mismatch."""
    finite = a.isfinite() & e.isfinite()
    odd = bad & ~finite
    if not bool(odd.any()):
        return f"values differ (relative error {rel_error(a, e):.2e}); {_first_mismatch(a, e, bad)}"
    index = tuple(int(i) for i in odd.nonzero()[0])
    text = f"values differ; got {a[index].item():.6g} at index {index} where {e[index].item():.6g} expected"
    count = int(odd.sum())
    text += f" ({_positions(count)} with a NaN or inf that does not belong there)" if count > 1 else ""
    if bool((bad & finite).any()):
        text += f"; elsewhere the relative error is {rel_error(a[finite], e[finite]):.2e}"
    return text


def _check_shape(name: str, actual: Any, expected_shape: tuple[int, ...], quiet: bool = False) -> bool:
    """Print ✓ when ``actual`` is a tensor of ``expected_shape``, else ✗ with what was wrong."""
    if not _isinstance(actual, torch.Tensor):
        print(f"✗ {name}: expected a torch.Tensor, got {type(actual).__name__}")
        return False
    if tuple(actual.shape) != tuple(expected_shape):
        print(f"✗ {name}: shape {tuple(actual.shape)}, expected {tuple(expected_shape)}")
        return False
    if not quiet:
        print(f"✓ {name}: shape {tuple(actual.shape)}")
    return True


def _check_close(name: str, actual: Any, expected: Any, *, rtol: float, atol: float, hint: str) -> bool:
    """Compare a student's tensor with an expected one; print ✓ or ✗, relative error and a hint."""
    expected = torch.as_tensor(expected)
    if not _check_shape(name, actual, tuple(expected.shape), quiet=True):
        if hint:
            print(f"  hint: {hint}")
        return False
    a64, e64 = actual.detach().double().cpu(), expected.detach().double().cpu()
    if bool(_allclose(a64, e64, rtol=rtol, atol=atol, equal_nan=True)):
        if a64.numel() and bool((a64.isnan() & e64.isnan()).all()):
            print(f"✓ {name}: both NaN, as expected")
        else:
            print(
                f"✓ {name}: values match (relative error {rel_error(a64, e64):.2e}{_match_notes(a64, e64)})"
            )
        return True
    bad = ~torch.isclose(a64, e64, rtol=rtol, atol=atol, equal_nan=True)
    print(f"✗ {name}: {_mismatch_text(a64, e64, bad)}")
    if hint:
        print(f"  hint: {hint}")
    return False


def _check_equal(name: str, actual: Any, expected: Any, *, hint: str) -> bool:
    """Exact comparison for integer tensors (label maps, indices) or plain Python values."""
    if _isinstance(expected, torch.Tensor):
        if not _check_shape(name, actual, tuple(expected.shape), quiet=True):
            if hint:
                print(f"  hint: {hint}")
            return False
        if actual.dtype != expected.dtype:
            print(f"✗ {name}: dtype {actual.dtype}, expected {expected.dtype}")
            if hint:
                print(f"  hint: {hint}")
            return False
        if _equal(actual.cpu(), expected.cpu()):
            print(f"✓ {name}: equal")
            return True
        print(f"✗ {name}: {_first_mismatch(actual.cpu(), expected.cpu(), actual.cpu() != expected.cpu())}")
    else:
        if actual == expected:
            print(f"✓ {name}: {actual!r}")
            return True
        print(f"✗ {name}: got {actual!r}, expected {expected!r}")
    if hint:
        print(f"  hint: {hint}")
    return False


def _verdict(ok: bool, name: str, strict: bool) -> bool:
    if not ok and strict:
        raise CheckFailed(f"visible check failed: {name} (see the lines printed above)") from None
    return ok


def check_shape(name: str, actual: Any, expected_shape: tuple[int, ...], *, strict: bool = True) -> bool:
    """Print ✓ when ``actual`` is a tensor of ``expected_shape``, else ✗ with what was wrong."""
    return _verdict(_check_shape(name, actual, expected_shape), name, strict)


def check_close(
    name: str,
    actual: Any,
    expected: Any,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    hint: str = "",
    strict: bool = True,
) -> bool:
    """Compare a student's tensor with an expected one; print ✓ or ✗, relative error and a hint."""
    return _verdict(_check_close(name, actual, expected, rtol=rtol, atol=atol, hint=hint), name, strict)


def check_equal(name: str, actual: Any, expected: Any, *, hint: str = "", strict: bool = True) -> bool:
    """Exact comparison for integer tensors (label maps, indices) or plain Python values."""
    return _verdict(_check_equal(name, actual, expected, hint=hint), name, strict)

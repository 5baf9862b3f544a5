"""The ``student`` proxy a hidden test sees: references to the notebook's names, calls, handles.

``student.NAME`` is a :class:`Ref` (no round trip); calling it runs the call in the kernel and returns plain
data, or a :class:`Handle` to an object that stays there. Exceptions raised in the kernel come back as the
same built-in type, :class:`helpers.checks.ForbiddenCallError`, or :class:`~.errors.StudentError`. Everything
the kernel sends is checked on arrival (:mod:`.protocol`); a reply that is not valid plain data raises
:class:`~.protocol.ProtocolError`, so the case using it fails; so does a result the kernel could not send
(past the protocol's size, item or depth bounds).
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Iterator
from typing import Any

from helpers.checks import ForbiddenCallError
from seglabs_grading.harness import protocol
from seglabs_grading.harness.errors import StudentError

DEFAULT_TIME_LIMIT_S = 60.0
MAX_TEXT = 4000  # longest message or type name kept from the kernel


class Ref:
    """A reference to something in the kernel: a notebook name or a handle, then attribute names."""

    __slots__ = ("_student", "_root", "_path")

    def __init__(self, student: Student, root: list, path: tuple[str, ...] = ()):
        self._student = student
        self._root = root
        self._path = path

    def __getattr__(self, attr: str) -> Ref:
        if attr.startswith("__"):  # copy, pickle and friends probe dunders: never a round trip
            raise AttributeError(attr)
        return Ref(self._student, self._root, (*self._path, attr))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._student._request("call", self, args, kwargs)

    def _target(self) -> dict[str, Any]:
        return {"root": self._root, "path": list(self._path)}

    def __repr__(self) -> str:
        root = self._root[1] if self._root[0] == "name" else f"<handle {self._root[1]}>"
        return f"student.{'.'.join([str(root), *self._path])}"


class Handle(Ref):
    """An object that stays in the kernel (a module, an optimizer, ...); ``claimed_type`` is the kernel's word."""

    __slots__ = ("claimed_type",)

    def __init__(self, student: Student, handle_id: int, claimed_type: str = ""):
        super().__init__(student, ["handle", handle_id])
        self.claimed_type = claimed_type


def _builtin_exception(type_name: str, message: str) -> BaseException | None:
    kind = getattr(builtins, type_name, None)
    if not (isinstance(kind, type) and issubclass(kind, Exception)):
        return None
    try:
        return kind(message)
    except Exception:  # noqa: BLE001 - a built-in whose constructor wants more arguments
        return None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise protocol.ProtocolError("an error's type and message must be strings")
    return value[:MAX_TEXT]


def exception_from(error: Any) -> BaseException:
    """The harness-side exception for an error the kernel reported."""
    if not isinstance(error, dict):
        raise protocol.ProtocolError("a reported error must be an object")
    module, kind, message = _text(error.get("module")), _text(error.get("type")), _text(error.get("message"))
    if module == "builtins":
        err = _builtin_exception(kind, message)
        if err is not None:
            return err
    if (module, kind) == ("helpers.checks", "ForbiddenCallError"):
        return ForbiddenCallError(message)
    if (module, kind) == protocol.ERROR_TYPE:  # the result could not be sent (too large, too deep)
        return protocol.ProtocolError(f"the kernel's reply was refused: {message}")
    return StudentError(f"{module}.{kind}" if module != "builtins" else kind, message)


class Student:
    """The proxy to the student's kernel (``student`` in a hidden block)."""

    def __init__(self, transport: Any, time_limit_s: float = DEFAULT_TIME_LIMIT_S):
        self._transport = transport
        self._forbid: list[tuple[tuple[str, ...], str]] = []
        self._limits = [float(time_limit_s)]

    # --- names ------------------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Ref:
        if name.startswith("_"):
            raise AttributeError(f"{name}: use student[{name!r}] for a notebook name starting with _")
        return Ref(self, ["name", name])

    def __getitem__(self, name: str) -> Ref:
        return Ref(self, ["name", str(name)])

    def has(self, name: str) -> bool:
        """Whether the notebook defines ``name``."""
        return bool(self._request("has", Ref(self, ["name", str(name)])))

    # --- values -----------------------------------------------------------------------------------
    def value(self, ref: Ref) -> Any:
        """The value ``ref`` names: plain data, or a handle."""
        return self._request("value", ref)

    def list(self, ref: Ref) -> list:
        """``list(ref)`` in the kernel: elements plain or handles."""
        result = self._request("list", ref)
        if type(result) is not list:
            raise protocol.ProtocolError("student.list did not get a list back")
        return result

    def type_name(self, ref: Ref) -> str:
        """The kernel's claim of the dotted type name of ``ref`` (use it only to fail a case)."""
        result = self._request("type_name", ref)
        if type(result) is not str:
            raise protocol.ProtocolError("student.type_name did not get a string back")
        return result[:MAX_TEXT]

    def new(self, dotted: str, *args: Any, **kwargs: Any) -> Any:
        """Construct ``dotted`` (in torch, torchvision or helpers) in the kernel; usually returns a handle."""
        if not dotted.startswith(("torch.", "torchvision.", "helpers.")):
            raise ValueError(f"student.new: {dotted!r} must start with torch., torchvision. or helpers.")
        return self._request("new", None, args, kwargs, name=dotted)

    def count_torch_calls(self, ref: Ref, *args: Any, **kwargs: Any) -> tuple[Any, int]:
        """``(ref(*args, **kwargs), torch functions dispatched)``: a claim of the kernel, for kernel_checks."""
        return self._request("call", ref, args, kwargs, count=True)

    # --- contexts ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def forbidding(self, *names: str, hint: str = "") -> Iterator[None]:
        """Every call sent inside runs under ``helpers.checks.forbidden(*names, hint=hint)`` in the kernel."""
        self._forbid.append((tuple(str(n) for n in names), str(hint)))
        try:
            yield
        finally:
            self._forbid.pop()

    @contextlib.contextmanager
    def time_limit(self, seconds: float) -> Iterator[None]:
        """The time limit of every call inside (default 60 s per call)."""
        self._limits.append(float(seconds))
        try:
            yield
        finally:
            self._limits.pop()

    # --- the round trip -----------------------------------------------------------------------------
    def _encode_other(self, value: Any) -> Any:
        if isinstance(value, Handle) and value._student is self and not value._path:
            return {"$": "handle", "id": value._root[1]}
        if isinstance(value, Ref) and value._student is self:
            return protocol.encode(self.value(value), self._encode_other)  # fetch it, then send it back
        raise protocol.NotPlainData(f"cannot send a {type(value).__name__} to the kernel")

    def _handle(self, data: dict[str, Any]) -> Handle:
        claimed = data.get("type", "")
        return Handle(self, data["id"], claimed[:MAX_TEXT] if isinstance(claimed, str) else "")

    def _request(
        self, op: str, ref: Ref | None, args=(), kwargs=None, count: bool = False, name: str = ""
    ) -> Any:
        names = sorted({n for group, _ in self._forbid for n in group})
        hint = next((h for _, h in reversed(self._forbid) if h), "")
        message = {
            "op": op,
            "target": ref._target() if ref is not None else None,
            "args": protocol.encode(list(args), self._encode_other),
            "kwargs": protocol.encode(dict(kwargs or {}), self._encode_other),
            "forbid": {"names": names, "hint": hint} if names else None,
            "count": count,
            "name": name,
        }
        reply = self._transport.request(message, timeout=self._limits[-1])
        return self._result(reply, names, hint, count)

    def _result(self, reply: Any, names: list[str], hint: str, count: bool) -> Any:
        if not isinstance(reply, dict):
            raise protocol.ProtocolError("the kernel's reply is not an object")
        used = reply.get("forbidden") or []
        if type(used) is not list or not all(isinstance(u, str) for u in used):
            raise protocol.ProtocolError("the kernel's list of forbidden calls is malformed")
        if used:  # reported even when the student's code caught the error, or raised another one after it
            called = next((u for u in used if u in names), used[0])[:MAX_TEXT]
            raise ForbiddenCallError(f"`{called}` is not allowed in this exercise. {hint}".strip())
        if "error" in reply:
            raise exception_from(reply["error"])
        if "value" not in reply:
            raise protocol.ProtocolError("the kernel's reply has neither a value nor an error")
        value = protocol.decode(reply["value"], self._handle)
        if not count:
            return value
        calls = reply.get("count")
        if type(calls) is not int or calls < 0:
            raise protocol.ProtocolError("the kernel's operation count is not a non-negative integer")
        return value, calls

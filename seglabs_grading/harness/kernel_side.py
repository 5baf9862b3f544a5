"""The kernel side of the grading harness: inside the student's kernel, answer the harness's requests.

**For whoever starts kernels (the sandbox):** the kernel must be able to import
``seglabs_grading.harness.kernel_side``. It imports only ``json``, ``base64``, ``math``, ``importlib``, ``torch``,
``helpers.checks``, IPython's ``get_ipython`` (to publish a reply on the kernel's IOPub channel) and
:mod:`seglabs_grading.harness.protocol`; it contains no hidden test and no solution. No network, no file and no
socket is used: a request is a silent ``execute_request`` on the Jupyter shell channel the kernel already has
(ipc transport works) whose code calls :func:`serve`; the request's JSON follows as the answer to the kernel's
``input_request`` (stdin channel), and the reply leaves as one ``display_data`` of MIME type
:data:`~seglabs_grading.harness.protocol.MIME` tied to the request's nonce.

Nothing here is trusted: the student's code runs in the same process and may replace any of it. The harness
treats every reply as a claim of the kernel (plain data, checked on arrival), so a forged reply can only give
the harness a value the student's code could have returned anyway.

A request (JSON) is ``{"op": ..., "target": {"root": ["name", NAME] | ["handle", ID], "path": [attr, ...]},
"args": [...], "kwargs": {...}, "forbid": {"names": [...], "hint": ""} | null, "count": bool}``; ops are
``call``, ``value``, ``list``, ``type_name``, ``has``, ``new`` and ``release``.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from helpers import checks
from seglabs_grading.harness import protocol

MAX_HANDLES = 100_000
TRUSTED_PREFIXES = ("torch.", "torchvision.", "helpers.")
_handles: dict[int, Any] = {}
_next_id = [0]


def serve(namespace: dict, nonce: str, request: str | None = None) -> None:
    """Answer one request from the harness: publish the reply (never raises, except on an interrupt).

    Without ``request`` the request is read with ``input()``: the harness answers the kernel's ``input_request``
    on the stdin channel, so a large request never goes through IPython's handling of cell source."""
    if request is None:
        import builtins

        request = builtins.input("")
    text = reply_text(namespace, nonce, request)
    from IPython.core.getipython import get_ipython

    get_ipython().display_pub.publish(data={protocol.MIME: text}, metadata={})


def reply_text(namespace: dict, nonce: str, request: str) -> str:
    """The JSON text of the reply to ``request``: its value, or the error it raised. A result past the protocol's
    bounds (:data:`~.protocol.MAX_MESSAGE_BYTES`, items, depth) is not sent: the reply is that ``ProtocolError``,
    which the harness raises as its own (the case fails, whatever a test catches)."""
    try:
        reply = _answer(namespace, request)
    except KeyboardInterrupt:
        raise  # the harness's time limit interrupted the call: it already stopped waiting
    except BaseException as err:  # noqa: BLE001 - SystemExit from student code is an answer too
        reply = {"error": describe_error(err)}
    try:
        return protocol.dumps({"nonce": nonce, **reply})
    except (protocol.ProtocolError, TypeError, ValueError, RecursionError) as err:
        return protocol.dumps({"nonce": nonce, "error": describe_error(err)})


def describe_error(err: BaseException) -> dict[str, str]:
    """An exception as plain data: its type's module and name, and its message (bounded)."""
    kind = type(err)
    try:
        message = str(err)[:4000]
    except Exception:  # noqa: BLE001 - a hostile __str__
        message = "(no message)"
    return {"module": str(kind.__module__), "type": str(kind.__qualname__), "message": message}


def _handle(value: Any) -> dict[str, Any]:
    if len(_handles) >= MAX_HANDLES:
        raise MemoryError(f"more than {MAX_HANDLES} objects held for the harness")
    _next_id[0] += 1
    _handles[_next_id[0]] = value
    return {"$": "handle", "id": _next_id[0], "type": _type_name(value)}


def _type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def _lookup(handle: dict[str, Any]) -> Any:
    if handle["id"] not in _handles:
        raise protocol.ProtocolError(f"no object with handle {handle['id']} in the kernel")
    return _handles[handle["id"]]


def _resolve(namespace: dict, target: Any) -> Any:
    root, path = target["root"], target.get("path", [])
    if root[0] == "name":
        if root[1] not in namespace:
            raise NameError(f"`{root[1]}` is not defined — did its cell run?")
        value = namespace[root[1]]
    else:
        value = _lookup({"id": root[1]})
    for attr in path:
        value = getattr(value, attr)
    return value


class _CountTorchCalls(torch.overrides.TorchFunctionMode):
    """Counts every torch function dispatched while active (a claim of the kernel)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def _new(dotted: str, args: list, kwargs: dict) -> Any:
    if not dotted.startswith(TRUSTED_PREFIXES):
        raise ValueError(f"student.new: {dotted!r} is not in torch, torchvision or helpers")
    module_name, _, attr = dotted.rpartition(".")
    owner: Any = None
    while module_name:
        try:
            owner = importlib.import_module(module_name)
            break
        except ImportError:
            module_name, _, outer = module_name.rpartition(".")
            attr = f"{outer}.{attr}"
    if owner is None:
        raise ValueError(f"student.new: cannot import {dotted!r}")
    for part in attr.split("."):
        owner = getattr(owner, part)
    return owner(*args, **kwargs)


def _run(namespace: dict, req: dict[str, Any], args: list, kwargs: dict) -> Any:
    op = req["op"]
    if op == "has":
        return req["target"]["root"][1] in namespace
    if op == "release":
        for handle_id in args:
            _handles.pop(handle_id, None)
        return None
    if op == "new":
        return _new(str(req["name"]), args, kwargs)
    target = _resolve(namespace, req["target"])
    if op == "call":
        return target(*args, **kwargs)
    if op == "value":
        return target
    if op == "list":
        return list(target)
    if op == "type_name":
        return _type_name(target)
    raise ValueError(f"unknown request {op!r}")


def _answer(namespace: dict, request: str) -> dict[str, Any]:
    req = protocol.loads(request)
    args = protocol.decode(req.get("args", {"$": "list", "v": []}), _lookup)
    kwargs = protocol.decode(req.get("kwargs", {"$": "dict", "v": []}), _lookup)
    forbid = req.get("forbid") or {"names": [], "hint": ""}
    used: list[str] = []
    counter = _CountTorchCalls() if req.get("count") else None
    try:
        with checks.forbidden(*forbid["names"], namespace=namespace, hint=forbid["hint"], record=used):
            if counter is None:
                result = _run(namespace, req, args, kwargs)
            else:
                with counter:
                    result = _run(namespace, req, args, kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - the student's exception (SystemExit too) is the answer
        return {"error": describe_error(err), "forbidden": used}
    return {
        "value": protocol.encode(result, _handle),
        "forbidden": used,
        "count": None if counter is None else counter.count,
    }

"""Plain data between the grading harness and the student's kernel: JSON with tagged values, never pickle.

Shared by both sides (:mod:`.kernel_side` imports it inside the kernel), so it imports only ``json``,
``base64``, ``math`` and ``torch``.

What crosses: ``None``, ``bool``, ``int``, ``float`` (NaN and infinities included), ``str``, ``torch.Tensor``
(any plain dtype, raw bytes in base64, always a CPU tensor on arrival), ``torch.Size`` (arrives as a ``tuple``),
and ``list``, ``tuple``, ``dict`` (keys ``str`` or ``int``) of those, plus *handles* (an id naming an object that
stays in the kernel). Every JSON value is either a bare scalar (``null``, ``true``/``false``, an integer, a
finite float, a string) or an object tagged by ``"$"``:

    {"$": "f", "v": "nan"}                                 a non-finite float
    {"$": "list", "v": [...]}   {"$": "tuple", "v": [...]}   {"$": "dict", "v": [[key, value], ...]}
    {"$": "tensor", "dtype": "float32", "shape": [2, 3], "b64": "..."}
    {"$": "handle", "id": 7, "type": "torch.nn.modules.conv.Conv2d"}

Decoding is strict (every field checked, sizes bounded): whatever the kernel sends, the harness either gets
plain values or a :class:`ProtocolError`, never an object of a type the kernel chose.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from typing import Any

import torch

from seglabs_grading.harness.errors import HarnessFailure

MAX_MESSAGE_BYTES = 64 << 20  # one request or reply, encoded
MAX_DEPTH = 32  # nesting of lists, tuples and dicts
MAX_ITEMS = 1_000_000  # values in one message
MIME = "application/vnd.seglabs.harness+json"  # the display_data type a reply travels in
ERROR_TYPE = (__name__, "ProtocolError")  # how a refusal by the protocol is reported as the kernel's error


def too_large(what: str, size: int) -> str:
    """The message for something past :data:`MAX_MESSAGE_BYTES`, in MiB."""
    return (
        f"{what} of {size / (1 << 20):.1f} MiB is more than one message between the grader and the kernel may "
        f"carry ({MAX_MESSAGE_BYTES / (1 << 20):g} MiB)"
    )


DTYPES: dict[str, torch.dtype] = {
    name: getattr(torch, name)
    for name in (
        "float16",
        "bfloat16",
        "float32",
        "float64",
        "complex64",
        "complex128",
        "uint8",
        "int8",
        "int16",
        "int32",
        "int64",
        "bool",
    )  # fmt: skip
}
_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


class ProtocolError(HarnessFailure):
    """A message that is not valid plain data (wrong types, too large, too deep, malformed)."""


class NotPlainData(HarnessFailure):
    """A value the harness tried to send that is not plain data (and not a handle)."""


class _Budget:
    """Counts values while encoding or decoding one message."""

    def __init__(self) -> None:
        self.items = 0

    def take(self, depth: int) -> None:
        self.items += 1
        if self.items > MAX_ITEMS:
            raise ProtocolError(f"more than {MAX_ITEMS} values in one message")
        if depth > MAX_DEPTH:
            raise ProtocolError(f"nested deeper than {MAX_DEPTH} levels")


# --- encoding ---------------------------------------------------------------------------------------
def encode_tensor(t: torch.Tensor) -> dict[str, Any]:
    """A tensor as raw bytes (detached, on the CPU, contiguous); its subclass, device and grad are dropped."""
    dtype = _DTYPE_NAMES.get(t.dtype)
    if dtype is None or t.layout != torch.strided or t.is_quantized:
        raise NotPlainData(f"a tensor of dtype {t.dtype} and layout {t.layout} is not plain data")
    plain = torch.Tensor.as_subclass(t, torch.Tensor).detach().to("cpu").contiguous()
    raw = plain.reshape(-1).view(torch.uint8).numpy().tobytes() if plain.numel() else b""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(too_large("a tensor", len(raw)))
    return {"$": "tensor", "dtype": dtype, "shape": list(plain.shape), "b64": base64.b64encode(raw).decode()}


def encode(value: Any, other: Callable[[Any], dict[str, Any]] | None = None) -> Any:
    """``value`` as JSON-able data. ``other`` encodes anything that is not plain (the kernel makes handles);
    without it such a value raises :class:`NotPlainData`."""
    return _encode(value, other, _Budget(), 0)


def _encode(value: Any, other: Callable[[Any], Any] | None, budget: _Budget, depth: int) -> Any:
    budget.take(depth)
    if value is None:
        return None
    if isinstance(value, bool):  # subclasses (e.g. a student's) become the plain built-in value
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        number = float(value)
        return number if math.isfinite(number) else {"$": "f", "v": repr(number)}
    if isinstance(value, str):
        return str(value)
    if isinstance(value, torch.Tensor):
        try:
            return encode_tensor(value)
        except NotPlainData:
            if other is None:
                raise
            return other(value)
    if isinstance(value, (list, tuple)):  # torch.Size and named tuples are tuples
        tag = "list" if isinstance(value, list) else "tuple"
        return {"$": tag, "v": [_encode(v, other, budget, depth + 1) for v in value]}
    if isinstance(value, dict):  # an OrderedDict (a state_dict) is a dict
        items = []
        for key, v in value.items():
            if type(key) not in (str, int):
                if other is None:
                    raise NotPlainData(f"dict key {key!r} is not a str or int")
                return other(value)
            items.append([key, _encode(v, other, budget, depth + 1)])
        return {"$": "dict", "v": items}
    if other is None:
        kind = type(value)
        raise NotPlainData(f"a {kind.__module__}.{kind.__qualname__} is not plain data")
    return other(value)


def dumps(message: Any) -> str:
    """JSON text of an already encoded message, refused when over :data:`MAX_MESSAGE_BYTES`."""
    text = json.dumps(message, allow_nan=False, separators=(",", ":"))
    if len(text) > MAX_MESSAGE_BYTES:
        raise ProtocolError(too_large("a message (encoded)", len(text)))
    return text


# --- decoding ---------------------------------------------------------------------------------------
def loads(text: Any) -> Any:
    """Parse JSON text of at most :data:`MAX_MESSAGE_BYTES` (not yet decoded into values)."""
    if not isinstance(text, str):
        raise ProtocolError(f"a message must be JSON text, got {type(text).__name__}")
    if len(text) > MAX_MESSAGE_BYTES:
        raise ProtocolError(too_large("a message (encoded)", len(text)))
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as err:
        raise ProtocolError(f"not valid JSON: {str(err)[:200]}") from None


def _no_constant(name: str) -> Any:
    raise ProtocolError(f"bare {name} is not allowed (non-finite floats are tagged)")


def decode_tensor(obj: dict[str, Any]) -> torch.Tensor:
    dtype = DTYPES.get(obj.get("dtype")) if isinstance(obj.get("dtype"), str) else None
    shape, b64 = obj.get("shape"), obj.get("b64")
    if dtype is None:
        raise ProtocolError(f"unknown tensor dtype {str(obj.get('dtype'))[:40]!r}")
    if type(shape) is not list or len(shape) > 64 or any(type(s) is not int or s < 0 for s in shape):
        raise ProtocolError("a tensor's shape must be a list of at most 64 non-negative integers")
    if type(b64) is not str:
        raise ProtocolError("a tensor's data must be a base64 string")
    numel = math.prod(shape)
    size = numel * torch.empty((), dtype=dtype).element_size()
    if size > MAX_MESSAGE_BYTES or len(b64) != 4 * math.ceil(size / 3):
        raise ProtocolError(f"tensor data does not match shape {shape} and dtype {obj['dtype']}")
    try:
        raw = base64.b64decode(b64, validate=True)
    except ValueError:
        raise ProtocolError("tensor data is not valid base64") from None
    if len(raw) != size:
        raise ProtocolError(f"tensor data does not match shape {shape} and dtype {obj['dtype']}")
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape).clone()


def decode(data: Any, handle: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """Values from parsed JSON. ``handle`` turns a handle object into the receiving side's handle;
    without it a handle is a :class:`ProtocolError`."""
    return _decode(data, handle, _Budget(), 0)


def _decode(data: Any, handle: Callable[[dict[str, Any]], Any] | None, budget: _Budget, depth: int) -> Any:
    budget.take(depth)
    kind = type(data)
    if data is None or kind in (bool, int, str):
        return data
    if kind is float:
        if not math.isfinite(data):
            raise ProtocolError("non-finite floats must be tagged")
        return data
    if kind is not dict:
        raise ProtocolError(f"unexpected JSON {kind.__name__} (lists travel tagged)")
    tag = data.get("$")
    if tag == "f" and data.get("v") in ("nan", "inf", "-inf"):
        return float(data["v"])
    if tag in ("list", "tuple") and type(data.get("v")) is list:
        items = [_decode(v, handle, budget, depth + 1) for v in data["v"]]
        return items if tag == "list" else tuple(items)
    if tag == "dict" and type(data.get("v")) is list:
        out: dict[Any, Any] = {}
        for pair in data["v"]:
            if type(pair) is not list or len(pair) != 2 or type(pair[0]) not in (str, int):
                raise ProtocolError("dict items must be [key, value] pairs with str or int keys")
            out[pair[0]] = _decode(pair[1], handle, budget, depth + 1)
        return out
    if tag == "tensor":
        return decode_tensor(data)
    if tag == "handle" and handle is not None and type(data.get("id")) is int:
        return handle(data)
    raise ProtocolError(f"unknown or malformed value tagged {str(tag)[:40]!r}")

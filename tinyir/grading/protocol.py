"""The data-only wire format between the grader and a student's process. Never pickle.

A message is one JSON object plus raw binary blobs, framed as

    [u32 json length][json bytes][u32 blob count]([u64 blob length][blob bytes])*

Values are encoded as JSON with tagged objects for what JSON lacks, and every array travels as
dtype + shape + raw bytes:

    None, bool, int, float, str          themselves (non-finite floats as {"$float": "nan"})
    list / tuple / set / frozenset       {"$list": [...]} / {"$tuple": ...} / {"$set": ...}
    dict                                 {"$dict": [[key, value], ...]}
    bytes                                {"$bytes": blob index}
    torch.Tensor                         {"$tensor": {"dtype", "shape", "blob"}}
    numpy.ndarray / numpy scalar         {"$ndarray": {...}} / {"$npscalar": {...}}
    anything else                        {"$ref": id, "type": "module.Qualname"}: a handle to an
                                         object that stays in the process that owns it
    a function of the grader             {"$callback": id}

``decode`` rebuilds exact base types only (``torch.Tensor``, ``numpy.ndarray``, ``list`` ...):
no class named by the other side is ever imported or instantiated, so what a student returns
cannot run code in the grader, and a subclass cannot lie to a comparison: it arrives as the
bytes of its data or, when it is not plain data, as a handle the checks reject.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable
from typing import Any

MAX_MESSAGE_BYTES = 64 * 2**20  # one reply; more is a protocol error, not an allocation
MAX_DEPTH = 64
MAX_ITEMS = 2_000_000
TENSOR_DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "uint8", "int16", "int32",
                 "int64", "bool", "complex64", "complex128")
NUMPY_DTYPES = ("float16", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
                "uint32", "int64", "uint64", "bool", "complex64", "complex128")


class ProtocolError(Exception):
    """A message that is not well-formed: cut short, too large, or not in this format."""


# -- framing -----------------------------------------------------------------------------------


def _read_exact(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the channel")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_message(fd: int, header: dict[str, Any], blobs: list[bytes] = ()) -> None:
    body = json.dumps(header, ensure_ascii=True, allow_nan=False).encode()
    parts = [struct.pack("<I", len(body)), body, struct.pack("<I", len(blobs))]
    for blob in blobs:
        parts += [struct.pack("<Q", len(blob)), blob]
    data = b"".join(parts)
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_message(
    fd: int, max_bytes: int = MAX_MESSAGE_BYTES, read_exact: Callable[[int, int], bytes] = _read_exact
) -> tuple[dict[str, Any], list[bytes]]:
    """One message from ``fd``; ``read_exact(fd, n)`` may add a deadline (the grader's does)."""
    (size,) = struct.unpack("<I", read_exact(fd, 4))
    if size > max_bytes:
        raise ProtocolError(f"a message of {size} bytes (the limit is {max_bytes})")
    try:
        header = json.loads(read_exact(fd, size))
    except (ValueError, UnicodeDecodeError) as err:
        raise ProtocolError(f"a message that is not JSON: {err}") from None
    if not isinstance(header, dict):
        raise ProtocolError("a message that is not a JSON object")
    (count,) = struct.unpack("<I", read_exact(fd, 4))
    if count > 100_000:
        raise ProtocolError(f"a message with {count} blobs")
    blobs, total = [], size
    for _ in range(count):
        (length,) = struct.unpack("<Q", read_exact(fd, 8))
        total += length
        if total > max_bytes:
            raise ProtocolError(f"a message over {max_bytes} bytes")
        blobs.append(read_exact(fd, length))
    return header, blobs


# -- values ------------------------------------------------------------------------------------


def _qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls.__name__)}"


def encode(value: Any, blobs: list[bytes], make_ref: Callable[[Any], dict[str, Any]]) -> Any:
    """``value`` as JSON-able data; arrays go to ``blobs``; other objects through ``make_ref``."""
    return _encode(value, blobs, make_ref, 0)


def _encode(value: Any, blobs: list[bytes], make_ref: Callable, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise ProtocolError(f"a value nested deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if value is None or kind in (bool, str):
        return value
    if kind is int:
        if abs(value) >= 2**63:
            return {"$bigint": str(value)}
        return value
    if kind is float:
        return value if math.isfinite(value) else {"$float": repr(value)}
    if kind in (list, tuple, set, frozenset):
        tag = {list: "$list", tuple: "$tuple", set: "$set", frozenset: "$frozenset"}[kind]
        items = list(value)
        if kind in (set, frozenset):
            try:
                items = sorted(items)
            except TypeError:
                pass
        return {tag: [_encode(v, blobs, make_ref, depth + 1) for v in items]}
    if kind is dict or _is_plain_dict_subclass(value):
        return {"$dict": [[_encode(k, blobs, make_ref, depth + 1),
                           _encode(v, blobs, make_ref, depth + 1)] for k, v in value.items()]}
    if kind is bytes:
        blobs.append(bytes(value))
        return {"$bytes": len(blobs) - 1}
    encoded = _encode_array(value, blobs)
    if encoded is not None:
        return encoded
    return make_ref(value)


def _is_plain_dict_subclass(value: Any) -> bool:
    """OrderedDict (``state_dict()``) travels as a dict: only its items cross, never its class."""
    import collections

    return type(value) is collections.OrderedDict


def _encode_array(value: Any, blobs: list[bytes]) -> dict[str, Any] | None:
    module = type(value).__module__
    if module.startswith("torch"):
        import torch

        if type(value) in (torch.Tensor, torch.nn.Parameter):
            t = value.detach().to("cpu").contiguous()
            dtype = str(t.dtype).removeprefix("torch.")
            if dtype not in TENSOR_DTYPES:
                return None
            raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
            blobs.append(raw)
            return {"$tensor": {"dtype": dtype, "shape": list(t.shape), "blob": len(blobs) - 1}}
        return None
    if module == "numpy":
        import numpy as np

        if type(value) is np.ndarray and value.dtype.name in NUMPY_DTYPES:
            blobs.append(np.ascontiguousarray(value).tobytes())
            return {"$ndarray": {"dtype": value.dtype.name, "shape": list(value.shape),
                                 "blob": len(blobs) - 1}}
        if isinstance(value, np.generic) and type(value) is np.dtype(type(value)).type \
                and np.dtype(type(value)).name in NUMPY_DTYPES:
            blobs.append(np.asarray(value).tobytes())
            return {"$npscalar": {"dtype": np.dtype(type(value)).name, "blob": len(blobs) - 1}}
    return None


def decode(data: Any, blobs: list[bytes], resolve: Callable[[dict[str, Any]], Any]) -> Any:
    """Rebuild a value from ``encode``'s output; ``resolve`` turns $ref/$callback into objects."""
    counter = [0]
    return _decode(data, blobs, resolve, 0, counter)


def _decode(data: Any, blobs: list[bytes], resolve: Callable, depth: int, counter: list) -> Any:
    if depth > MAX_DEPTH:
        raise ProtocolError(f"a value nested deeper than {MAX_DEPTH} levels")
    counter[0] += 1
    if counter[0] > MAX_ITEMS:
        raise ProtocolError(f"a value with more than {MAX_ITEMS} items")
    if data is None or type(data) in (bool, str, float):
        return data
    if type(data) is int:
        return data
    if type(data) is list:  # bare JSON lists are never produced by encode
        raise ProtocolError("an untagged list")
    if type(data) is dict and ("$ref" in data or "$callback" in data):
        return resolve(data)
    if type(data) is not dict or len(data) != 1:
        raise ProtocolError(f"an unknown value of JSON type {type(data).__name__}")
    tag = next(iter(data))
    body = data[tag]
    try:
        if tag in ("$list", "$tuple", "$set", "$frozenset"):
            if type(body) is not list:
                raise ProtocolError(f"{tag} without a list")
            items = [_decode(v, blobs, resolve, depth + 1, counter) for v in body]
            return {"$list": list, "$tuple": tuple, "$set": set, "$frozenset": frozenset}[tag](items)
        if tag == "$dict":
            if type(body) is not list or any(type(p) is not list or len(p) != 2 for p in body):
                raise ProtocolError("$dict without [key, value] pairs")
            return {_decode(k, blobs, resolve, depth + 1, counter):
                    _decode(v, blobs, resolve, depth + 1, counter) for k, v in body}
        if tag == "$float":
            if body not in ("nan", "inf", "-inf"):
                raise ProtocolError(f"$float {body!r}")
            return float(body)
        if tag == "$bigint":
            if type(body) is not str or len(body) > 4000:
                raise ProtocolError("$bigint that is not a short string")
            return int(body)
        if tag == "$bytes":
            return bytes(_blob(blobs, body))
        if tag == "$tensor":
            return _decode_tensor(body, blobs)
        if tag in ("$ndarray", "$npscalar"):
            return _decode_numpy(tag, body, blobs)
    except (TypeError, ValueError, KeyError, OverflowError, RuntimeError) as err:
        if isinstance(err, ProtocolError):
            raise
        raise ProtocolError(f"a malformed {tag}: {err}") from None
    raise ProtocolError(f"an unknown tag {tag!r}")


def _blob(blobs: list[bytes], index: Any) -> bytes:
    if type(index) is not int or not 0 <= index < len(blobs):
        raise ProtocolError(f"a blob index out of range: {index!r}")
    return blobs[index]


def _shape(shape: Any) -> tuple[int, ...]:
    if type(shape) is not list or len(shape) > 32 or any(
            type(s) is not int or s < 0 for s in shape):
        raise ProtocolError(f"a shape that is not a list of sizes: {shape!r}")
    return tuple(shape)


def _decode_tensor(body: Any, blobs: list[bytes]) -> Any:
    import torch

    dtype_name = body["dtype"]
    if dtype_name not in TENSOR_DTYPES:
        raise ProtocolError(f"a tensor of dtype {dtype_name!r}")
    dtype, shape = getattr(torch, dtype_name), _shape(body["shape"])
    raw = _blob(blobs, body["blob"])
    numel = math.prod(shape)
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(raw) != numel * itemsize:
        raise ProtocolError(f"a tensor of shape {shape} with {len(raw)} bytes")
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)


def _decode_numpy(tag: str, body: Any, blobs: list[bytes]) -> Any:
    import numpy as np

    dtype_name = body["dtype"]
    if dtype_name not in NUMPY_DTYPES:
        raise ProtocolError(f"an array of dtype {dtype_name!r}")
    dtype = np.dtype(dtype_name)
    raw = _blob(blobs, body["blob"])
    shape = () if tag == "$npscalar" else _shape(body["shape"])
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise ProtocolError(f"an array of shape {shape} with {len(raw)} bytes")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    return array[()] if tag == "$npscalar" else array

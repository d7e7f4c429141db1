"""A small protobuf (proto2) wire-format decoder driven by a table of fields, so that CRIU images
can be read without protobuf, crit or CRIU installed.

A schema maps a message name to its fields: number -> (name, type, label). Types are the scalar
names of .proto files (uint32, uint64, int32, int64, sint32, sint64, bool, enum, string, bytes,
fixed32, fixed64) or another message's name. Labels: "required", "optional", "repeated" (packed
or not). Fields not in the table are checked for well-formedness and skipped, as protobuf does.
Every defect raises WireError with the byte offset, so callers can name the file.
"""

from __future__ import annotations

import struct
from typing import Any

Field = tuple[str, str, str]  # name, type, label
Schema = dict[str, dict[int, Field]]

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
_WIRE_OF = {"uint32": VARINT, "uint64": VARINT, "int32": VARINT, "int64": VARINT,
            "sint32": VARINT, "sint64": VARINT, "bool": VARINT, "enum": VARINT,
            "string": LEN, "bytes": LEN, "fixed32": FIXED32, "fixed64": FIXED64}


class WireError(Exception):
    """Malformed or truncated protobuf data; the message says where."""


def varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode a base-128 varint at pos; return (value, next position)."""
    result = shift = 0
    while True:
        if pos >= end:
            raise WireError(f"truncated varint at byte {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError(f"varint longer than 10 bytes at byte {pos}")


def _scalar(typ: str, wire: int, buf: bytes, pos: int, end: int) -> tuple[Any, int]:
    if wire == VARINT:
        v, pos = varint(buf, pos, end)
        if typ == "uint32" and v > 0xFFFFFFFF:
            raise WireError(f"uint32 value {v} out of range before byte {pos}")
        if typ in ("int32", "int64", "enum") and v >= 1 << 63:
            v -= 1 << 64
        elif typ in ("sint32", "sint64"):
            v = (v >> 1) ^ -(v & 1)
        elif typ == "bool":
            v = bool(v)
        return v, pos
    if wire == FIXED32:
        if pos + 4 > end:
            raise WireError(f"truncated fixed32 at byte {pos}")
        return struct.unpack_from("<I", buf, pos)[0], pos + 4
    if pos + 8 > end:
        raise WireError(f"truncated fixed64 at byte {pos}")
    return struct.unpack_from("<Q", buf, pos)[0], pos + 8


def _skip(wire: int, buf: bytes, pos: int, end: int) -> int:
    if wire == VARINT:
        return varint(buf, pos, end)[1]
    if wire == FIXED64:
        pos += 8
    elif wire == FIXED32:
        pos += 4
    elif wire == LEN:
        n, pos = varint(buf, pos, end)
        pos += n
    else:
        raise WireError(f"wire type {wire} (groups or invalid) at byte {pos}")
    if pos > end:
        raise WireError(f"field runs past the end of its message (byte {end})")
    return pos


def decode(schema: Schema, msg: str, buf: bytes, pos: int = 0, end: int | None = None
           ) -> dict[str, Any]:
    """Decode one message of type `msg` from buf[pos:end] into a dict of the fields the schema
    names (repeated fields as lists); raise WireError on any defect or missing required field."""
    end = len(buf) if end is None else end
    fields = schema[msg]
    out: dict[str, Any] = {name: [] for name, _, label in fields.values() if label == "repeated"}
    while pos < end:
        key, pos = varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {pos}")
        f = fields.get(number)
        if f is None:
            pos = _skip(wire, buf, pos, end)
            continue
        name, typ, label = f
        if typ in schema:  # a sub-message
            if wire != LEN:
                raise WireError(f"{msg}.{name}: wire type {wire}, expected {LEN} (byte {pos})")
            n, pos = varint(buf, pos, end)
            if pos + n > end:
                raise WireError(f"{msg}.{name}: runs past the end of its message (byte {end})")
            value: Any = decode(schema, typ, buf, pos, pos + n)
            pos += n
        elif wire == LEN and label == "repeated" and _WIRE_OF[typ] != LEN:  # packed
            n, pos = varint(buf, pos, end)
            stop = pos + n
            if stop > end:
                raise WireError(f"{msg}.{name}: packed field runs past the end (byte {end})")
            while pos < stop:
                v, pos = _scalar(typ, _WIRE_OF[typ], buf, pos, stop)
                out[name].append(v)
            continue
        elif wire != _WIRE_OF[typ]:
            raise WireError(f"{msg}.{name}: wire type {wire}, expected {_WIRE_OF[typ]} "
                            f"(byte {pos})")
        elif wire == LEN:
            n, pos = varint(buf, pos, end)
            if pos + n > end:
                raise WireError(f"{msg}.{name}: runs past the end of its message (byte {end})")
            raw = bytes(buf[pos : pos + n])
            pos += n
            if typ == "string":
                try:
                    value = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise WireError(f"{msg}.{name}: not UTF-8 text") from None
            else:
                value = raw
        else:
            value, pos = _scalar(typ, wire, buf, pos, end)
        if label == "repeated":
            out[name].append(value)
        else:
            out[name] = value
    for name, _, label in fields.values():
        if label == "required" and name not in out:
            raise WireError(f"{msg}: required field {name} is missing")
    return out

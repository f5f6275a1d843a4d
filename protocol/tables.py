"""Field tables edited at the byte level, so that what a publisher sent survives untouched.

Decoding a table with pamqp and encoding it again loses the wire type of every value (a 32-bit
``I`` may come back as ``b``) and sorts the keys. RabbitMQ keeps both when it adds headers
(dead-lettering, x-delivery-count), so we split a table into (key, raw value) pairs, change only
the pairs we own and join them again. The small encoders write values with the types RabbitMQ
uses for its own headers (``l`` counts, ``S`` strings, ``T`` times, ``A`` arrays, ``F`` tables).
"""

from __future__ import annotations

import datetime
import struct
from typing import Any

# A decoded field table (queue and consumer arguments, message headers, client properties).
# Its values may be any AMQP field type, nested tables and arrays included, and a peer may send
# any of them: readers check the type of what they read (isinstance) or rely on the argument
# validation that already did, so Any here rather than pamqp's FieldValue union, which would
# need narrowing at every read even after validation.
Table = dict[str, Any]

_u32 = struct.Struct(">I")
_FIXED = {b"t": 1, b"b": 1, b"B": 1, b"s": 2, b"u": 2, b"I": 4, b"i": 4, b"l": 8, b"L": 8,
          b"f": 4, b"d": 8, b"D": 5, b"T": 8, b"V": 0}
_SIZED = frozenset((b"S", b"x", b"F", b"A"))


class UnknownTag(ValueError):
    """A field value whose type tag AMQP does not define."""


def value_length(raw: bytes | memoryview, pos: int) -> int:
    """Length of the typed value starting at pos (tag byte included)."""
    tag = bytes(raw[pos:pos + 1])
    if tag in _FIXED:
        return 1 + _FIXED[tag]
    if tag in _SIZED:
        size: int = _u32.unpack_from(raw, pos + 1)[0]
        return 5 + size
    if not tag:
        raise IndexError("truncated table")
    raise UnknownTag(f"unknown field type {tag!r}")


def split_table(body: bytes) -> list[tuple[str, bytes]]:
    """A table's content (without its 4-byte length) as (key, raw typed value) pairs."""
    items = []
    pos, end = 0, len(body)
    while pos < end:
        n = body[pos]
        key = body[pos + 1:pos + 1 + n].decode("utf-8", "replace")
        pos += 1 + n
        size = value_length(body, pos)
        items.append((key, body[pos:pos + size]))
        pos += size
    return items


def join_table(items: list[tuple[str, bytes]]) -> bytes:
    """A table's content (without its length) from (key, raw typed value) pairs."""
    parts = []
    for key, value in items:
        raw_key = key.encode()
        parts.append(bytes((len(raw_key),)) + raw_key + value)
    return b"".join(parts)


def split_array(body: bytes) -> list[bytes]:
    values = []
    pos = 0
    while pos < len(body):
        size = value_length(body, pos)
        values.append(body[pos:pos + size])
        pos += size
    return values


# ---- typed value encoders (tag included) ---------------------------------------------------
def long_value(value: int) -> bytes:
    return b"l" + struct.pack(">q", value)


def str_value(value: str) -> bytes:
    raw = value.encode()
    return b"S" + _u32.pack(len(raw)) + raw


def time_value(value: datetime.datetime) -> bytes:
    return b"T" + struct.pack(">Q", int(value.timestamp()))


def array_value(values: list[bytes]) -> bytes:
    body = b"".join(values)
    return b"A" + _u32.pack(len(body)) + body


def table_value(items: list[tuple[str, bytes]]) -> bytes:
    body = join_table(items)
    return b"F" + _u32.pack(len(body)) + body


def inner(value: bytes) -> bytes:
    """The content of a raw ``F`` or ``A`` value, without tag and length."""
    return value[5:]


def read_long(value: bytes) -> int | None:
    """An integer header value of any integer type, or None."""
    tag = value[:1]
    fmt = {b"b": ">b", b"B": ">B", b"s": ">h", b"u": ">H", b"I": ">i", b"i": ">I", b"l": ">q",
           b"L": ">Q"}.get(tag)
    return struct.unpack(fmt, value[1:])[0] if fmt else None


def read_str(value: bytes) -> str | None:
    if value[:1] != b"S":
        return None
    return value[5:].decode("utf-8", "replace")


# ---- numbers that remember their wire type ---------------------------------------------------
class TypedInt(int):
    """An argument's integer with the AMQP type it came in: RabbitMQ names that type in its
    texts ("received the value '1000' of type 'short'"). Equal to (and usable as) the int."""

    __slots__ = ()
    amqp_type = "signedint"


class TypedFloat(float):
    """The same for a floating point argument (``f`` float, ``d`` double)."""

    __slots__ = ()
    amqp_type = "double"


def _typed(base: type, name: str) -> type:
    return type(f"{base.__name__}_{name}", (base,), {"__slots__": (), "amqp_type": name})


# RabbitMQ's names of the numeric field types (rabbit_binary_parser / rabbit_misc).
_TYPED: dict[bytes, type] = {tag: _typed(TypedInt, name) for tag, name in (
    (b"b", "byte"), (b"B", "unsignedbyte"), (b"s", "short"), (b"u", "unsignedshort"),
    (b"I", "signedint"), (b"i", "unsignedint"), (b"l", "long"), (b"L", "long"))}
_TYPED.update({b"f": _typed(TypedFloat, "float"), b"d": _typed(TypedFloat, "double")})


_BY_NAME: dict[str, type] = {cls.__dict__["amqp_type"]: cls for cls in _TYPED.values()}


def wire_types(table: Table) -> dict[str, str]:
    """The AMQP type of each of ``table``'s top-level numbers that remembers one (to keep it
    where the table is stored: the durable definitions)."""
    return {key: value.amqp_type for key, value in table.items()
            if isinstance(value, TypedInt | TypedFloat)}


def with_wire_types(table: Table, types: dict[str, str]) -> Table:
    """A copy of ``table`` whose numbers named in ``types`` (``wire_types``' answer) have
    that AMQP type again; unknown names and non-numbers are left as they are."""
    out = dict(table)
    for key, name in types.items():
        cls = _BY_NAME.get(name)
        value = out.get(key)
        if cls is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if issubclass(cls, TypedInt) and not isinstance(value, int):
            continue
        out[key] = cls(value)
    return out


def tag_numbers(table: Table, body: bytes) -> None:
    """Replace ``table``'s top-level numbers (decoded from ``body``, the table's content
    without its length) by ``TypedInt`` / ``TypedFloat`` of their wire type."""
    for key, raw in split_table(body):
        cls = _TYPED.get(raw[:1])
        value = table.get(key)
        if cls is not None and isinstance(value, int | float) and not isinstance(value, bool):
            table[key] = cls(value)

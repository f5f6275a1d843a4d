"""Method-level decoding helpers for the connection machine.

Hand-written parsing of basic.publish arguments (hot path), SASL responses, the argument-length
walk that detects trailing junk, and access.request, which pamqp's 0-9-1 spec no longer has.
"""

from __future__ import annotations

import struct
from typing import ClassVar

from pamqp import commands, decode

from . import tables

_u32 = struct.Struct(">I")


class AccessRequest(commands.base.Frame):
    """access.request (30/10): gone from 0-9-1's pamqp, still sent by old clients."""

    __slots__: ClassVar[list[str]] = []
    index = 0x001E000A
    name = "Access.Request"

    def unmarshal(self, data: bytes) -> None:
        """Its fields (realm, flags) are deprecated and ignored."""


class AccessRequestOk(commands.base.Frame):
    __slots__ = ["ticket"]
    index = 0x001E000B
    name = "Access.RequestOk"
    _ticket = "short"

    def __init__(self, ticket: int = 1) -> None:
        self.ticket = ticket


MAX_TABLE_DEPTH = 64


class UnknownFieldType(ValueError):
    """A table value with a type tag AMQP does not define: RabbitMQ drops the socket."""


def table_depth_ok(data: bytes, pos: int, end: int, depth: int = 0) -> bool:
    """A field table or array nested at most MAX_TABLE_DEPTH deep, every length in bounds.

    pamqp's decoder copies the rest of the buffer at each level and recurses, so a small frame
    nesting thousands deep costs a lot of memory or overflows the stack: refuse it first."""
    if depth > MAX_TABLE_DEPTH:
        return False
    try:
        while pos < end:
            pos += 1 + data[pos]  # key
            tag = data[pos:pos + 1]
            size = tables.value_length(data, pos)
            if tag in (b"F", b"A"):
                inner_end = pos + size
                if inner_end > end:
                    return False
                walker = table_depth_ok if tag == b"F" else _array_depth_ok
                if not walker(data, pos + 5, inner_end, depth + 1):
                    return False
            pos += size
    except tables.UnknownTag:
        raise UnknownFieldType("unknown field type") from None
    except (IndexError, ValueError, struct.error):
        return False
    return pos == end


def _array_depth_ok(data: bytes, pos: int, end: int, depth: int) -> bool:
    if depth > MAX_TABLE_DEPTH:
        return False
    while pos < end:
        tag = data[pos:pos + 1]
        size = tables.value_length(data, pos)
        if tag in (b"F", b"A"):
            walker = table_depth_ok if tag == b"F" else _array_depth_ok
            if pos + size > end or not walker(data, pos + 5, pos + size, depth + 1):
                return False
        pos += size
    return pos == end




def parse_publish(payload: bytes) -> tuple[str, str, bool, bool, bytes, bytes] | None:
    """basic.publish's arguments by hand (hot path); None when they do not decode exactly.

    Also returns the exchange and routing key as the raw shortstrs they arrived as, which the
    deliver frames reuse instead of encoding them again."""
    try:
        pos = 6
        n = payload[pos]
        exchange_raw = payload[pos:pos + 1 + n]
        exchange = exchange_raw[1:].decode()
        pos += 1 + n
        n = payload[pos]
        routing_key_raw = payload[pos:pos + 1 + n]
        routing_key = routing_key_raw[1:].decode()
        pos += 1 + n
        bits = payload[pos]
    except (IndexError, UnicodeDecodeError):
        return None
    if pos + 1 != len(payload):
        return None
    return exchange, routing_key, bool(bits & 1), bool(bits & 2), exchange_raw, routing_key_raw


def decode_credentials(mechanism: str, response: bytes) -> tuple[str, str] | None:
    if mechanism == "PLAIN":
        parts = response.split(b"\x00")
        if len(parts) != 3:
            return None
        return parts[1].decode("utf-8", "replace"), parts[2].decode("utf-8", "replace")
    if mechanism == "AMQPLAIN":
        try:
            table = decode.field_table(_u32.pack(len(response)) + response)[1]
        except Exception:
            return None
        login, password = table.get("LOGIN"), table.get("PASSWORD")
        if not isinstance(login, str) or not isinstance(password, str):
            return None
        return login, password
    return None


_FIXED = {"octet": 1, "short": 2, "long": 4, "longlong": 8, "timestamp": 8}


def args_length(method: commands.base.Frame, payload: bytes, pos: int,
                tables: list[int] | None = None) -> int:
    """Where a method's arguments end in payload: trailing bytes are a decode error.
    ``tables`` collects where each table field starts (its length prefix)."""
    in_bits = 0
    for name in method.__slots__:
        kind = method.amqp_type(name)
        if kind == "bit":
            if in_bits == 0:
                pos += 1
            in_bits = (in_bits + 1) % 8
            continue
        in_bits = 0
        if kind == "shortstr":
            pos += 1 + payload[pos]
        elif kind == "longstr":
            pos += 4 + _u32.unpack_from(payload, pos)[0]
        elif kind == "table":
            if tables is not None:
                tables.append(pos)
            end = pos + 4 + _u32.unpack_from(payload, pos)[0]
            if end > len(payload) or not table_depth_ok(payload, pos + 4, end):
                raise ValueError("malformed or too deeply nested table")
            pos = end
        else:
            pos += _FIXED[kind]
    if pos > len(payload):
        raise ValueError("truncated arguments")
    return pos


def ids(method: commands.base.Frame) -> tuple[int, int]:
    return method.index >> 16, method.index & 0xFFFF

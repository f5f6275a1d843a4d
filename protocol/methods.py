"""Method-level decoding helpers for the connection machine.

Hand-written parsing of basic.publish arguments (hot path), SASL responses, the argument-length
walk that detects trailing junk, and access.request, which pamqp's 0-9-1 spec no longer has.
"""

from __future__ import annotations

import struct

from pamqp import commands, decode

_u32 = struct.Struct(">I")


class AccessRequest(commands.base.Frame):
    """access.request (30/10): gone from 0-9-1's pamqp, still sent by old clients."""

    __slots__: list[str] = []
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




def parse_publish(payload: bytes) -> tuple[str, str, bool, bool]:
    pos = 6
    n = payload[pos]
    exchange = payload[pos + 1:pos + 1 + n].decode()
    pos += 1 + n
    n = payload[pos]
    routing_key = payload[pos + 1:pos + 1 + n].decode()
    bits = payload[pos + 1 + n]
    return exchange, routing_key, bool(bits & 1), bool(bits & 2)


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


def args_length(method: commands.base.Frame, payload: bytes, pos: int) -> int:
    """Where a method's arguments end in payload: trailing bytes are a decode error."""
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
        elif kind in ("longstr", "table"):
            pos += 4 + _u32.unpack_from(payload, pos)[0]
        else:
            pos += _FIXED[kind]
    return pos


def ids(method: commands.base.Frame) -> tuple[int, int]:
    return method.index >> 16, method.index & 0xFFFF

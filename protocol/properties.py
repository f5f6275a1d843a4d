"""Message properties kept as the publisher's raw bytes; fields are decoded only when needed.

Raw form = the content-header payload after class/weight/body-size: the flag word(s) then the
present fields in flag order. ``peek_*`` read one field without building pamqp objects; ``decode``
and ``encode`` round-trip through pamqp for the cold paths (dead-lettering, reply-to rewrite).
"""

from __future__ import annotations

import struct

from pamqp import commands

from .methods import UnknownFieldType, table_depth_ok
from .tables import Table

Properties = commands.Basic.Properties

_u16 = struct.Struct(">H")
_u32 = struct.Struct(">I")

# flag bit -> wire kind, in wire order, for the fields that precede the ones we peek at.
_ORDER = (
    (0x8000, "s"), (0x4000, "s"), (0x2000, "t"), (0x1000, "o"), (0x0800, "o"),
    (0x0400, "s"), (0x0200, "s"), (0x0100, "s"), (0x0080, "s"), (0x0040, "q"),
    (0x0020, "s"), (0x0010, "s"),
)
DELIVERY_MODE, PRIORITY, EXPIRATION, HEADERS, REPLY_TO = 0x1000, 0x0800, 0x0100, 0x2000, 0x0200
USER_ID = 0x0010

EMPTY = b"\x00\x00"


def _offset_of(raw: bytes, flag: int) -> int:
    """Offset of a field's value in raw, or -1 when the flag is not set (or the property
    bytes are too short for what the flags announce: a broken header is not our crash)."""
    try:
        return _walk_to(raw, flag)
    except (IndexError, struct.error):
        return -1


def _walk_to(raw: bytes, flag: int) -> int:
    flags = _u16.unpack_from(raw, 0)[0]
    if not flags & flag:
        return -1
    pos = 2
    for bit, kind in _ORDER:
        if bit == flag:
            return pos
        if not flags & bit:
            continue
        if kind == "s":
            pos += 1 + raw[pos]
        elif kind == "t":
            pos += 4 + _u32.unpack_from(raw, pos)[0]
        elif kind == "q":
            pos += 8
        else:
            pos += 1
    return -1


class Peeked:
    """What the broker reads from a message's properties, in one walk (``peek_all``):
    delivery-mode, priority, expiration (as sent, and in ms when it is a plain number) and
    user-id. Fields a broken header does not hold read as absent."""

    __slots__ = ("delivery_mode", "priority", "expiration", "expiration_ms", "user_id")

    def __init__(self, delivery_mode: int = 0, priority: int = 0,
                 expiration: str | None = None, user_id: str | None = None) -> None:
        self.delivery_mode: int = delivery_mode
        self.priority: int = priority
        self.expiration: str | None = expiration
        self.expiration_ms: int | None = \
            int(expiration) if expiration and expiration.isdigit() else None
        self.user_id: str | None = user_id


NOTHING = Peeked()  # b"\x00\x00": no properties at all, the common case


def peek_all(raw: bytes) -> Peeked:
    """One walk over the flags and the fields up to user-id."""
    if raw[:2] == EMPTY or len(raw) < 2:
        return NOTHING
    flags = _u16.unpack_from(raw, 0)[0]
    mode = priority = 0
    expiration = user_id = None
    pos, end = 2, len(raw)
    try:
        for bit, kind in _ORDER:
            if not flags & bit:
                continue
            if bit == DELIVERY_MODE:
                mode = raw[pos] if pos < end else 0
            elif bit == PRIORITY:
                priority = raw[pos] if pos < end else 0
            elif bit == EXPIRATION or bit == USER_ID:
                if pos >= end:
                    break
                value = raw[pos + 1:pos + 1 + raw[pos]].decode("utf-8", "replace")
                if bit == EXPIRATION:
                    expiration = value
                else:
                    user_id = value
            if kind == "s":
                pos += 1 + raw[pos]
            elif kind == "t":
                pos += 4 + _u32.unpack_from(raw, pos)[0]
            elif kind == "q":
                pos += 8
            else:
                pos += 1
    except (IndexError, struct.error):
        pass
    if not (mode or priority or expiration is not None or user_id is not None):
        return NOTHING
    return Peeked(mode, priority, expiration, user_id)


def _byte_at(raw: bytes, pos: int) -> int:
    return raw[pos] if 0 <= pos < len(raw) else 0


def peek_delivery_mode(raw: bytes) -> int:
    return _byte_at(raw, _offset_of(raw, DELIVERY_MODE))


def peek_priority(raw: bytes) -> int:
    return _byte_at(raw, _offset_of(raw, PRIORITY))


def peek_shortstr(raw: bytes, flag: int) -> str | None:
    pos = _offset_of(raw, flag)
    if pos < 0 or pos >= len(raw):
        return None
    return raw[pos + 1:pos + 1 + raw[pos]].decode("utf-8", "replace")


def peek_expiration(raw: bytes) -> str | None:
    return peek_shortstr(raw, EXPIRATION)


def peek_reply_to(raw: bytes) -> str | None:
    return peek_shortstr(raw, REPLY_TO)


def has_headers(raw: bytes) -> bool:
    return bool(len(raw) >= 2 and _u16.unpack_from(raw, 0)[0] & HEADERS)


def decode(raw: bytes) -> Properties:
    props = Properties()
    flags, pos, index = 0, 0, 0
    while True:
        word = _u16.unpack_from(raw, pos)[0]
        pos += 2
        flags |= word << (16 * index)
        index += 1
        if not word & 1:
            break
    props.unmarshal(flags, raw[pos:])
    return props


def encode(props: Properties) -> bytes:
    return props.marshal()


def headers(raw: bytes) -> Table:
    """The headers table decoded; {} when absent, malformed or nested too deeply to decode
    safely (routing then sees no headers rather than the connection dying)."""
    if not has_headers(raw):
        return {}
    pos = _offset_of(raw, HEADERS)
    if pos < 0 or pos + 4 > len(raw):
        return {}
    end = pos + 4 + _u32.unpack_from(raw, pos)[0]
    try:
        if end > len(raw) or not table_depth_ok(raw, pos + 4, end):
            return {}
        return decode(raw).headers or {}
    except (ValueError, IndexError, struct.error, RecursionError, UnknownFieldType):
        return {}


# ---- raw editing ------------------------------------------------------------------------------
_ALL_FIELDS = (
    (0x8000, "s"), (0x4000, "s"), (0x2000, "t"), (0x1000, "o"), (0x0800, "o"), (0x0400, "s"),
    (0x0200, "s"), (0x0100, "s"), (0x0080, "s"), (0x0040, "q"), (0x0020, "s"), (0x0010, "s"),
    (0x0008, "s"), (0x0004, "s"),
)


def split(raw: bytes) -> dict[int, bytes]:
    """Present fields as {flag: raw encoded field}, keeping every byte as sent."""
    flags = _u16.unpack_from(raw, 0)[0]
    fields: dict[int, bytes] = {}
    pos = 2
    for bit, kind in _ALL_FIELDS:
        if not flags & bit:
            continue
        if kind == "s":
            size = 1 + raw[pos]
        elif kind == "t":
            size = 4 + _u32.unpack_from(raw, pos)[0]
        elif kind == "q":
            size = 8
        else:
            size = 1
        fields[bit] = raw[pos:pos + size]
        pos += size
    return fields


def join(fields: dict[int, bytes]) -> bytes:
    flags = 0
    parts = []
    for bit, _kind in _ALL_FIELDS:
        value = fields.get(bit)
        if value is not None:
            flags |= bit
            parts.append(value)
    return _u16.pack(flags) + b"".join(parts)


def headers_body(fields: dict[int, bytes]) -> bytes:
    """The headers table content (no length) from split() output; b'' when absent."""
    raw = fields.get(HEADERS)
    return raw[4:] if raw else b""


def set_headers_body(fields: dict[int, bytes], body: bytes) -> None:
    fields[HEADERS] = _u32.pack(len(body)) + body


def shortstr_field(value: str) -> bytes:
    data = value.encode()
    return bytes((len(data),)) + data

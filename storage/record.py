"""Pure encoding and decoding of one message record of a segment log (no I/O).

Layout, all integers little-endian::

    [length u32][crc32 u32][payload: length bytes]
    payload = [flags u8][seq u64][expires f64][deliveries u32, only with F_DELIVERIES]
              [exchange: u8 len + utf-8][routing key: u8 len + utf-8]
              [props_len u32][props][body: the rest]

Invariants:
- ``crc32`` covers exactly the payload, so a record is either intact or detected as corrupt.
- A record is self-delimiting: the reader needs only ``length`` to find the next one, and a record
  whose bytes are not all present is reported as short (a torn tail), never decoded.
- ``expires`` is a wall-clock (``time.time()``) deadline, meaningful only with ``F_EXPIRES``;
  ``seq`` is the queue position the record was pushed with (informational after a restart).
- ``deliveries`` (0 when absent) counts how often the message had been delivered and handed
  back before this record was written: a quorum queue writes a returned message again at the
  back of its log, and it must come back redelivered with its delivery count.
- ``body size`` (what queues count in bytes) = ``length - fixed - len(exchange) - len(routing
  key) - len(props)``; ``encode_into`` returns it with the record size so callers keep counters
  without decoding again.
"""

from __future__ import annotations

import struct
import zlib

HEADER = struct.Struct("<II")
HEADER_SIZE = HEADER.size
_FIXED = struct.Struct("<BQd")
_U32 = struct.Struct("<I")
# flags, seq, expires, exchange len, routing key len, props len
MIN_PAYLOAD = _FIXED.size + 1 + 1 + _U32.size
MAX_PAYLOAD = 0x7FFF_FFFF

F_PERSISTENT = 0x01
F_EXPIRES = 0x02
F_DELIVERIES = 0x04
_KNOWN_FLAGS = F_PERSISTENT | F_EXPIRES | F_DELIVERIES

_crc32 = zlib.crc32
_pack_header = HEADER.pack
_pack_fixed = _FIXED.pack
_pack_u32 = _U32.pack
_unpack_header = HEADER.unpack_from
_unpack_fixed = _FIXED.unpack_from
_unpack_u32 = _U32.unpack_from
_FIXED_SIZE = _FIXED.size
_U32_SIZE = _U32.size
_COPY_MAX = 64 * 1024

#: What ``decode`` returns: (end offset, flags, seq, expires, exchange, routing key, props, body,
#: deliveries).
Decoded = tuple[int, int, int, float, str, str, bytes, bytes, int]


class RecordError(Exception):
    """Base class of the decoding errors; ``offset`` is where the bad record starts (readers
    rebase it to a file offset)."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset

    def __str__(self) -> str:
        return f"record at offset {self.offset}: {self.reason}"


class ShortRecord(RecordError):
    """Not all of the record's bytes are present (a torn tail, or a read that stopped early).

    ``needed`` is the total size the record needs from its start when the header was readable,
    else the header size.
    """

    def __init__(self, reason: str, offset: int, needed: int) -> None:
        super().__init__(reason, offset)
        self.needed = needed


class CorruptRecord(RecordError):
    """The record's bytes are all present but wrong: bad length, CRC mismatch, bad layout."""


def encode_into(buf: bytearray, seq: int, flags: int, expires: float, exchange_raw: bytes,
                routing_key_raw: bytes, props: bytes, body: bytes, deliveries: int = 0) -> int:
    """Append one record to ``buf``; return its total size (header included).

    ``exchange_raw`` and ``routing_key_raw`` are AMQP shortstrs (length byte + utf-8), as
    ``Message.exchange_raw`` caches them. ``deliveries`` > 0 sets ``F_DELIVERIES``.
    """
    if deliveries:
        fixed = _pack_fixed(flags | F_DELIVERIES, seq, expires) + _pack_u32(deliveries)
    else:
        fixed = _pack_fixed(flags & ~F_DELIVERIES, seq, expires)
    meta = b"".join((fixed, exchange_raw, routing_key_raw, _pack_u32(len(props)), props))
    length = len(meta) + len(body)
    if length > MAX_PAYLOAD:
        raise ValueError(f"record of {length} bytes is larger than {MAX_PAYLOAD}")
    buf += _pack_header(length, _crc32(body, _crc32(meta)))
    buf += meta
    buf += body
    return HEADER_SIZE + length


def encode(seq: int, flags: int, expires: float, exchange: str, routing_key: str, props: bytes,
           body: bytes, deliveries: int = 0) -> bytes:
    """One record as bytes (a convenience over ``encode_into`` for tests and tools)."""
    buf = bytearray()
    encode_into(buf, seq, flags, expires, _shortstr(exchange), _shortstr(routing_key), props,
                body, deliveries)
    return bytes(buf)


def _shortstr(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 255:
        raise ValueError("shortstr longer than 255 bytes")
    return bytes((len(raw),)) + raw


def _layout(buf: bytes | bytearray | memoryview, pos: int, end: int
            ) -> tuple[int, int, int, int]:
    """Inner offsets (exchange, routing key, props, body) of a record whose CRC was checked."""
    ex = pos + HEADER_SIZE + _FIXED.size
    if buf[pos + HEADER_SIZE] & F_DELIVERIES:
        ex += _U32.size
        if ex >= end:
            raise CorruptRecord("field lengths overrun the record", pos)
    rk = ex + 1 + buf[ex]
    pl = rk + 1 + (buf[rk] if rk < end else 0)
    if pl + _U32.size > end:
        raise CorruptRecord("field lengths overrun the record", pos)
    props = pl + _U32.size
    body = props + _unpack_u32(buf, pl)[0]
    if body > end:
        raise CorruptRecord("properties overrun the record", pos)
    return ex, rk, props, body


def check(buf: bytes | bytearray | memoryview, pos: int = 0, limit: int | None = None
          ) -> tuple[int, int, int]:
    """Validate the record at ``pos`` (CRC and layout) without building any object.

    Returns ``(end, flags, body_size)``. ``limit`` is where valid data stops (default: the end
    of ``buf``). Raises ``ShortRecord`` or ``CorruptRecord``.
    """
    end = _frame(buf, pos, len(buf) if limit is None else limit)
    body = _layout(buf, pos, end)[3]
    return end, buf[pos + HEADER_SIZE], end - body


def _frame(buf: bytes | bytearray | memoryview, pos: int, limit: int) -> int:
    """Check the header and CRC of the record at ``pos``; return its end offset."""
    if pos + HEADER_SIZE > limit:
        raise ShortRecord("header cut short", pos, HEADER_SIZE)
    length: int
    length, crc = _unpack_header(buf, pos)
    if length < MIN_PAYLOAD or length > MAX_PAYLOAD:
        raise CorruptRecord(f"impossible length {length}", pos)
    end = pos + HEADER_SIZE + length
    if end > limit:
        raise ShortRecord(f"{length}-byte payload cut short", pos,
                          HEADER_SIZE + length)
    if _crc(buf, pos + HEADER_SIZE, end) != crc:
        raise CorruptRecord("CRC mismatch", pos)
    if buf[pos + HEADER_SIZE] & ~_KNOWN_FLAGS:
        raise CorruptRecord("unknown flags", pos)
    return end


def _crc(buf: bytes | bytearray | memoryview, start: int, end: int) -> int:
    if end - start <= _COPY_MAX:  # copying a small payload is cheaper than a memoryview
        return _crc32(buf[start:end])
    with memoryview(buf) as view:
        return _crc32(view[start:end])


def decode(buf: bytes | bytearray, pos: int = 0, limit: int | None = None) -> Decoded:
    """Decode the record at ``pos``: ``(end, flags, seq, expires, exchange, routing_key,
    props, body, deliveries)``. Raises ``ShortRecord`` or ``CorruptRecord``.

    The checks of ``_frame`` and ``_layout``, inlined: this runs for every message read back.
    """
    if limit is None:
        limit = len(buf)
    start = pos + HEADER_SIZE
    if start > limit:
        raise ShortRecord("header cut short", pos, HEADER_SIZE)
    length, crc = _unpack_header(buf, pos)
    if length < MIN_PAYLOAD or length > MAX_PAYLOAD:
        raise CorruptRecord(f"impossible length {length}", pos)
    end = start + length
    if end > limit:
        raise ShortRecord(f"{length}-byte payload cut short", pos, HEADER_SIZE + length)
    if (_crc32(buf[start:end]) if length <= _COPY_MAX else _crc(buf, start, end)) != crc:
        raise CorruptRecord("CRC mismatch", pos)
    flags, seq, expires = _unpack_fixed(buf, start)
    if flags & ~_KNOWN_FLAGS:
        raise CorruptRecord("unknown flags", pos)
    ex = start + _FIXED_SIZE
    deliveries = 0
    if flags & F_DELIVERIES:
        deliveries = _unpack_u32(buf, ex)[0]
        ex += _U32_SIZE
        if ex >= end:
            raise CorruptRecord("field lengths overrun the record", pos)
    rk = ex + 1 + buf[ex]
    if rk >= end:
        raise CorruptRecord("field lengths overrun the record", pos)
    pl = rk + 1 + buf[rk]
    props = pl + _U32_SIZE
    if props > end:
        raise CorruptRecord("field lengths overrun the record", pos)
    body = props + _unpack_u32(buf, pl)[0]
    if body > end:
        raise CorruptRecord("properties overrun the record", pos)
    try:
        exchange = buf[ex + 1:rk].decode()
        routing_key = buf[rk + 1:pl].decode()
    except UnicodeDecodeError:
        raise CorruptRecord("names are not utf-8", pos) from None
    return (end, flags, seq, expires, exchange, routing_key, bytes(buf[props:body]),
            bytes(buf[body:end]), deliveries)

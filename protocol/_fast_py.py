"""The hot path in pure Python: the reference for ``_fast_c.pyx`` and the fallback without it.

``scan`` turns a run of the two frames a busy broker sees most (a basic.publish with its content
header and single body frame; a basic.ack) into events in one call; ``deliver_message`` encodes
basic.deliver with its content in one buffer. Both are tested byte for byte and event for
event against the compiled module and against pamqp (tests/protocol/test_fast.py).

``scan`` stops at the first frame that is anything else, or unusual in any way (a channel that
is not plainly open, content split over several body frames, a bad size or end marker, names
that are not UTF-8): the connection machine then takes over frame by frame and raises what is
wrong, so ``scan`` itself never decides an error.
"""

from __future__ import annotations

import struct

from .codec import deliver_message
from .events import Ack, Publish

__all__ = ["deliver_message", "scan"]

_head = struct.Struct(">BHI")
_header_fields = struct.Struct(">HHQ")
_ack_args = struct.Struct(">QB")
PUBLISH = b"\x00\x3c\x00\x28"
ACK = b"\x00\x3c\x00\x50"


def scan(buf: bytes, pos: int, limit: int, frame_max: int, max_size: int,
         open_channels: set[int], closing: set[int],
         content: dict[int, object]) -> tuple[list[object], list[int]]:
    """Up to ``limit`` publish / ack events from ``buf[pos:]``, and where each one ends."""
    events: list[object] = []
    ends: list[int] = []
    end = len(buf)
    while len(events) < limit and end - pos >= 8:
        ftype, channel, size = _head.unpack_from(buf, pos)
        stop = pos + 7 + size
        if ftype != 1 or size < 4 or size > frame_max or stop >= end or buf[stop] != 0xCE:
            break
        if channel not in open_channels or channel in closing or channel in content:
            break
        if size == 13 and buf.startswith(ACK, pos + 7):
            tag, bits = _ack_args.unpack_from(buf, pos + 11)
            events.append(Ack(channel, tag, bool(bits & 1)))
            pos = stop + 1
            ends.append(pos)
            continue
        if not buf.startswith(PUBLISH, pos + 7):
            break
        publish = _publish(buf, pos + 7, stop, end, channel, frame_max, max_size)
        if publish is None:
            break
        event, pos = publish
        events.append(event)
        ends.append(pos)
    return events, ends


def _publish(buf: bytes, at: int, stop: int, end: int, channel: int, frame_max: int,
             max_size: int) -> tuple[Publish, int] | None:
    """The publish whose method payload is ``buf[at:stop]``, with its header and body."""
    try:
        q = at + 6
        n = buf[q]
        exchange_raw = buf[q:q + 1 + n]
        q += 1 + n
        n = buf[q]
        routing_key_raw = buf[q:q + 1 + n]
        q += 1 + n
        if q + 1 != stop:
            return None
        bits = buf[q]
        exchange = exchange_raw[1:].decode()
        routing_key = routing_key_raw[1:].decode()
    except (IndexError, UnicodeDecodeError):
        return None
    hpos = stop + 1
    if end - hpos < 8:
        return None
    htype, hchannel, hsize = _head.unpack_from(buf, hpos)
    hstop = hpos + 7 + hsize
    if htype != 2 or hchannel != channel or hsize < 14 or hsize > frame_max or \
            hstop >= end or buf[hstop] != 0xCE:
        return None
    class_id, _weight, body_size = _header_fields.unpack_from(buf, hpos + 7)
    if class_id != 60 or body_size > max_size:
        return None
    props = buf[hpos + 19:hstop]
    if not body_size:
        return Publish(channel, exchange, routing_key, bool(bits & 1), bool(bits & 2), props,
                       b"", exchange_raw, routing_key_raw), hstop + 1
    bpos = hstop + 1
    if end - bpos < 8:
        return None
    btype, bchannel, bsize = _head.unpack_from(buf, bpos)
    bstop = bpos + 7 + bsize
    if btype != 3 or bchannel != channel or bsize != body_size or bsize > frame_max or \
            bstop >= end or buf[bstop] != 0xCE:
        return None
    return Publish(channel, exchange, routing_key, bool(bits & 1), bool(bits & 2), props,
                   buf[bpos + 7:bstop], exchange_raw, routing_key_raw), bstop + 1

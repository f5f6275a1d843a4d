"""What a bench worker reads back from its socket: confirms (publishers) and deliveries
(consumers), counted straight from the raw frames.

Both the fixed-count workers (``bench.workers``) and the time-bounded flood workers
(``bench.flood``) walk their received bytes with the same two readers, so a confirm or a
delivery is counted the same way in every scenario. Each reader consumes the whole frames at
the start of a buffer and says where the first incomplete one begins; the caller keeps that
tail for the next ``recv``. A channel.close / connection.close / basic.cancel from the
server raises ``AMQPError`` with its text. The loops keep the struct methods in locals: they
run once per frame in the client, and a slow client would measure itself, not the broker.
"""

from __future__ import annotations

from array import array

from pamqp import frame

from bench.amqp import (
    ACK_FRAME,
    BASIC_ACK,
    BASIC_DELIVER,
    BASIC_NACK,
    FATAL_METHODS,
    FRAME_HEADER,
    METHOD_ID,
    U32,
    U64,
    AMQPError,
    describe_close,
)


def fatal(data: bytes, off: int, size: int) -> AMQPError:
    """The error for the close (or cancel) method frame at ``data[off:]``."""
    _, _, value = frame.unmarshal(data[off : off + size + 8])
    return AMQPError(describe_close(value))


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    idx = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[idx]


class Confirms:
    """Outstanding publishes of a confirming publisher and the latency of each confirm.

    Tags at or below ``watermark`` are all resolved; ``singles`` holds the ones above it
    that were confirmed one by one, so a later ``multiple`` ack counts each tag once.
    """

    def __init__(self) -> None:
        self.send_ts = array("d", bytes(8 << 16))  # send time per tag (1-based), grows
        self.singles: set[int] = set()
        self.watermark = 0  # every tag <= watermark is resolved
        self.resolved = self.nacked = 0
        self.latencies: list[float] = []

    def sent(self, first_tag: int, count: int, t: float) -> None:
        while first_tag + count > len(self.send_ts):
            self.send_ts.extend(array("d", bytes(8 * len(self.send_ts))))  # double
        self.send_ts[first_tag : first_tag + count] = array("d", [t]) * count

    def settle(self, tag: int, multiple: bool, nack: bool, t: float, record: bool) -> None:
        before = self.resolved
        lat = self.latencies
        if multiple:
            for t_ in range(self.watermark + 1, tag + 1):
                if t_ in self.singles:
                    self.singles.discard(t_)
                else:
                    if record:
                        lat.append(t - self.send_ts[t_])
                    self.resolved += 1
            self.watermark = max(self.watermark, tag)
        elif tag > self.watermark and tag not in self.singles:
            if record:
                lat.append(t - self.send_ts[tag])
            self.resolved += 1
            if tag == self.watermark + 1:
                self.watermark = tag
                while self.watermark + 1 in self.singles:
                    self.watermark += 1
                    self.singles.discard(self.watermark)
            else:
                self.singles.add(tag)
        if nack:
            self.nacked += self.resolved - before

    def feed(self, data: bytes, t: float, record: bool) -> int:
        """Settle the basic.ack/nack frames among the whole frames at the start of ``data``
        (received at ``t``; latencies kept when ``record``); the offset of the rest."""
        unpack_hdr, unpack_mid, unpack_tag = (
            FRAME_HEADER.unpack_from, METHOD_ID.unpack_from, U64.unpack_from)
        off, end = 0, len(data)
        while end - off >= 8:
            ftype, _ch, size = unpack_hdr(data, off)
            nxt = off + size + 8
            if nxt > end:
                break
            if ftype == 1:
                mid = unpack_mid(data, off + 7)[0]
                if mid == BASIC_ACK or mid == BASIC_NACK:
                    tag = unpack_tag(data, off + 11)[0]
                    self.settle(tag, bool(data[off + 19] & 1), mid == BASIC_NACK, t, record)
                elif mid in FATAL_METHODS:
                    raise fatal(data, off, size)
            off = nxt
        return off


def priority_of(data: bytes, p: int) -> int:
    """Priority property of a content header whose payload starts at ``p`` (0 if absent)."""
    flags = (data[p + 12] << 8) | data[p + 13]
    p += 14
    if flags & 0x8000:  # content-type
        p += 1 + data[p]
    if flags & 0x4000:  # content-encoding
        p += 1 + data[p]
    if flags & 0x2000:  # headers table
        p += 4 + U32.unpack_from(data, p)[0]
    if flags & 0x1000:  # delivery-mode
        p += 1
    return data[p] if flags & 0x0800 else 0


class Deliveries:
    """What a consumer received: deliveries, body bytes, and (``headers``) the body sizes the
    content headers announced and (``priorities``) each message's priority in order."""

    def __init__(self, ack: bool, headers: bool = False, priorities: bool = False) -> None:
        self.ack, self.headers, self.want_prio = ack, headers or priorities, priorities
        self.count = self.body_bytes = self.expected_bytes = 0
        self.prios = bytearray()

    def feed(self, data: bytes) -> tuple[int, list[int]]:
        """Count the whole frames at the start of ``data``: the offset of the rest, and the
        delivery tags to ack (none without ``ack``)."""
        unpack_hdr, unpack_mid, unpack_tag = (
            FRAME_HEADER.unpack_from, METHOD_ID.unpack_from, U64.unpack_from)
        ack, headers, want_prio, prios = self.ack, self.headers, self.want_prio, self.prios
        count, body_bytes, expected = self.count, self.body_bytes, self.expected_bytes
        tags: list[int] = []
        off, end = 0, len(data)
        try:
            while end - off >= 8:
                ftype, _ch, size = unpack_hdr(data, off)
                nxt = off + size + 8
                if nxt > end:
                    break
                if ftype == 1:
                    mid = unpack_mid(data, off + 7)[0]
                    if mid == BASIC_DELIVER:
                        count += 1
                        if ack:
                            p = off + 11
                            tags.append(unpack_tag(data, p + 1 + data[p])[0])
                    elif mid in FATAL_METHODS:
                        raise fatal(data, off, size)
                elif ftype == 3:
                    body_bytes += size
                elif ftype == 2 and headers:
                    expected += unpack_tag(data, off + 11)[0]  # content body size
                    if want_prio:
                        prios.append(priority_of(data, off + 7))
                off = nxt
        finally:
            self.count, self.body_bytes, self.expected_bytes = count, body_bytes, expected
        return off, tags


def ack_frames(channel: int, tags: list[int]) -> bytes:
    """One basic.ack (not multiple) per delivery tag, joined for a single write."""
    pack = ACK_FRAME.pack
    return b"".join([pack(1, channel, 13, 60, 80, t, 0, 0xCE) for t in tags])

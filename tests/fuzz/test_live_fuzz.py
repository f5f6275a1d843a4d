"""Malformed input against a live broker while a well-behaved client keeps working.

A pika publisher (publisher confirms) and a pika consumer (manual acks) move numbered messages
through one queue for the whole test. Meanwhile N bad connections (LIVE_FUZZ_CONNECTIONS,
default 50; seeded, so CI always tries the same inputs) each send one malformed input: a bad
protocol header, junk during or after the handshake, truncated, oversize or badly ended frames,
mutated valid frames, methods on unopened channels or in the wrong state, huge and deeply nested
field tables, arguments of every type. Each must get RabbitMQ's answer (a connection.close with
a 5xx code, a silent TCP close, or a normal reply / a channel error for input that is merely
odd) and never hang. Afterwards: the broker is still serving, logged no internal error, every
confirmed message was consumed exactly once and in order, its sessions are gone and its RSS
grew by less than 30 MB.

A bad connection that gets no answer within QUIET seconds is waiting for the rest of a frame:
it then sends FILLER (frame_max + 9 bytes of 0x01), which completes any pending frame and is
itself an oversize frame, so the broker must answer with 501.

The ``_soak`` twin (marked slow, run by ``make soak``) tries LIVE_FUZZ_SOAK_CONNECTIONS
(default 1000) connections with a random seed.
"""

from __future__ import annotations

import concurrent.futures
import gc
import logging
import os
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import pika
import pytest
from fuzz_wire import (
    ALLOWED_CLOSE_CODES,
    GOOD_HEADERS,
    HEADER,
    connection_open,
    content_header,
    env_int,
    method_frame,
    publish_frames,
    raw_frame,
    sstr,
    start_ok,
    tune_ok,
)
from pamqp import commands as C
from pamqp import frame as pframe

FRAME_MAX = 131072
FILLER = b"\x01" * (FRAME_MAX + 9)
QUIET = 0.6            # no answer for this long: the broker waits for more bytes
ANSWER_DEADLINE = 10.0  # after the input (and filler): a close or EOF must have come
CLOSE_DEADLINE = 35.0   # after our close-ok: EOF (RabbitMQ's 30 s close-ok timeout + slack)
RSS_GROWTH_LIMIT = 30 * 1024 * 1024


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


# ---- field tables of every type, encoded by hand (pamqp refuses some) ----------------------

def enc_value(value: object, rnd: random.Random) -> bytes:
    if isinstance(value, bool):
        return b"t" + bytes((int(value),))
    if isinstance(value, int):
        for tag, fmt, lo, hi in ((b"b", ">b", -128, 127), (b"B", ">B", 0, 255),
                                 (b"s", ">h", -2**15, 2**15 - 1), (b"u", ">H", 0, 2**16 - 1),
                                 (b"I", ">i", -2**31, 2**31 - 1), (b"i", ">I", 0, 2**32 - 1),
                                 (b"l", ">q", -2**63, 2**63 - 1)):
            if lo <= value <= hi and (tag == b"l" or rnd.random() < 0.5):
                return tag + struct.pack(fmt, value)
        return b"l" + struct.pack(">q", max(-2**63, min(2**63 - 1, value)))
    if isinstance(value, float):
        if rnd.random() < 0.7 or 3e38 < abs(value) < float("inf"):
            return b"d" + struct.pack(">d", value)
        return b"f" + struct.pack(">f", value)
    if isinstance(value, Decimal):
        return b"D" + struct.pack(">Bi", 2, int(value * 100))
    if isinstance(value, datetime):
        return b"T" + struct.pack(">Q", int(value.timestamp()))
    if isinstance(value, str):
        raw = value.encode()
        return b"S" + struct.pack(">I", len(raw)) + raw
    if isinstance(value, bytes):
        return b"x" + struct.pack(">I", len(value)) + value
    if isinstance(value, dict):
        return b"F" + enc_table(value, rnd)
    if isinstance(value, list):
        items = b"".join(enc_value(v, rnd) for v in value)
        return b"A" + struct.pack(">I", len(items)) + items
    if value is None:
        return b"V"
    raise TypeError(value)


def enc_table(table: dict, rnd: random.Random) -> bytes:
    body = b"".join(sstr(k.encode()[:255]) + enc_value(v, rnd) for k, v in table.items())
    return struct.pack(">I", len(body)) + body


def deep_table(depth: int) -> bytes:
    """{"a": {"a": ... {} ...}} nested ``depth`` times, built without recursion."""
    inner = struct.pack(">I", 0)
    for _ in range(depth):
        body = b"\x01aF" + inner
        inner = struct.pack(">I", len(body)) + body
    return inner


X_ARGS = ["x-message-ttl", "x-expires", "x-max-length", "x-max-length-bytes", "x-overflow",
          "x-dead-letter-exchange", "x-dead-letter-routing-key", "x-max-priority",
          "x-queue-type", "x-queue-mode", "x-single-active-consumer", "x-queue-master-locator",
          "alternate-exchange", "x-priority", "x-match", "x-cancel-on-ha-failover",
          "x-consumer-timeout", "x-delivery-limit", "x-stream-max-segment-size-bytes"]


def random_value(rnd: random.Random, depth: int = 0) -> object:
    kind = rnd.randrange(14 if depth < 3 else 11)
    return [
        lambda: rnd.randint(-5, 5),
        lambda: rnd.choice([0, 1, 255, 256, 2**31 - 1, 2**31, 2**32, 2**63 - 1, -2**63, -1]),
        lambda: rnd.random() * rnd.choice([1, -1, 1e300]),
        lambda: rnd.choice([float("inf"), float("nan"), -0.0]),
        lambda: rnd.choice(["", "drop-head", "reject-publish", "reject-publish-dlx", "lazy",
                            "quorum", "classic", "stream", "all", "any", "amq.direct",
                            "no-such-exchange", "é" * 40, "\x00", "x" * 300]),
        lambda: bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 20))),
        lambda: rnd.random() < 0.5,
        lambda: None,
        lambda: Decimal(rnd.randint(-10000, 10000)) / 100,
        lambda: datetime.fromtimestamp(rnd.randint(0, 2**31)),
        lambda: "".join(chr(rnd.randint(32, 0x2FF)) for _ in range(rnd.randint(0, 30))),
        lambda: {rnd.choice(X_ARGS): random_value(rnd, depth + 1) for _ in range(3)},
        lambda: [random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 4))],
        lambda: {"k": random_value(rnd, depth + 1)},
    ][kind]()


def random_table(rnd: random.Random, size: int | None = None) -> dict:
    size = rnd.randint(0, 6) if size is None else size
    return {rnd.choice(X_ARGS) if rnd.random() < 0.8 else f"k{rnd.randrange(10**6)}":
            random_value(rnd) for _ in range(size)}


def declare_payload(queue: str, arguments: bytes, exclusive: bool = True) -> bytes:
    bits = 0x04 if exclusive else 0  # passive, durable, exclusive, auto-delete, nowait
    return (struct.pack(">IH", 0x0032000A, 0) + sstr(queue.encode()) + bytes((bits,))
            + arguments)


def exchange_declare_payload(name: str, kind: str, arguments: bytes) -> bytes:
    return (struct.pack(">IH", 0x0028000A, 0) + sstr(name.encode()) + sstr(kind.encode())
            + b"\x08" + arguments)  # auto-delete


def consume_payload(queue: str, arguments: bytes) -> bytes:
    return (struct.pack(">IH", 0x003C0014, 0) + sstr(queue.encode()) + sstr(b"")
            + b"\x00" + arguments)


# ---- one bad connection ------------------------------------------------------------------

@dataclass
class Plan:
    scenario: str
    stage: str            # none | header | start_ok | tuned | open | channel
    payload: bytes
    allowed: frozenset    # outcome kinds: header, eof, close:<code>, close:5xx, clean
    fill_when_quiet: bool = True


@dataclass
class Outcome:
    scenario: str
    kind: str
    detail: str = ""
    elapsed: float = 0.0
    channel_codes: list = field(default_factory=list)
    replies: list = field(default_factory=list)

    def ok(self, allowed: frozenset) -> bool:
        if self.kind in allowed:
            return True
        if self.kind.startswith("close:") and "close:5xx" in allowed:
            return int(self.kind[6:]) in ALLOWED_CLOSE_CODES
        return False


@dataclass
class OtherFrame:
    ftype: int

    @property
    def name(self) -> str:
        return f"frame-type-{self.ftype}"


class BrokerHung(AssertionError):
    pass


class BadClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _fill(self, timeout: float) -> bool:
        """Read more; False on timeout. Sets eof on close or reset."""
        self.sock.settimeout(max(0.001, timeout))
        try:
            chunk = self.sock.recv(1 << 16)
        except TimeoutError:
            return False
        except OSError:
            chunk = b""
        if not chunk:
            self.eof = True
            return True
        self.buf += chunk
        return True

    def frame(self, timeout: float):  # type: ignore[no-untyped-def]
        """(channel, frame) | "eof" | "timeout" | ("raw", bytes) for a header answer."""
        deadline = time.monotonic() + timeout
        while True:
            if self.buf[:4] == b"AMQP" and len(self.buf) >= 8:
                raw, self.buf = self.buf[:8], self.buf[8:]
                return ("raw", raw)
            if len(self.buf) >= 7 and self.buf[:4] != b"AMQP":
                size = struct.unpack_from(">I", self.buf, 3)[0]
                if len(self.buf) >= size + 8:
                    data, self.buf = self.buf[:size + 8], self.buf[size + 8:]
                    assert data[-1] == 0xCE, f"bad frame end from the server: {data!r}"
                    if data[0] != 1:  # content and heartbeats: not decoded (deep headers)
                        return struct.unpack_from(">H", data, 1)[0], OtherFrame(data[0])
                    _, channel, value = pframe.unmarshal(data)
                    return channel, value
            if self.eof:
                assert not self.buf, f"server output ends in a partial frame: {self.buf!r}"
                return "eof"
            left = deadline - time.monotonic()
            if left <= 0 or not self._fill(left):
                return "timeout"

    def expect(self, kind: type, timeout: float = 5.0):  # type: ignore[no-untyped-def]
        got = self.frame(timeout)
        if not (isinstance(got, tuple) and isinstance(got[1], kind)):
            raise AssertionError(f"handshake: expected {kind.__name__}, got {got!r}")
        return got[1]

    def close(self) -> None:
        self.sock.close()


def handshake(client: BadClient, stage: str) -> None:
    if stage == "none":
        return
    client.send(HEADER)
    client.expect(C.Connection.Start)
    if stage == "header":
        return
    client.send(start_ok(client_properties={"product": "live-fuzz"}))
    client.expect(C.Connection.Tune)
    if stage == "start_ok":
        return
    client.send(tune_ok(2047, FRAME_MAX, 0))
    if stage == "tuned":
        return
    client.send(connection_open("/"))
    client.expect(C.Connection.OpenOk)
    if stage == "open":
        return
    client.send(method_frame(1, C.Channel.Open()))
    client.expect(C.Channel.OpenOk)


def run_bad_connection(port: int, plan: Plan) -> Outcome:
    start = time.monotonic()
    out = Outcome(plan.scenario, "?")
    client = BadClient(port)
    try:
        handshake(client, plan.stage)
        client.send(plan.payload)
        filled = False
        deadline = time.monotonic() + ANSWER_DEADLINE
        raw = b""
        while True:
            wait = QUIET if (plan.fill_when_quiet and not filled) else deadline - time.monotonic()
            got = client.frame(max(0.01, wait))
            if got == "timeout":
                if plan.fill_when_quiet and not filled:
                    filled = True
                    client.send(FILLER)
                    deadline = time.monotonic() + ANSWER_DEADLINE
                    continue
                raise BrokerHung(f"{plan.scenario}: no connection.close and no EOF within "
                                 f"{ANSWER_DEADLINE}s of the input (the broker answered "
                                 f"{out.replies or 'nothing'})")
            if got == "eof":
                out.kind = "header" if raw == HEADER else "eof"
                break
            if got[0] == "raw":
                raw += got[1]
                continue
            channel, value = got
            out.replies.append(value.name)
            if isinstance(value, C.Connection.Close):
                out.kind = f"close:{value.reply_code}"
                out.detail = value.reply_text
                client.send(method_frame(0, C.Connection.CloseOk()))
                end = client.frame(CLOSE_DEADLINE)
                while isinstance(end, tuple):  # frames queued before the close
                    end = client.frame(CLOSE_DEADLINE)
                if end != "eof":
                    raise BrokerHung(f"{plan.scenario}: socket still open {CLOSE_DEADLINE}s "
                                     f"after connection.close-ok ({out.detail})")
                break
            if isinstance(value, C.Channel.Close):
                out.channel_codes.append(value.reply_code)
                client.send(method_frame(channel, C.Channel.CloseOk()))
            if not plan.fill_when_quiet and "clean" in plan.allowed:
                # a normal reply or a channel error: the connection lives; close it ourselves
                client.send(method_frame(0, C.Connection.Close(200, "bye", 0, 0)))
                end = client.frame(5.0)
                while isinstance(end, tuple) and not isinstance(end[1], C.Connection.CloseOk):
                    if isinstance(end[1], C.Connection.Close):
                        client.send(method_frame(0, C.Connection.CloseOk()))
                        out.kind = f"close:{end[1].reply_code}"
                        break
                    end = client.frame(5.0)
                else:
                    assert isinstance(end, tuple), f"no close-ok for our close: {end!r}"
                    out.kind = "clean"
                if out.kind == "clean":
                    assert client.frame(5.0) == "eof", "socket open after close-ok"
                break
    finally:
        client.close()
    out.elapsed = time.monotonic() - start
    return out


# ---- scenarios ---------------------------------------------------------------------------

ANY_5XX = frozenset({"close:5xx", "eof"})


def rbytes(rnd: random.Random, lo: int, hi: int) -> bytes:
    return bytes(rnd.randrange(256) for _ in range(rnd.randint(lo, hi)))


def valid_sequence(rnd: random.Random) -> list[bytes]:
    """Valid frames on channel 1 (opened by the handshake)."""
    frames = [raw_frame(1, 1, declare_payload(f"fz-{rnd.randrange(10**6)}", enc_table({}, rnd))),
              method_frame(1, C.Basic.Qos(prefetch_count=rnd.randint(0, 100)))]
    frames += publish_frames(1, rbytes(rnd, 0, 300), FRAME_MAX, "", "fz",
                             C.Basic.Properties(message_id="m", delivery_mode=2))
    frames.append(method_frame(1, C.Basic.Ack(rnd.randint(0, 9))))
    rnd.shuffle(frames[:2])
    return frames


def s_bad_header(rnd: random.Random) -> Plan:
    while True:
        data = rnd.choice([b"AMQP" + rbytes(rnd, 4, 12), rbytes(rnd, 8, 40),
                           b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x02\x00\x01"
                           + rbytes(rnd, 2, 30)])
        if data[:8] not in GOOD_HEADERS and len(data) >= 8:
            return Plan("bad_header", "none", data, frozenset({"header"}), False)


def s_garbage_in_handshake(rnd: random.Random) -> Plan:
    stage = rnd.choice(["header", "start_ok", "tuned"])
    return Plan(f"garbage_in_handshake[{stage}]", stage, rbytes(rnd, 1, 300), ANY_5XX)


def s_garbage_after_open(rnd: random.Random) -> Plan:
    return Plan("garbage_after_open", rnd.choice(["open", "channel"]), rbytes(rnd, 1, 3000),
                ANY_5XX)


def s_random_frames(rnd: random.Random) -> Plan:
    frames = []
    for _ in range(rnd.randint(1, 5)):
        if rnd.random() < 0.5:
            index = rnd.choice(sorted(C.INDEX_MAPPING) + [0x001E000A, 0x003C03E7])
            payload = struct.pack(">I", index) + rbytes(rnd, 0, 60)
            frames.append(raw_frame(1, rnd.choice([0, 1, 2]), payload))
        else:
            frames.append(raw_frame(rnd.choice([0, 1, 2, 3, 4, 8, 9, 206]),
                                    rnd.choice([0, 1, 2, 65535]), rbytes(rnd, 0, 40),
                                    rnd.choice([b"\xce", b"\xce", b"\x00"])))
    return Plan("random_frames", "channel", b"".join(frames), ANY_5XX)


def s_truncated_frame(rnd: random.Random) -> Plan:
    frame = rnd.choice(valid_sequence(rnd))
    cut = rnd.randint(0, len(frame) - 1)
    return Plan("truncated_frame", "channel", frame[:cut], frozenset({"close:501"}))


def s_oversize_frame(rnd: random.Random) -> Plan:
    size = rnd.choice([FRAME_MAX + 1, FRAME_MAX + 8, 200035, 2**31, 2**32 - 1])
    ftype = rnd.choice([1, 2, 3, 8])
    head = struct.pack(">BHI", ftype, rnd.choice([0, 1]), size)
    return Plan("oversize_frame", "channel", head + rbytes(rnd, 0, 100),
                frozenset({"close:501"}), False)


def s_bad_frame_end(rnd: random.Random) -> Plan:
    frame = bytearray(rnd.choice(valid_sequence(rnd)))
    frame[-1] = rnd.choice([0, 1, 0xCD, 0xCF, 0xFF])
    return Plan("bad_frame_end", "channel", bytes(frame), frozenset({"close:501"}), False)


def s_mutated_valid(rnd: random.Random) -> Plan:
    data = bytearray(b"".join(valid_sequence(rnd)))
    for _ in range(rnd.randint(1, 3)):
        at = rnd.randrange(len(data))
        op = rnd.choice(["flip", "flip", "insert", "delete"])
        if op == "flip":
            data[at] ^= rnd.randint(1, 255)
        elif op == "insert":
            data[at:at] = rbytes(rnd, 1, 8)
        else:
            del data[at:at + rnd.randint(1, 8)]
    return Plan("mutated_valid", "channel", bytes(data), ANY_5XX)


WRONG_STATE = [
    # (name, stage, payload, allowed outcomes): rabbitmq-behaviour.md sections 1, 7, 8
    ("channel.open before connection.open", "tuned", method_frame(1, C.Channel.Open()),
     {"close:505"}),
    ("connection.open twice", "open", connection_open("/"), {"close:504"}),
    ("queue.declare on channel 0", "open", method_frame(0, C.Queue.Declare(queue="q")),
     {"close:504"}),
    ("basic.qos on channel 0", "open", method_frame(0, C.Basic.Qos(prefetch_count=1)),
     {"close:504"}),
    ("queue.declare on unopened channel", "open",
     method_frame(5, C.Queue.Declare(queue="q")), {"close:504"}),
    ("basic.publish on unopened channel", "channel",
     b"".join(publish_frames(7, b"x", FRAME_MAX)), {"close:504"}),
    ("channel.close on unopened channel", "open",
     method_frame(9, C.Channel.Close(200, "", 0, 0)), {"close:504"}),
    ("channel.close-ok on unopened channel", "open", method_frame(9, C.Channel.CloseOk()),
     {"close:504"}),
    ("second channel.open", "channel", method_frame(1, C.Channel.Open()), {"close:504"}),
    ("connection.close on channel 1", "channel",
     method_frame(1, C.Connection.Close(200, "", 0, 0)), {"close:503"}),
    ("connection.tune on channel 1", "channel",
     method_frame(1, C.Connection.Tune(0, 0, 0)), {"close:503"}),
    ("content header without publish", "channel", content_header(1, 5), {"close:505"}),
    ("content body without publish", "channel", raw_frame(3, 1, b"hello"), {"close:505"}),
    ("content header on channel 0", "channel", content_header(0, 5), {"close:505"}),
    ("heartbeat on channel 1", "channel", raw_frame(8, 1, b""), {"close:505"}),
    ("heartbeat with payload", "channel", raw_frame(8, 0, b"abc"), {"close:501"}),
    ("publish then a method", "channel",
     publish_frames(1, b"x", FRAME_MAX)[0] + method_frame(1, C.Basic.Qos(prefetch_count=1)),
     {"close:505"}),
    ("header with class 50", "channel",
     publish_frames(1, b"x", FRAME_MAX)[0] + content_header(1, 1, class_id=50),
     {"close:505"}),
    ("channel.flow active=false", "channel", method_frame(1, C.Channel.Flow(False)),
     {"close:540"}),
    ("basic.qos prefetch_size", "channel", method_frame(1, C.Basic.Qos(prefetch_size=5)),
     {"close:540"}),
    ("unsolicited channel.flow-ok", "channel", method_frame(1, C.Channel.FlowOk(True)),
     {"close:503"}),
    ("unknown method 60/999", "channel", raw_frame(1, 1, b"\x00\x3c\x03\xe7"), {"eof"}),
    ("unknown class 99/10", "channel", raw_frame(1, 1, b"\x00\x63\x00\x0a"), {"eof"}),
    ("unknown field type in a table", "channel",
     raw_frame(1, 1, declare_payload("q", b"\x00\x00\x00\x04\x01aZ\x00")), {"eof"}),
    ("method frame of 2 bytes", "channel", raw_frame(1, 1, b"\x00\x32"), {"close:501"}),
    ("frame type 9", "channel", raw_frame(9, 0, b"abc"), {"close:501"}),
    ("start-ok in the open state", "open", start_ok(), {"close:504"}),
    ("tune-ok twice", "open", tune_ok(), {"close:504"}),
    ("connection.open instead of tune-ok", "start_ok", connection_open("/"), {"eof"}),
    ("bad PLAIN response", "header",
     raw_frame(1, 0, b"\x00\x0a\x00\x0b\x00\x00\x00\x00" + sstr(b"PLAIN")
               + struct.pack(">I", 7) + b"garbage" + sstr(b"en_US")), {"eof"}),
    ("tune-ok frame_max 1024", "start_ok", tune_ok(2047, 1024, 0), {"eof"}),
    ("tune-ok channel_max 0", "start_ok", tune_ok(0, FRAME_MAX, 0), {"eof"}),
    ("unknown vhost", "tuned", connection_open("no-such-vhost"), {"close:530"}),
]


def s_wrong_state(rnd: random.Random) -> Plan:
    name, stage, payload, allowed = rnd.choice(WRONG_STATE)
    return Plan(f"wrong_state[{name}]", stage, payload, frozenset(allowed), False)


def s_huge_table(rnd: random.Random) -> Plan:
    shape = rnd.choice(["wide", "deep", "too_big", "deep_props", "wide_props"])
    queue = f"fz-{rnd.randrange(10**9)}"
    if shape == "wide":
        table = {f"key-{i}-{rnd.randrange(10**6)}": random_value(rnd) for i in range(3000)}
        args = enc_table(table, rnd)
        while len(args) > FRAME_MAX - 300:
            table.popitem()
            args = enc_table(table, rnd)
        payload = raw_frame(1, 1, declare_payload(queue, args))
        allowed = {"clean", "close:5xx"}
    elif shape == "deep":
        payload = raw_frame(1, 1, declare_payload(queue, deep_table(rnd.choice([50, 900,
                                                                                 5000, 18000]))))
        allowed = {"clean", "close:5xx"}
    elif shape == "too_big":
        args = struct.pack(">I", 200000) + b"\x01aS" + struct.pack(">I", 199990) + b"x" * 199990
        payload = raw_frame(1, 1, declare_payload(queue, args))
        return Plan("huge_table[too_big]", "channel", payload, frozenset({"close:501"}), False)
    else:
        # huge message headers: wide ones fit in frame_max, deep ones test recursion; the
        # expiration after them makes the broker skip over the table to read it, and the
        # headers-exchange binding makes it match on it
        if shape == "deep_props":
            headers = deep_table(rnd.choice([100, 900, 5000]))
        else:
            table = {f"h{i}": random_value(rnd) for i in range(1500)}
            headers = enc_table(table, rnd)
            while len(headers) > FRAME_MAX - 400:
                table.popitem()
                headers = enc_table(table, rnd)
        props = struct.pack(">H", 0x2100) + headers + sstr(b"60000")
        exchange = rnd.choice(["", "amq.headers"])
        bind = raw_frame(1, 1, struct.pack(">IH", 0x00320014, 0) + sstr(queue.encode())
                         + sstr(b"amq.headers") + sstr(b"") + b"\x00"
                         + enc_table({"x-match": "any", "h1": 1, "a": {}}, rnd))
        header = raw_frame(2, 1, struct.pack(">HHQ", 60, 0, 3) + props)
        body = raw_frame(3, 1, b"abc")
        publish = publish_frames(1, b"", FRAME_MAX, exchange, queue)[0]
        declare = raw_frame(1, 1, declare_payload(queue, enc_table({}, rnd)))
        get = raw_frame(1, 1, struct.pack(">IH", 0x003C0046, 0) + sstr(queue.encode())
                        + b"\x01")
        payload = declare + bind + publish + header + body + get
        allowed = {"clean", "close:5xx"}
    return Plan(f"huge_table[{shape}]", "channel", payload, frozenset(allowed), False)


def s_random_arguments(rnd: random.Random) -> Plan:
    """Well-formed methods whose field tables and properties hold values of every type."""
    queue = f"fz-{rnd.randrange(10**9)}"
    args = enc_table(random_table(rnd), rnd)
    what = rnd.choice(["queue.declare", "exchange.declare", "basic.consume", "queue.bind",
                       "publish"])
    declare = raw_frame(1, 1, declare_payload(queue, enc_table({}, rnd)))
    if what == "queue.declare":
        payload = raw_frame(1, 1, declare_payload(queue, args))
    elif what == "exchange.declare":
        kind = rnd.choice(["direct", "topic", "fanout", "headers", "x-nope"])
        payload = raw_frame(1, 1, exchange_declare_payload(f"fz-x-{queue}", kind, args))
    elif what == "basic.consume":
        payload = declare + raw_frame(1, 1, consume_payload(queue, args))
    elif what == "queue.bind":
        payload = declare + raw_frame(1, 1, struct.pack(">IH", 0x00320014, 0)
                                      + sstr(queue.encode()) + sstr(b"amq.headers")
                                      + sstr(b"rk") + b"\x00" + args)
    else:
        props = C.Basic.Properties(
            expiration=rnd.choice([None, "", "0", "-1", "abc", "99999999999", "100"]),
            priority=rnd.choice([None, 0, 9, 255]),
            user_id=rnd.choice([None, "guest", "mallory"]),
            delivery_mode=rnd.choice([None, 1, 2]),
            reply_to=rnd.choice([None, "amq.rabbitmq.reply-to", "x"]))
        header = bytearray(content_header(1, 3, props))
        if rnd.random() < 0.5:  # add a random headers table
            flags = struct.unpack_from(">H", header, 19)[0]
            if not flags & 0x2000:
                table = enc_table(random_table(rnd), rnd)
                values = bytes(header[21:-1])
                # content_type/content_encoding come before headers in the property order
                split = 0
                for bit in (0x8000, 0x4000):
                    if flags & bit:
                        split += 1 + values[split]
                new_props = (struct.pack(">H", flags | 0x2000) + values[:split] + table
                             + values[split:])
                header = bytearray(raw_frame(2, 1, struct.pack(">HHQ", 60, 0, 3) + new_props))
        publish = publish_frames(1, b"", FRAME_MAX, rnd.choice(["", "amq.direct", "nope"]),
                                 queue)[0]
        get = raw_frame(1, 1, struct.pack(">IH", 0x003C0046, 0) + sstr(queue.encode())
                        + b"\x01")
        payload = declare + publish + bytes(header) + raw_frame(3, 1, b"abc") + get
    return Plan(f"random_arguments[{what}]", "channel", payload,
                frozenset({"clean", "close:5xx"}), False)


SCENARIOS = [
    (s_bad_header, 2), (s_garbage_in_handshake, 2), (s_garbage_after_open, 3),
    (s_random_frames, 3), (s_truncated_frame, 2), (s_oversize_frame, 1), (s_bad_frame_end, 1),
    (s_mutated_valid, 3), (s_wrong_state, 4), (s_huge_table, 2), (s_random_arguments, 4),
]


def make_plans(seed: int, n: int) -> list[Plan]:
    rnd = random.Random(seed)
    funcs = [f for f, weight in SCENARIOS for _ in range(weight)]
    plans = []
    for i in range(n):
        # cover every scenario (and, in CI, every wrong-state case) before drawing at random
        if i < len(SCENARIOS):
            func = SCENARIOS[i][0]
        else:
            func = rnd.choice(funcs)
        plans.append(func(random.Random(rnd.randrange(2**32))))
    return plans


# ---- the well-behaved client -------------------------------------------------------------

class GoodTraffic:
    """Publisher with confirms and consumer with manual acks on queue ``fuzz-good``."""

    def __init__(self, url: str) -> None:
        self.params = pika.URLParameters(url)
        self.confirmed: list[int] = []
        self.consumed: list[int] = []
        self.redelivered = 0
        self.errors: list[str] = []
        self.stop_publishing = threading.Event()
        self.stop_consuming = threading.Event()
        self.ready = threading.Event()
        self.threads = [threading.Thread(target=self._consume, name="good-consumer"),
                        threading.Thread(target=self._publish, name="good-publisher")]

    def start(self) -> None:
        self.threads[0].start()
        assert self.ready.wait(10), "consumer did not start"
        self.threads[1].start()

    def _publish(self) -> None:
        try:
            conn = pika.BlockingConnection(self.params)
            ch = conn.channel()
            ch.confirm_delivery()
            seq = 0
            while not self.stop_publishing.is_set():
                ch.basic_publish("", "fuzz-good", str(seq).encode(), mandatory=True)
                self.confirmed.append(seq)  # basic_publish returned: the broker acked it
                seq += 1
                if seq % 50 == 0:
                    time.sleep(0.005)
            conn.close()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(f"publisher: {exc!r}")

    def _consume(self) -> None:
        try:
            conn = pika.BlockingConnection(self.params)
            ch = conn.channel()
            ch.queue_declare("fuzz-good")
            ch.basic_qos(prefetch_count=100)

            def on_message(channel, method, _props, body):  # type: ignore[no-untyped-def]
                if method.redelivered:
                    self.redelivered += 1
                self.consumed.append(int(body))
                channel.basic_ack(method.delivery_tag)

            ch.basic_consume("fuzz-good", on_message)
            self.ready.set()
            while not self.stop_consuming.is_set():
                conn.process_data_events(time_limit=0.05)
            conn.close()
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"consumer: {exc!r}")
            self.ready.set()

    def finish(self, timeout: float = 30.0) -> None:
        self.stop_publishing.set()
        self.threads[1].join(timeout)
        deadline = time.monotonic() + timeout
        while len(self.consumed) < len(self.confirmed) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # anything beyond the confirmed ones would show up as a duplicate
        self.stop_consuming.set()
        self.threads[0].join(timeout)


# ---- the test ----------------------------------------------------------------------------

def live_fuzz(broker, caplog, n: int, seed: int, workers: int = 12) -> dict:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING)
    plans = make_plans(seed, n)
    good = GoodTraffic(broker.url)
    good.start()
    outcomes: list[Outcome] = []
    failures: list[str] = []
    try:
        time.sleep(0.5)
        gc.collect()
        rss_before = rss_bytes()
        sessions_before = broker.call(lambda: len(broker.server.sessions))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = {pool.submit(run_bad_connection, broker.port, p): p for p in plans}
            for fut in concurrent.futures.as_completed(futures):
                plan = futures[fut]
                try:
                    out = fut.result()
                except Exception as exc:  # noqa: BLE001 - collected, reported below
                    failures.append(f"{plan.scenario}: {type(exc).__name__}: {exc}")
                    continue
                outcomes.append(out)
                if not out.ok(plan.allowed):
                    failures.append(
                        f"{plan.scenario}: got {out.kind} {out.detail!r} (replies "
                        f"{out.replies}), expected one of {sorted(plan.allowed)}")
    finally:
        good.finish()
    # the bad sessions go away (some wait out a close timer)
    deadline = time.monotonic() + CLOSE_DEADLINE
    while time.monotonic() < deadline:
        if broker.call(lambda: len(broker.server.sessions)) <= sessions_before - 2:
            break
        time.sleep(0.2)
    sessions_after = broker.call(lambda: len(broker.server.sessions))
    gc.collect()
    rss_after = rss_bytes()

    # the broker still serves
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    ch = conn.channel()
    ch.queue_declare("after-fuzz")
    ch.basic_publish("", "after-fuzz", b"still here")
    method, _props, body = ch.basic_get("after-fuzz", auto_ack=True)
    assert body == b"still here"
    conn.close()
    assert broker.thread.is_alive()

    # no session object outlives its connection
    from broker.session import Session
    deadline = time.monotonic() + CLOSE_DEADLINE
    while True:
        gc.collect()
        alive = sum(1 for o in gc.get_objects() if type(o) is Session)
        if alive == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    internal = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    kinds = Counter(o.kind for o in outcomes)
    report = {
        "inputs_tried": len(plans),
        "seed": seed,
        "outcomes": dict(sorted(kinds.items())),
        "channel_closes": dict(Counter(c for o in outcomes for c in o.channel_codes)),
        "slowest_s": round(max((o.elapsed for o in outcomes), default=0.0), 2),
        "confirmed": len(good.confirmed),
        "consumed": len(good.consumed),
        "redelivered": good.redelivered,
        "rss_before_mb": round(rss_before / 2**20, 1),
        "rss_after_mb": round(rss_after / 2**20, 1),
        "sessions_before": sessions_before,
        "sessions_after": sessions_after,
        "session_objects_alive": alive,
    }
    print("live fuzz:", report)

    assert not failures, "\n".join(sorted(failures)[:40])
    assert not internal, f"{len(internal)} errors logged by the broker, first: {internal[:5]}"
    assert not good.errors, good.errors
    assert good.confirmed, "the good publisher got no confirm at all"
    assert good.consumed[:len(good.confirmed)] == good.confirmed, (
        "confirmed messages lost, duplicated or out of order: "
        f"{len(good.confirmed)} confirmed, {len(good.consumed)} consumed")
    assert len(good.consumed) == len(set(good.consumed)), "duplicates consumed"
    assert sessions_after <= sessions_before - 2, (sessions_before, sessions_after)
    assert alive == 0, f"{alive} Session objects still alive after every connection closed"
    assert rss_after - rss_before < RSS_GROWTH_LIMIT, report
    return report


def test_live_fuzz(broker, caplog, record_property) -> None:  # type: ignore[no-untyped-def]
    report = live_fuzz(broker, caplog, env_int("LIVE_FUZZ_CONNECTIONS", 50),
                       env_int("LIVE_FUZZ_SEED", 9091))
    for key, value in report.items():
        record_property(key, value)


@pytest.mark.slow
def test_live_fuzz_soak(broker, caplog, record_property) -> None:  # type: ignore[no-untyped-def]
    seed = env_int("LIVE_FUZZ_SEED", int.from_bytes(os.urandom(4), "big"))
    report = live_fuzz(broker, caplog, env_int("LIVE_FUZZ_SOAK_CONNECTIONS", 1000), seed)
    for key, value in report.items():
        record_property(key, value)


# ---- focused live cases (each one a finding of the fuzzers, or a table of RabbitMQ answers) --

def run_plans(port: int, plans: list[Plan]) -> list[str]:
    failures = []
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = {pool.submit(run_bad_connection, port, p): p for p in plans}
        for fut in concurrent.futures.as_completed(futures):
            plan = futures[fut]
            try:
                out = fut.result()
            except Exception as exc:  # noqa: BLE001
                failures.append(f"{plan.scenario}: {type(exc).__name__}: {exc}")
                continue
            if not out.ok(plan.allowed):
                failures.append(f"{plan.scenario}: got {out.kind} {out.detail!r}, expected "
                                f"{sorted(plan.allowed)}")
    return sorted(failures)


def internal_errors(caplog) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_live_wrong_state_table(broker, caplog) -> None:  # type: ignore[no-untyped-def]
    """Every wrong-state / wrong-channel case gets exactly RabbitMQ's answer."""
    caplog.set_level(logging.WARNING)
    plans = [Plan(f"wrong_state[{name}]", stage, payload, frozenset(allowed), False)
             for name, stage, payload, allowed in WRONG_STATE]
    assert run_plans(broker.port, plans) == []
    assert internal_errors(caplog) == []


PUBLISH = b"\x00\x3c\x00\x28\x00\x00"


@pytest.mark.parametrize("payload", [
    PUBLISH + b"\x00",                              # cut before the routing key
    PUBLISH + b"\x00\x01q",                         # cut before the bits
    PUBLISH + b"\x05amq",                           # cut inside the exchange name
    PUBLISH + b"\x00\x01q\x00junk",                 # trailing bytes
    PUBLISH + b"\x00\x02\xff\xfe\x00",              # routing key not UTF-8
], ids=["no-rk", "no-bits", "cut-exchange", "trailing-junk", "non-utf8-rk"])
def test_live_malformed_publish(broker, caplog, payload) -> None:  # type: ignore[no-untyped-def]
    """A malformed basic.publish gets a connection.close (RabbitMQ: 501 "cannot decode"; a
    non-UTF-8 routing key is just bytes to RabbitMQ, so the publish may also go through),
    never an internal error and a dropped socket."""
    caplog.set_level(logging.WARNING)
    frames = raw_frame(1, 1, payload) + content_header(1, 0)
    frames += method_frame(1, C.Basic.Qos(prefetch_count=1))  # a reply if all went through
    plan = Plan("malformed_publish", "channel", frames, frozenset({"clean", "close:5xx"}),
                False)
    out = run_bad_connection(broker.port, plan)
    allowed = {"close:501", "clean"} if payload.endswith(b"\xff\xfe\x00") else {"close:501"}
    assert out.kind in allowed, (out.kind, out.detail, out.replies)
    assert internal_errors(caplog) == []


def test_live_deep_headers_are_routed(broker, caplog) -> None:  # type: ignore[no-untyped-def]
    """A message whose headers table nests 600 deep, published to a headers exchange with a
    binding: RabbitMQ decodes it and routes it; at worst a 5xx close, never an internal error
    (found by the live fuzzer: RecursionError in protocol/properties.py headers())."""
    caplog.set_level(logging.WARNING)
    queue = b"deep-headers"
    props = struct.pack(">H", 0x2000) + deep_table(600)
    declare = raw_frame(1, 1, declare_payload(queue.decode(), enc_table({}, random.Random())))
    bind = raw_frame(1, 1, struct.pack(">IH", 0x00320014, 0) + sstr(queue)
                     + sstr(b"amq.headers") + sstr(b"") + b"\x00"
                     + enc_table({"x-match": "any", "a": {}}, random.Random()))
    publish = publish_frames(1, b"", FRAME_MAX, "amq.headers", "")[0]
    header = raw_frame(2, 1, struct.pack(">HHQ", 60, 0, 3) + props)
    get = raw_frame(1, 1, struct.pack(">IH", 0x003C0046, 0) + sstr(queue) + b"\x01")
    payload = declare + bind + publish + header + raw_frame(3, 1, b"abc") + get
    plan = Plan("deep_headers", "channel", payload, frozenset({"clean", "close:5xx"}), False)
    assert run_plans(broker.port, [plan]) == []
    assert internal_errors(caplog) == []


def test_live_deep_table_memory(broker) -> None:  # type: ignore[no-untyped-def]
    """One 126 KB queue.declare whose arguments nest 18000 deep must not cost the broker tens
    of MB (found by the live fuzzer: the table decoder copies the rest of the buffer at every
    level, ~500 levels x 126 KB before the RecursionError; RSS keeps the high-water mark)."""
    gc.collect()
    before = rss_bytes()
    plan = Plan("deep_table", "channel",
                raw_frame(1, 1, declare_payload("deep", deep_table(18000))),
                frozenset({"clean", "close:5xx"}), False)
    assert run_plans(broker.port, [plan]) == []
    gc.collect()
    grown = rss_bytes() - before
    assert grown < 10 * 2**20, f"RSS grew by {grown / 2**20:.1f} MB for one 126 KB frame"


@pytest.mark.parametrize("name", ["café", "очередь", "队列", "tab\there", "bell\x07"])
def test_live_any_utf8_queue_name(broker, caplog, name) -> None:  # type: ignore[no-untyped-def]
    """RabbitMQ takes any UTF-8 shortstr as a queue name; found by the live fuzzer: the
    broker's queue.declare-ok goes through pamqp's constructor, whose client-side name check
    refuses non-ASCII and control characters -> ValueError, internal error, socket dropped."""
    caplog.set_level(logging.WARNING)
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        ch = conn.channel()
        assert ch.queue_declare(name, exclusive=True).method.queue == name
        ch.basic_publish("", name, b"hi")
        method, _props, body = ch.basic_get(name, auto_ack=True)
        assert body == b"hi"
        assert ch.queue_delete(name).method.message_count == 0
    finally:
        if conn.is_open:
            conn.close()
    assert internal_errors(caplog) == []


@pytest.mark.parametrize("flags,values", [
    (0x0010, b""),                    # user_id flagged, no bytes at all
    (0x0010, b"\x05gue"),             # user_id cut short
    (0x0100, b"\x09600"),             # expiration cut short
    (0x2000, b"\x00\x00\x00\x10\x01a"),  # headers table longer than the properties
    (0x0110, b"\x0260"),              # expiration cut, user_id missing
], ids=["user-id-missing", "user-id-cut", "expiration-cut", "headers-cut", "both-cut"])
def test_live_truncated_properties(broker, caplog, flags, values) -> None:  # type: ignore[no-untyped-def]
    """A content header whose property flags announce more than its bytes hold (found by the
    live fuzzer: IndexError in protocol/properties.py peek_shortstr from
    Session.check_publish -> internal error, socket dropped without a close). Expected: a
    connection.close with a 5xx code (or the message is taken), never an internal error."""
    caplog.set_level(logging.WARNING)
    queue = "props-q"
    declare = raw_frame(1, 1, declare_payload(queue, enc_table({}, random.Random())))
    header = raw_frame(2, 1, struct.pack(">HHQH", 60, 0, 3, flags) + values)
    payload = (declare + publish_frames(1, b"", FRAME_MAX, "", queue)[0] + header
               + raw_frame(3, 1, b"abc")
               + raw_frame(1, 1, struct.pack(">IH", 0x003C0046, 0) + sstr(queue.encode())
                           + b"\x01"))
    plan = Plan("truncated_properties", "channel", payload, frozenset({"clean", "close:5xx"}),
                False)
    out = run_bad_connection(broker.port, plan)
    assert out.ok(plan.allowed), (out.kind, out.detail, out.replies)
    assert internal_errors(caplog) == []

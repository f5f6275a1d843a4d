"""Hand-encoded field tables of every AMQP type (pamqp refuses some), deeply nested tables and
the method payloads that carry them, for the live fuzz tests.
"""

from __future__ import annotations

import random
import struct
from datetime import datetime
from decimal import Decimal

from fuzz_wire import sstr


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

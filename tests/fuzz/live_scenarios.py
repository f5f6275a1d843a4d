"""The malformed inputs of the live fuzz test: one generator per scenario, each returning a Plan
with the outcomes RabbitMQ allows, and the table of wrong-state / wrong-channel cases.
"""

from __future__ import annotations

import random
import struct

from fuzz_wire import (
    GOOD_HEADERS,
    connection_open,
    content_header,
    method_frame,
    publish_frames,
    raw_frame,
    sstr,
    start_ok,
    tune_ok,
)
from live_client import FRAME_MAX, Plan
from live_payloads import (
    consume_payload,
    declare_payload,
    deep_table,
    enc_table,
    exchange_declare_payload,
    random_table,
    random_value,
)
from pamqp import commands as C

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

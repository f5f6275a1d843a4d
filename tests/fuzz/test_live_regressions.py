"""Focused live cases against a running broker, each one a finding of the fuzzers or a table of
RabbitMQ answers: wrong-state methods, malformed publishes, deeply nested headers and tables,
UTF-8 queue names, truncated content properties.
"""

from __future__ import annotations

import gc
import logging
import random
import struct

import pika
import pytest
from fuzz_wire import content_header, method_frame, publish_frames, raw_frame, sstr
from live_client import FRAME_MAX, Plan, internal_errors, rss_bytes, run_bad_connection, run_plans
from live_payloads import declare_payload, deep_table, enc_table
from live_scenarios import WRONG_STATE
from pamqp import commands as C


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

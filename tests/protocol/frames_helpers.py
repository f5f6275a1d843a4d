"""Client frames and ConnectionMachine drivers shared by the tests/protocol tests.

ConnectionMachine is driven with literal bytes; expected answers come from
rabbitmq-behaviour.md. Client frames are built with struct (or pamqp.frame.marshal where the
bytes are uninteresting); assertions are on the exact bytes the machine queues and the exact
events it yields. Section numbers refer to /work/shared/rabbitmq-behaviour.md.
"""

from __future__ import annotations

import struct

from pamqp import commands as C
from pamqp import encode, frame

from protocol import errors
from protocol.connection import ConnectionMachine
from protocol.events import Fault, LoginAttempt, Method, OpenVhost

# ---- literal frames ----------------------------------------------------------------------

HEADER = b"AMQP\x00\x00\x09\x01"
# connection.tune 2047 / 131072 / 60 (section 1: payload 000a001e 07ff 00020000 003c)
TUNE = b"\x01\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x1e\x07\xff\x00\x02\x00\x00\x00\x3c\xce"
# connection.open-ok, known_hosts "" (section 1: payload 000a0029 00)
OPEN_OK = b"\x01\x00\x00\x00\x00\x00\x05\x00\x0a\x00\x29\x00\xce"
CONNECTION_CLOSE_OK = b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x33\xce"
HEARTBEAT = b"\x08\x00\x00\x00\x00\x00\x00\xce"

SERVER_PROPERTIES = {
    "capabilities": {
        "publisher_confirms": True,
        "exchange_exchange_bindings": True,
        "basic.nack": True,
        "consumer_cancel_notify": True,
        "connection.blocked": True,
        "consumer_priorities": True,
        "authentication_failure_close": True,
        "per_consumer_qos": True,
        "direct_reply_to": True,
    },
    "cluster_name": "rabbit@test",
    "copyright": "Copyright (c) 2007-2022 VMware, Inc. or its affiliates.",
    "information": "Licensed under the MPL 2.0. Website: https://rabbitmq.com",
    "platform": "Erlang/OTP 25.2.3",
    "product": "RabbitMQ",
    "version": "3.10.8",
}


def raw_frame(ftype: int, channel: int, payload: bytes, end: bytes = b"\xce") -> bytes:
    return struct.pack(">BHI", ftype, channel, len(payload)) + payload + end


def sstr(value: str) -> bytes:
    raw = value.encode()
    return bytes((len(raw),)) + raw


def lstr(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def method_frame(channel: int, payload: bytes) -> bytes:
    return raw_frame(1, channel, payload)


def channel_open(channel: int) -> bytes:
    # channel.open with out_of_band "0", as pamqp and most clients send it
    return method_frame(channel, b"\x00\x14\x00\x0a\x01\x30")


def channel_close(channel: int, code: int = 200, text: str = "bye") -> bytes:
    return method_frame(channel, b"\x00\x14\x00\x28" + struct.pack(">H", code) + sstr(text)
                        + b"\x00\x00\x00\x00")


def channel_close_ok(channel: int) -> bytes:
    return method_frame(channel, b"\x00\x14\x00\x29")


def queue_declare(channel: int, queue: str = "q") -> bytes:
    # ticket 0, queue, bits 0, arguments {}
    return method_frame(channel, b"\x00\x32\x00\x0a\x00\x00" + sstr(queue) + b"\x00"
                        + b"\x00\x00\x00\x00")


def publish(channel: int, exchange: str = "", routing_key: str = "q",
            mandatory: bool = False, immediate: bool = False) -> bytes:
    bits = int(mandatory) | int(immediate) << 1
    return method_frame(channel, b"\x00\x3c\x00\x28\x00\x00" + sstr(exchange)
                        + sstr(routing_key) + bytes((bits,)))


def content_header(channel: int, size: int, props: bytes = b"\x00\x00",
                   class_id: int = 60) -> bytes:
    return raw_frame(2, channel, struct.pack(">HHQ", class_id, 0, size) + props)


def body(channel: int, data: bytes) -> bytes:
    return raw_frame(3, channel, data)


def start_ok(mechanism: str, response: bytes, client_properties: dict | None = None,
             locale: str = "en_US") -> bytes:
    payload = (b"\x00\x0a\x00\x0b" + encode.field_table(client_properties or {})
               + sstr(mechanism) + lstr(response) + sstr(locale))
    return method_frame(0, payload)


def tune_ok(channel_max: int = 2047, frame_max: int = 131072, heartbeat: int = 60) -> bytes:
    return method_frame(0, b"\x00\x0a\x00\x1f" + struct.pack(">HIH", channel_max, frame_max,
                                                              heartbeat))


def connection_open(vhost: str = "/") -> bytes:
    return method_frame(0, b"\x00\x0a\x00\x28" + sstr(vhost) + b"\x00\x00")


def connection_close(code: int = 200, text: str = "Goodbye") -> bytes:
    return method_frame(0, b"\x00\x0a\x00\x32" + struct.pack(">H", code) + sstr(text)
                        + b"\x00\x00\x00\x00")


def connection_close_ok() -> bytes:
    return method_frame(0, b"\x00\x0a\x00\x33")


def channel_close_ok_bytes(channel: int) -> bytes:
    return b"\x01" + struct.pack(">H", channel) + b"\x00\x00\x00\x04\x00\x14\x00\x29\xce"


PLAIN_GUEST = start_ok("PLAIN", b"\x00guest\x00guest")


# ---- driving helpers ---------------------------------------------------------------------


def feed(machine: ConnectionMachine, data: bytes, now: float = 0.0) -> list:
    machine.receive_data(data, now)
    return list(machine.events())


def feed_bytewise(machine: ConnectionMachine, data: bytes) -> list:
    events: list = []
    for i in range(len(data)):
        events += feed(machine, data[i:i + 1])
    return events


def new_machine(**kwargs) -> ConnectionMachine:
    return ConnectionMachine(dict(SERVER_PROPERTIES), **kwargs)


def open_machine(channel_max: int = 2047, frame_max: int = 131072,
                 heartbeat: int = 60, **machine_kwargs) -> ConnectionMachine:
    """A machine taken through the whole handshake, with nothing queued."""
    m = new_machine(**machine_kwargs)
    assert feed(m, HEADER) == []
    assert m.data_to_send()[7:13] == b"\x00\x0a\x00\x0a\x00\x09"  # connection.start 0-9
    events = feed(m, PLAIN_GUEST)
    assert len(events) == 1 and isinstance(events[0], LoginAttempt)
    m.accept_login()
    assert m.data_to_send() == TUNE
    assert feed(m, tune_ok(channel_max, frame_max, heartbeat)) == []
    assert feed(m, connection_open("/")) == [OpenVhost("/")]
    m.open_ok()
    assert m.data_to_send() == OPEN_OK
    assert m.is_open
    return m


def open_channel(machine: ConnectionMachine, channel: int) -> None:
    events = feed(machine, channel_open(channel))
    assert len(events) == 1, events
    assert isinstance(events[0], Method)
    assert events[0].channel == channel
    assert isinstance(events[0].method, C.Channel.Open)


def single_fault(events: list) -> errors.AMQPError:
    assert len(events) == 1, events
    assert isinstance(events[0], Fault), events
    return events[0].error


def assert_fault(events: list, code: int, reply_text: str, class_id: int = 0,
                 method_id: int = 0) -> errors.AMQPError:
    err = single_fault(events)
    assert isinstance(err, errors.AMQPError)
    assert (err.code, err.reply_text, err.class_id, err.method_id) == (
        code, reply_text, class_id, method_id)
    assert err.connection_scope
    return err


def parse_one(data: bytes):
    consumed, channel, obj = frame.unmarshal(data)
    assert consumed == len(data), "more than one frame queued"
    return channel, obj

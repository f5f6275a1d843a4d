"""ConnectionMachine, section 8: frame-level errors (wrong channel, unexpected content,
oversize and badly ended frames, undecodable methods) and the connection.close they lead to.
Literal client bytes in, exact bytes and events out; frames_helpers.py builds them.
"""

from __future__ import annotations

import struct

import pytest
from frames_helpers import (
    assert_fault,
    body,
    channel_close,
    channel_open,
    connection_close_ok,
    content_header,
    feed,
    method_frame,
    open_channel,
    open_machine,
    parse_one,
    publish,
    queue_declare,
    raw_frame,
    single_fault,
    sstr,
)
from pamqp import commands as C
from pamqp import frame

from protocol import errors
from protocol.connection import State
from protocol.events import CloseTransport, Publish

# ======================================================================================
# Section 8: frame-level errors
# ======================================================================================


@pytest.mark.parametrize("data,ids", [
    (queue_declare(0), (50, 10)),
    (publish(0), (60, 40)),
    (channel_open(0), (20, 10)),
    (channel_close(0), (20, 40)),
    (method_frame(0, b"\x00\x3c\x00\x0a\x00\x00\x00\x00\x00\x0a\x00"), (60, 10)),  # basic.qos
])
def test_channel_method_on_channel_0_is_504(data, ids):
    m = open_machine()
    assert_fault(feed(m, data), 504,
                 "CHANNEL_ERROR - unexpected method in connection state running", *ids)


def test_content_header_without_publish_is_505():
    m = open_machine()
    open_channel(m, 1)
    assert_fault(feed(m, content_header(1, 5)), 505,
                 "UNEXPECTED_FRAME - expected method frame, got non method frame instead")


def test_body_without_publish_is_505():
    m = open_machine()
    open_channel(m, 1)
    assert_fault(feed(m, body(1, b"hello")), 505,
                 "UNEXPECTED_FRAME - expected method frame, got non method frame instead")


def test_content_header_on_channel_0_is_505():
    m = open_machine()
    assert_fault(feed(m, content_header(0, 5)), 505,
                 "UNEXPECTED_FRAME - type 2, all octets = <<0,60,0,0,0,0,0,0,0,0,0,5,0,0>>")


def test_body_on_channel_0_is_505():
    m = open_machine()
    assert_fault(feed(m, body(0, b"hello")), 505,
                 'UNEXPECTED_FRAME - type 3, all octets = <<"hello">>')


def test_publish_then_method_is_505_expected_content_header():
    m = open_machine()
    open_channel(m, 1)
    assert feed(m, publish(1)) == []
    assert_fault(feed(m, queue_declare(1)), 505,
                 "UNEXPECTED_FRAME - expected content header for class 60, got non content "
                 "header frame instead", 60, 40)


def test_publish_and_header_then_method_is_505_expected_content_body():
    m = open_machine()
    open_channel(m, 1)
    assert feed(m, publish(1) + content_header(1, 10)) == []
    assert_fault(feed(m, queue_declare(1)), 505,
                 "UNEXPECTED_FRAME - expected content body, got non content body frame instead",
                 60, 40)


def test_header_with_class_50_is_505():
    m = open_machine()
    open_channel(m, 1)
    assert feed(m, publish(1)) == []
    assert_fault(feed(m, content_header(1, 5, class_id=50)), 505,
                 "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 "
                 "instead", 60, 40)


@pytest.mark.parametrize("bodies", [[b"x" * 10], [b"abc", b"def"]])
def test_body_longer_than_size_waits_then_method_is_505(bodies):
    m = open_machine()
    open_channel(m, 1)
    data = publish(1) + content_header(1, 5) + b"".join(body(1, b) for b in bodies)
    assert feed(m, data) == []
    assert m.data_to_send() == b""
    assert_fault(feed(m, queue_declare(1)), 505,
                 "UNEXPECTED_FRAME - expected content body, got non content body frame instead",
                 60, 40)


def test_size_0_header_then_empty_body_frame_is_505():
    m = open_machine()
    open_channel(m, 1)
    events = feed(m, publish(1) + content_header(1, 0))
    assert len(events) == 1 and isinstance(events[0], Publish)
    assert_fault(feed(m, body(1, b"")), 505,
                 "UNEXPECTED_FRAME - expected method frame, got non method frame instead")


@pytest.mark.parametrize("size", [131073, 200000])
def test_oversize_body_frame_is_frame_too_large(size):
    m = open_machine()
    open_channel(m, 1)
    assert feed(m, publish(1) + content_header(1, size)) == []
    assert_fault(feed(m, body(1, b"b" * size)), 501,
                 f"FRAME_ERROR - type 3, all octets = <<>>: {{frame_too_large,{size},131064}}")


def test_oversize_body_with_frame_max_4096_quotes_4088():
    m = open_machine(frame_max=4096)
    open_channel(m, 1)
    assert feed(m, publish(1) + content_header(1, 5000)) == []
    assert_fault(feed(m, body(1, b"b" * 5000)), 501,
                 "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,5000,4088}")


def test_oversize_method_frame_is_frame_too_large():
    m = open_machine()
    open_channel(m, 1)
    payload = b"\x00\x32\x00\x0a" + b"\x00" * (200035 - 4)
    assert_fault(feed(m, method_frame(1, payload)), 501,
                 "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,200035,131064}")


@pytest.mark.parametrize("size", [131064, 131065, 131072])
def test_body_payload_up_to_frame_max_is_accepted(size):
    m = open_machine()
    open_channel(m, 1)
    data = b"".join(bytes((i % 256,)) for i in range(256)) * (size // 256 + 1)
    data = data[:size]
    events = feed(m, publish(1) + content_header(1, size) + body(1, data))
    assert len(events) == 1 and isinstance(events[0], Publish)
    assert events[0].body == data


@pytest.mark.parametrize("ftype", [9, 4, 0])
def test_unknown_frame_type_is_501(ftype):
    m = open_machine()
    assert_fault(feed(m, raw_frame(ftype, 0, b"abc")), 501,
                 f'FRAME_ERROR - type {ftype}, all octets = <<"abc">>: unknown_frame')


def test_method_frame_with_bad_end_byte_is_501():
    m = open_machine()
    open_channel(m, 1)
    payload = b"\x00\x32\x00\x0a\x00\x00\x00\x00\x00\x00\x00\x00"  # queue.declare, all zero
    events = feed(m, raw_frame(1, 1, payload, end=b"\x00"))
    # RabbitMQ's pretty printer breaks the term: newline + 53 spaces (section 8)
    assert_fault(events, 501,
                 "FRAME_ERROR - type 1, all octets = <<0,50,0,10,0,0,0,0,0,0,0,0>>: "
                 "{invalid_frame_end_marker,\n" + " " * 53 + "0}")


def test_heartbeat_with_bad_end_byte_is_501():
    m = open_machine()
    assert_fault(feed(m, b"\x08\x00\x00\x00\x00\x00\x00\xff"), 501,
                 "FRAME_ERROR - type 8, all octets = <<>>: {invalid_frame_end_marker,255}")


def test_heartbeat_on_channel_1_is_505():
    m = open_machine()
    open_channel(m, 1)
    assert_fault(feed(m, raw_frame(8, 1, b"")), 505, "UNEXPECTED_FRAME - type 8, all octets = <<>>")


def test_heartbeat_with_payload_is_501():
    m = open_machine()
    assert_fault(feed(m, raw_frame(8, 0, b"abc")), 501,
                 'FRAME_ERROR - type 8, all octets = <<"abc">>: unknown_frame')


def test_method_frame_of_two_bytes_is_501():
    m = open_machine()
    open_channel(m, 1)
    assert_fault(feed(m, method_frame(1, b"\x00\x32")), 501,
                 "FRAME_ERROR - type 1, all octets = <<0,50>>: unknown_frame")


def test_queue_declare_with_truncated_arguments_is_501():
    m = open_machine()
    open_channel(m, 1)
    assert_fault(feed(m, method_frame(1, b"\x00\x32\x00\x0a\x00\x00\x05ab")), 501,
                 "FRAME_ERROR - cannot decode <<0,0,5,97,98>>", 50, 10)


def test_queue_declare_with_trailing_junk_is_501():
    m = open_machine()
    open_channel(m, 1)
    args = b"\x00\x00" + sstr("q") + b"\x00" + b"\x00\x00\x00\x00" + b"junk"
    expected = "<<" + ",".join(str(b) for b in args) + ">>"
    assert_fault(feed(m, method_frame(1, b"\x00\x32\x00\x0a" + args)), 501,
                 f"FRAME_ERROR - cannot decode {expected}", 50, 10)


@pytest.mark.parametrize("index", [b"\x00\x3c\x03\xe7", b"\x00\x63\x00\x0a"])  # 60/999, 99/10
def test_unknown_method_is_an_immediate_silent_close(index):
    m = open_machine()
    open_channel(m, 1)
    events = feed(m, method_frame(1, index + b"\x00\x00"))
    assert len(events) == 1 and isinstance(events[0], CloseTransport), events
    assert events[0].delay == 0.0
    assert m.data_to_send() == b""


def test_field_table_with_unknown_type_tag_is_an_immediate_silent_close():
    m = open_machine()
    open_channel(m, 1)
    table = sstr("a") + b"Z" + b"xxx"
    payload = (b"\x00\x32\x00\x0a\x00\x00" + sstr("q") + b"\x00"
               + struct.pack(">I", len(table)) + table)
    events = feed(m, method_frame(1, payload))
    assert len(events) == 1 and isinstance(events[0], CloseTransport), events
    assert events[0].delay == 0.0
    assert m.data_to_send() == b""


def test_fault_then_close_connection_sends_the_close_frame():
    m = open_machine()
    open_channel(m, 1)
    feed(m, publish(1))
    err = single_fault(feed(m, queue_declare(1)))
    m.close_connection(err)
    data = m.data_to_send()
    assert data == frame.marshal(C.Connection.Close(505, err.reply_text, 60, 40), 0)
    channel, close = parse_one(data)
    assert channel == 0
    assert (close.reply_code, close.class_id, close.method_id) == (505, 60, 40)
    assert close.reply_text.startswith("UNEXPECTED_FRAME - expected content header")
    events = feed(m, connection_close_ok())
    assert len(events) == 1 and isinstance(events[0], CloseTransport)
    assert m.state is State.CLOSED


@pytest.mark.parametrize("data", [
    b"\x03\x00\x01" + struct.pack(">I", 131073),  # frame_too_large, judged by the header
    raw_frame(1, 1, b"\x00\x32\x00\x0a" + b"\x00" * 8, end=b"\x00"),  # bad frame end
])
def test_after_an_unreadable_frame_nothing_more_is_read(data: bytes) -> None:
    """RabbitMQ stops reading there: the close-ok is never seen (the socket closes 3 s after
    the close frame, the session's doing)."""
    m = open_machine()
    open_channel(m, 1)
    err = single_fault(feed(m, data))
    assert isinstance(err, errors.UnreadableFrame)
    m.close_connection(err)
    m.data_to_send()
    assert feed(m, connection_close_ok()) == []
    assert m.state is State.CLOSING


def test_after_an_unknown_frame_the_close_ok_is_read() -> None:
    m = open_machine()
    err = single_fault(feed(m, raw_frame(9, 0, b"abc")))
    assert not isinstance(err, errors.UnreadableFrame)
    m.close_connection(err)
    events = feed(m, connection_close_ok())
    assert len(events) == 1 and isinstance(events[0], CloseTransport)

"""ConnectionMachine: content limits enforced where the bytes arrive (issue 12).

A header announcing more than the max message size closes its channel at once (406) and the
body frames that follow are dropped as they arrive; a body frame running past the announced
size is a connection error (501, RabbitMQ 4's assembler text); the sizes announced by the
unfinished messages of one connection are capped (``partial_limit``), so the memory held for
partial content is bounded whatever the number of channels.
"""

from __future__ import annotations

from frames_helpers import (
    assert_fault,
    body,
    channel_close,
    channel_close_ok_bytes,
    channel_open,
    content_header,
    feed,
    open_channel,
    open_machine,
    publish,
    queue_declare,
)
from pamqp import commands as C

from protocol import errors
from protocol.events import Fault, Method, Publish


def channel_fault(events: list, channel: int) -> errors.AMQPError:
    assert len(events) == 1 and isinstance(events[0], Fault), events
    fault = events[0]
    assert fault.channel == channel
    assert isinstance(fault.error, errors.AMQPError)
    assert not fault.error.connection_scope
    return fault.error


def feed_as_session(machine, data: bytes) -> list:  # type: ignore[no-untyped-def]
    """Feed as the session reads: a channel fault closes its channel before the next frame
    is parsed (``events()`` is lazy)."""
    machine.receive_data(data, 0.0)
    events = []
    for event in machine.events():
        events.append(event)
        if isinstance(event, Fault) and event.channel:
            machine.close_channel(event.channel, event.error)
    return events


def held(machine) -> int:  # type: ignore[no-untyped-def]
    """Body bytes the machine keeps for unfinished messages."""
    return sum(len(p) for c in machine._content.values() for p in c.parts)


def test_header_over_max_message_size_closes_the_channel_before_any_body():
    m = open_machine(max_message_size=1000)
    open_channel(m, 1)
    err = channel_fault(feed(m, publish(1) + content_header(1, 10 * 1024**3)), 1)
    assert (err.code, err.reply_text, err.class_id, err.method_id) == (
        406, "PRECONDITION_FAILED - message size 10737418240 is larger than configured max "
             "size 1000", 60, 40)
    m.close_channel(1, err)  # what the session does with it
    assert b"\x00\x14\x00\x28\x01\x96" in m.data_to_send()  # channel.close 406
    # the body frames that follow are dropped as they arrive: nothing is kept
    for _ in range(20):
        assert feed(m, body(1, b"z" * 100_000)) == []
        assert held(m) == 0
    assert m.partial_announced == 0
    # other channels work meanwhile; after close-ok the channel number is usable again
    open_channel(m, 2)
    assert feed(m, channel_close_ok_bytes(1)) == []
    events = feed(m, channel_open(1))
    assert len(events) == 1 and isinstance(events[0], Method)


def test_exactly_max_message_size_is_accepted():
    m = open_machine(max_message_size=1000)
    open_channel(m, 1)
    events = feed(m, publish(1) + content_header(1, 1000) + body(1, b"a" * 600)
                  + body(1, b"b" * 400))
    assert len(events) == 1 and isinstance(events[0], Publish)
    assert len(events[0].body) == 1000


def test_body_overrun_is_refused_before_it_is_kept():
    m = open_machine()
    open_channel(m, 1)
    assert feed(m, publish(1) + content_header(1, 10)) == []
    assert_fault(feed(m, body(1, b"x" * 100_000)), 501,
                 "FRAME_ERROR - content body frame exceeds remaining content size", 60, 40)
    assert held(m) == 0


def test_unfinished_messages_of_one_connection_are_capped():
    m = open_machine(max_message_size=1000, partial_limit=1500)
    for ch in (1, 2, 3):
        open_channel(m, ch)
    assert feed(m, publish(1) + content_header(1, 1000) + body(1, b"a" * 999)) == []
    assert m.partial_announced == 1000 and m.has_partial_content
    # a second unfinished message would take the announced total to 1600 > 1500
    err = channel_fault(feed(m, publish(2) + content_header(2, 600)), 2)
    assert (err.code, err.reply_text) == (
        406, "PRECONDITION_FAILED - message size 600 would take the unfinished messages of "
             "this connection to 1600 bytes, above the limit of 1500")
    m.close_channel(2, err)
    # within the cap is fine, and finishing a message gives its share back
    assert feed(m, publish(3) + content_header(3, 500)) == []
    assert m.partial_announced == 1500
    done = feed(m, body(1, b"a"))
    assert len(done) == 1 and isinstance(done[0], Publish) and m.partial_announced == 500
    assert held(m) == 0


def test_closing_a_channel_mid_message_gives_its_share_back():
    m = open_machine(max_message_size=1000)
    open_channel(m, 1)
    assert feed(m, publish(1) + content_header(1, 800) + body(1, b"a" * 10)) == []
    assert m.partial_announced == 800
    m.close_channel(1, errors.PreconditionFailed("x"))
    assert m.partial_announced == 0 and held(m) == 0 and not m.has_partial_content
    # a client channel.close mid-message is RabbitMQ's 505: the connection goes
    open_channel(m, 2)
    assert feed(m, publish(2) + content_header(2, 900)) == []
    assert_fault(feed(m, channel_close(2)), 505, "UNEXPECTED_FRAME - expected content body, "
                 "got non content body frame instead", 60, 40)


def test_many_channels_each_with_a_partial_message_stay_under_the_cap():
    m = open_machine(max_message_size=10_000)
    data = b""
    for ch in range(1, 201):
        data += channel_open(ch)
    assert len(feed(m, data)) == 200
    refused = 0
    for ch in range(1, 201):
        events = feed_as_session(m, publish(ch) + content_header(ch, 9_000)
                                 + body(ch, b"p" * 8_000))
        if events:
            channel_fault(events, ch)
            refused += 1
    assert refused == 199  # one unfinished 9,000-byte message fits in 10,000
    assert held(m) <= 10_000


def test_size_0_message_is_not_counted():
    m = open_machine(max_message_size=10, partial_limit=10)
    open_channel(m, 1)
    open_channel(m, 2)
    assert feed(m, publish(1) + content_header(1, 10)) == []
    events = feed(m, publish(2) + content_header(2, 0))
    assert len(events) == 1 and isinstance(events[0], Publish)
    events = feed(m, queue_declare(2))
    assert isinstance(events[0], Method) and isinstance(events[0].method, C.Queue.Declare)


def test_hold_content_stops_before_the_first_publish_frame():
    m = open_machine()
    open_channel(m, 1)
    m.hold_content = True
    data = queue_declare(1) + publish(1) + content_header(1, 3) + body(1, b"abc") \
        + queue_declare(1)
    events = feed(m, data)
    # the declare before it is handled; the publish and what follows wait in the machine
    assert len(events) == 1 and isinstance(events[0].method, C.Queue.Declare)
    assert m.content_held and not m.has_partial_content
    assert feed(m, b"") == [] and m.content_held  # still held while the alarm lasts
    m.content_held = False
    m.hold_content = False
    events = feed(m, b"")
    assert [type(e).__name__ for e in events] == ["Publish", "Method"]
    assert events[0].body == b"abc"


def test_hold_content_mid_message_keeps_the_rest_unread():
    m = open_machine()
    open_channel(m, 1)
    assert feed(m, publish(1) + content_header(1, 6) + body(1, b"abc")) == []
    m.hold_content = True
    assert feed(m, body(1, b"def")) == [] and m.content_held
    assert held(m) == 3  # only what arrived before the alarm
    m.hold_content = False
    events = feed(m, b"")
    assert len(events) == 1 and events[0].body == b"abcdef"

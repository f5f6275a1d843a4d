"""ConnectionMachine: connection.close and channel.close handshakes, from either side.

Literal client bytes in, exact bytes and events out; frames_helpers.py builds them.
"""

from __future__ import annotations

from frames_helpers import (
    CONNECTION_CLOSE_OK,
    HEARTBEAT,
    assert_fault,
    body,
    channel_close,
    channel_close_ok,
    channel_close_ok_bytes,
    channel_open,
    connection_close,
    connection_close_ok,
    content_header,
    feed,
    open_channel,
    open_machine,
    parse_one,
    publish,
    queue_declare,
)
from pamqp import commands as C
from pamqp import frame

from protocol import errors
from protocol.connection import State
from protocol.events import CloseTransport, PeerClosed, Publish

# ======================================================================================
# Close handshakes
# ======================================================================================


def test_client_connection_close():
    m = open_machine()
    open_channel(m, 1)
    events = feed(m, connection_close(200, "Goodbye"))
    assert events == [PeerClosed(200, "Goodbye")]
    assert m.data_to_send() == CONNECTION_CLOSE_OK
    assert m.state is State.CLOSED
    assert feed(m, queue_declare(1)) == []
    assert m.data_to_send() == b""


def test_close_connection_then_client_close_ok():
    m = open_machine()
    open_channel(m, 1)
    err = errors.ConnectionForced("broker forced connection closure with reason 'shutdown'")
    m.close_connection(err)
    data = m.data_to_send()
    assert data == frame.marshal(C.Connection.Close(
        320, "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
        0, 0), 0)
    # a second close_connection does not queue a second frame
    m.close_connection(errors.InternalError("again"))
    assert m.data_to_send() == b""
    # client methods are ignored while waiting for close-ok
    assert feed(m, queue_declare(1) + channel_open(2) + HEARTBEAT) == []
    assert m.data_to_send() == b""
    events = feed(m, connection_close_ok())
    assert len(events) == 1 and isinstance(events[0], CloseTransport)
    assert m.state is State.CLOSED
    assert m.data_to_send() == b""


def test_content_frames_are_ignored_while_waiting_for_close_ok():
    m = open_machine()
    open_channel(m, 1)
    m.close_connection(errors.ConnectionForced("bye"))
    m.data_to_send()
    events = feed(m, publish(1) + content_header(1, 3) + body(1, b"abc"))
    assert events == []
    assert m.data_to_send() == b""
    events = feed(m, connection_close_ok())
    assert len(events) == 1 and isinstance(events[0], CloseTransport)


def test_close_ok_after_ignored_content_in_the_same_buffer_still_closes():
    m = open_machine()
    open_channel(m, 1)
    m.close_connection(errors.ConnectionForced("bye"))
    m.data_to_send()
    events = feed(m, publish(1) + content_header(1, 3) + body(1, b"abc")
                  + connection_close_ok())
    assert len(events) == 1 and isinstance(events[0], CloseTransport), events
    assert m.state is State.CLOSED


def test_close_connection_crossed_by_client_close():
    m = open_machine()
    m.close_connection(errors.ConnectionForced("bye"))
    m.data_to_send()
    events = feed(m, connection_close(200, "me too"))
    assert len(events) == 1 and isinstance(events[0], CloseTransport)
    assert m.data_to_send() == CONNECTION_CLOSE_OK


def test_close_channel_drops_methods_until_close_ok():
    m = open_machine()
    open_channel(m, 1)
    open_channel(m, 2)
    err = errors.PreconditionFailed("unknown delivery tag 1", 60, 80)
    m.close_channel(1, err)
    data = m.data_to_send()
    assert data == frame.marshal(
        C.Channel.Close(406, "PRECONDITION_FAILED - unknown delivery tag 1", 60, 80), 1)
    assert not m.channel_usable(1)
    # everything on channel 1 is dropped, content included
    dropped = (queue_declare(1) + publish(1) + content_header(1, 3) + body(1, b"abc")
               + channel_open(1) + HEARTBEAT)
    assert feed(m, dropped) == []
    assert m.data_to_send() == b""
    # other channels keep working
    events = feed(m, queue_declare(2, "still-works"))
    assert len(events) == 1 and events[0].channel == 2
    # close-ok frees the number; channel.open works again
    assert feed(m, channel_close_ok(1)) == []
    assert m.data_to_send() == b""
    open_channel(m, 1)
    assert m.channel_usable(1)


def test_close_channel_crossed_by_client_channel_close():
    m = open_machine()
    open_channel(m, 1)
    m.close_channel(1, errors.NotFound("no queue 'q' in vhost '/'", 50, 10))
    m.data_to_send()
    assert feed(m, channel_close(1)) == []
    assert m.data_to_send() == channel_close_ok_bytes(1)
    assert feed(m, channel_close_ok(1)) == []
    open_channel(m, 1)


def test_method_after_server_close_and_close_ok_without_open_is_504():
    m = open_machine()
    open_channel(m, 1)
    m.close_channel(1, errors.NotFound("no exchange 'x' in vhost '/'", 60, 40))
    m.data_to_send()
    assert feed(m, channel_close_ok(1)) == []
    assert_fault(feed(m, queue_declare(1)), 504, "CHANNEL_ERROR - expected 'channel.open'",
                 50, 10)


def test_close_channel_discards_a_half_received_message():
    m = open_machine()
    open_channel(m, 1)
    assert feed(m, publish(1) + content_header(1, 10) + body(1, b"12345")) == []
    m.close_channel(1, errors.PreconditionFailed("x"))
    m.data_to_send()
    assert feed(m, body(1, b"67890")) == []
    assert feed(m, channel_close_ok(1)) == []
    open_channel(m, 1)
    events = feed(m, publish(1, "", "fresh") + content_header(1, 2) + body(1, b"ok"))
    assert events == [Publish(1, "", "fresh", False, False, b"\x00\x00", b"ok")]


def test_close_channel_reply_text_is_truncated_to_255_bytes():
    m = open_machine()
    open_channel(m, 1)
    m.close_channel(1, errors.PreconditionFailed("x" * 400))
    _, close = parse_one(m.data_to_send())
    assert len(close.reply_text) == 255
    assert close.reply_text.startswith("PRECONDITION_FAILED - xxx")


def test_reply_texts_over_255_bytes_are_cut_as_rabbitmq_cuts_them():
    """RabbitMQ keeps the first 252 bytes and adds "..."; a long UTF-8 queue name in a 404 used
    to make the encoder fail (541 and the connection gone instead of a channel close)."""
    from pamqp import frame as pframe

    from protocol import errors
    from protocol.connection import reply_text

    m = open_machine()
    open_channel(m, 1)
    m.close_channel(1, errors.NotFound(f"no queue '{'é' * 127}' in vhost '/'"))
    close = pframe.unmarshal(m.data_to_send())[2]
    assert close.reply_code == 404
    raw = close.reply_text.encode()
    assert len(raw) <= 255 and close.reply_text.endswith("...")
    assert close.reply_text.startswith("NOT_FOUND - no queue 'éé")
    ascii_text = reply_text(errors.PreconditionFailed("x" * 300))
    assert ascii_text == ("PRECONDITION_FAILED - " + "x" * 300)[:252] + "..."
    assert reply_text(errors.NotFound("short")) == "NOT_FOUND - short"

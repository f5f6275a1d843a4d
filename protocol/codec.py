"""Frame encoding: pamqp for the cold paths, hand-written struct code for the hot ones.

The hot-path encoders (Deliver, GetOk, Return, Ack, Nack, content header/body) reuse the
publisher's raw property bytes; tests assert byte equality with pamqp. Server-sent methods are
marshalled without pamqp's client-side name validation, because RabbitMQ accepts names (spaces,
``/``, ``#``) that pamqp's regexes refuse.
"""

from __future__ import annotations

import struct

from pamqp import base, encode
from pamqp.common import FieldTable

FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = b"\xce"
HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

_frame_head = struct.Struct(">BHI")
_deliver_tail = struct.Struct(">QB")
_header_head = struct.Struct(">BHIHHQ")
_header_end_head = struct.Struct(">BBHIHHQ")  # the previous frame's end octet, then a header
_body_head = struct.Struct(">BBHI")  # the previous frame's end octet, then a body frame head
_ack = struct.Struct(">BHIIQBB")
_get_ok_tail = struct.Struct(">QB")
_u32 = struct.Struct(">I")


def marshal_method(method: base.Frame) -> bytes:
    """Encode a method's arguments (index included) without pamqp's validation step."""
    out = [_u32.pack(method.index)]
    bits, offset, in_bits = 0, 0, False
    for name in method.__slots__:
        data_type = method.amqp_type(name)
        value = getattr(method, name, 0)
        if data_type == "bit":
            if not in_bits:
                bits, offset, in_bits = 0, 0, True
            bits |= int(bool(value)) << offset
            offset += 1
            if offset == 8:
                out.append(bytes((bits,)))
                in_bits = False
            continue
        if in_bits:
            out.append(bytes((bits,)))
            in_bits = False
        if data_type == "table" and value is None:
            value = {}
        out.append(encode.by_type(value, data_type))
    if in_bits:
        out.append(bytes((bits,)))
    return b"".join(out)


def method_frame(channel: int, method: base.Frame) -> bytes:
    payload = marshal_method(method)
    return _frame_head.pack(FRAME_METHOD, channel, len(payload)) + payload + FRAME_END


def shortstr(value: str) -> bytes:
    raw = value.encode()
    return bytes((len(raw),)) + raw


def content_frames(channel: int, props: bytes, body: bytes, frame_max: int) -> bytes:
    """Content header with the raw property bytes, then the body split at frame_max - 8."""
    size = len(body)
    header = _header_head.pack(FRAME_HEADER, channel, 12 + len(props), 60, 0, size)
    limit = frame_max - 8
    if size <= limit:
        if not size:
            return header + props + FRAME_END
        return b"".join((header, props, FRAME_END,
                         _frame_head.pack(FRAME_BODY, channel, size), body, FRAME_END))
    parts: list[bytes | memoryview] = [header, props, FRAME_END]
    view = memoryview(body)
    for start in range(0, size, limit):
        chunk = view[start:start + limit]
        parts += (_frame_head.pack(FRAME_BODY, channel, len(chunk)), chunk, FRAME_END)
    return b"".join(parts)


def deliver_frame(channel: int, consumer_tag: bytes, delivery_tag: int, redelivered: bool,
                  exchange: bytes, routing_key: bytes) -> bytes:
    """basic.deliver; consumer_tag, exchange and routing_key are pre-encoded shortstrs."""
    payload = b"".join((b"\x00\x3c\x00\x3c", consumer_tag,
                        _deliver_tail.pack(delivery_tag, redelivered), exchange, routing_key))
    return _frame_head.pack(FRAME_METHOD, channel, len(payload)) + payload + FRAME_END


def channel_open_ok_frame(channel: int) -> bytes:
    return _frame_head.pack(FRAME_METHOD, channel, 8) + b"\x00\x14\x00\x0b\x00\x00\x00\x00\xce"


def declare_ok_frame(channel: int, queue: str, message_count: int,
                     consumer_count: int) -> bytes:
    """queue.declare-ok by hand: pamqp's constructor refuses names RabbitMQ accepts (UTF-8)."""
    payload = b"".join((b"\x00\x32\x00\x0b", shortstr(queue),
                        struct.pack(">II", message_count, consumer_count)))
    return _frame_head.pack(FRAME_METHOD, channel, len(payload)) + payload + FRAME_END


def deliver_message(channel: int, consumer_tag: bytes, delivery_tag: int, redelivered: bool,
                    exchange: bytes, routing_key: bytes, props: bytes, body: bytes,
                    frame_max: int) -> bytes:
    """basic.deliver plus its content in one buffer (the hot path: one join per message)."""
    size = len(body)
    if not size or size > frame_max - 8:
        return deliver_frame(channel, consumer_tag, delivery_tag, redelivered, exchange,
                             routing_key) + content_frames(channel, props, body, frame_max)
    method_size = 13 + len(consumer_tag) + len(exchange) + len(routing_key)
    return b"".join((
        _frame_head.pack(FRAME_METHOD, channel, method_size), b"\x00\x3c\x00\x3c",
        consumer_tag, _deliver_tail.pack(delivery_tag, redelivered), exchange, routing_key,
        _header_end_head.pack(0xCE, FRAME_HEADER, channel, 12 + len(props), 60, 0, size),
        props, _body_head.pack(0xCE, FRAME_BODY, channel, size), body, FRAME_END))


def get_ok_frame(channel: int, delivery_tag: int, redelivered: bool, exchange: bytes,
                 routing_key: bytes, message_count: int) -> bytes:
    payload = b"".join((b"\x00\x3c\x00\x47", _get_ok_tail.pack(delivery_tag, redelivered),
                        exchange, routing_key, _u32.pack(message_count)))
    return _frame_head.pack(FRAME_METHOD, channel, len(payload)) + payload + FRAME_END


def return_frame(channel: int, reply_code: int, reply_text: str, exchange: bytes,
                 routing_key: bytes) -> bytes:
    payload = b"".join((b"\x00\x3c\x00\x32", struct.pack(">H", reply_code),
                        shortstr(reply_text), exchange, routing_key))
    return _frame_head.pack(FRAME_METHOD, channel, len(payload)) + payload + FRAME_END


def ack_frame(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    return _ack.pack(FRAME_METHOD, channel, 13, 0x003C0050, delivery_tag, multiple, 0xCE)


def nack_frame(channel: int, delivery_tag: int, multiple: bool, requeue: bool = True) -> bytes:
    bits = int(multiple) | (int(requeue) << 1)
    return _ack.pack(FRAME_METHOD, channel, 13, 0x003C0078, delivery_tag, bits, 0xCE)


def encode_table(table: FieldTable) -> bytes:
    return encode.field_table(table)


def erlang_binary(data: bytes) -> str:
    """Render bytes as Erlang prints a binary in an error text: <<"abc">> or <<0,50>>."""
    if data and all(32 <= b < 127 for b in data):
        text = data.decode().replace("\\", "\\\\").replace('"', '\\"')
        return f'<<"{text}">>'
    return "<<" + ",".join(str(b) for b in data) + ">>"


def erlang_tuple(before: str, atom: str, value: str) -> str:
    """``before`` followed by the Erlang term ``{atom,value}`` as io_lib's ~p prints it: when
    the term would reach column 80 it breaks after the comma and indents under the atom."""
    column = len(before)
    term = f"{{{atom},{value}}}"
    if column + len(term) < 80:
        return before + term
    return f"{before}{{{atom},\n{' ' * (column + 1)}{value}}}"

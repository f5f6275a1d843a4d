"""Record codec: round trip, CRC and length checks, short (torn) input."""

from __future__ import annotations

import pytest

from storage import record
from storage.record import CorruptRecord, ShortRecord


def sample(body: bytes = b"hello world", **kw: object) -> bytes:
    args: dict = {"seq": 7, "flags": record.F_PERSISTENT, "expires": 0.0, "exchange": "amq.direct",
                  "routing_key": "a.b.ü", "props": b"\x10\x00\x02", "body": body}
    args.update(kw)
    return record.encode(**args)


def test_round_trip() -> None:
    raw = sample(flags=record.F_PERSISTENT | record.F_EXPIRES, expires=1234.5)
    end, flags, seq, expires, exchange, key, props, body, deliveries = record.decode(raw)
    assert end == len(raw) and deliveries == 0
    assert flags == record.F_PERSISTENT | record.F_EXPIRES
    assert (seq, expires, exchange, key, props, body) == \
        (7, 1234.5, "amq.direct", "a.b.ü", b"\x10\x00\x02", b"hello world")
    assert record.check(raw) == (len(raw), flags, len(b"hello world"))


def test_deliveries_round_trip_and_set_their_flag() -> None:
    raw = sample(flags=record.F_PERSISTENT | record.F_EXPIRES, expires=9.5, deliveries=3)
    end, flags, seq, expires, exchange, key, props, body, deliveries = record.decode(raw)
    assert flags == record.F_PERSISTENT | record.F_EXPIRES | record.F_DELIVERIES
    assert (end, seq, expires, exchange, key, props, body, deliveries) == \
        (len(raw), 7, 9.5, "amq.direct", "a.b.ü", b"\x10\x00\x02", b"hello world", 3)
    assert record.check(raw) == (len(raw), flags, len(b"hello world"))
    assert len(raw) == len(sample()) + 4
    plain = record.decode(sample(flags=record.F_PERSISTENT | record.F_DELIVERIES))
    assert plain[1] == record.F_PERSISTENT and plain[-1] == 0  # the flag follows the count


def test_empty_names_and_body_at_an_offset() -> None:
    raw = record.encode(1, 0, 0.0, "", "", b"\x00\x00", b"")
    buf = b"junk" + raw + sample()
    rec = record.decode(buf, 4)
    assert rec[0] == 4 + len(raw)
    assert rec[4:] == ("", "", b"\x00\x00", b"", 0)
    assert record.decode(buf, rec[0])[7] == b"hello world"


def test_encode_into_returns_size() -> None:
    buf = bytearray(b"head")
    n = record.encode_into(buf, 1, 0, 0.0, b"\x01e", b"\x01k", b"\x00\x00", b"body")
    assert n == len(buf) - 4
    assert record.decode(bytes(buf), 4)[7] == b"body"


@pytest.mark.parametrize("index", [4, 8, 30, -1])
def test_corrupt_byte_is_detected(index: int) -> None:
    raw = bytearray(sample())
    raw[index] ^= 0x40
    with pytest.raises(CorruptRecord) as info:
        record.decode(bytes(raw))
    assert info.value.offset == 0


def test_short_input_is_short_not_corrupt() -> None:
    raw = sample()
    for cut in (0, 3, record.HEADER_SIZE, len(raw) - 1):
        with pytest.raises(ShortRecord) as info:
            record.decode(raw[:cut])
        expected = record.HEADER_SIZE if cut < record.HEADER_SIZE else len(raw)
        assert info.value.needed == expected
    with pytest.raises(ShortRecord):
        record.decode(raw, 0, len(raw) - 1)  # a limit stops it as well


def test_impossible_length_is_corrupt() -> None:
    raw = bytearray(sample())
    raw[0:4] = (3).to_bytes(4, "little")
    with pytest.raises(CorruptRecord, match="impossible length"):
        record.decode(bytes(raw))
    zeros = bytes(64)  # a zero-filled tail (preallocated or lost blocks)
    with pytest.raises(CorruptRecord):
        record.check(zeros)


def test_error_message_names_the_offset() -> None:
    err = CorruptRecord("CRC mismatch", 4096)
    assert str(err) == "record at offset 4096: CRC mismatch"

"""Fixed cases found by the ConnectionMachine fuzzers (test_machine_fuzz.py): malformed and
non-UTF-8 basic.publish arguments.
"""

from __future__ import annotations

import struct

import pytest
from fuzz_wire import ALLOWED_CLOSE_CODES, method_frame, raw_frame, sstr
from machine_strategies import open_driver
from pamqp import commands as C

pytestmark = pytest.mark.filterwarnings("ignore:This command is deprecated:DeprecationWarning")


@pytest.mark.parametrize("payload", [
    # basic.publish cut before the routing key, before the bits, mid-exchange-name
    b"\x00\x3c\x00\x28\x00\x00\x00",
    b"\x00\x3c\x00\x28\x00\x00\x00\x01q",
    b"\x00\x3c\x00\x28\x00\x00\x05amq",
    b"\x00\x3c\x00\x28\x00",
    # trailing junk after the bits
    b"\x00\x3c\x00\x28\x00\x00\x00\x01q\x00junk",
], ids=["no-rk", "no-bits", "cut-exchange", "cut-ticket", "trailing-junk"])
def test_malformed_publish_is_frame_error(payload: bytes) -> None:
    """Regression cases found by the fuzzers: basic.publish is parsed by hand (the hot path,
    protocol/methods.py parse_publish) and must fail as the other methods do."""
    _cut_or_padded_arguments_direct(payload)


def _cut_or_padded_arguments_direct(payload: bytes) -> None:
    d = open_driver()
    d.feed(method_frame(1, C.Channel.Open()))
    got = d.feed(raw_frame(1, 1, payload))
    assert [type(e).__name__ for e in got] == ["Fault"], got
    assert got[0].error.code == 501, got[0].error.reply_text


@pytest.mark.parametrize("field", ["exchange", "routing_key"])
def test_publish_with_non_utf8_name_does_not_escape(field: str) -> None:
    """shortstr bytes that are not UTF-8 (found by the fuzzers): any designed outcome
    (a Publish with the bytes kept, a 501, a silent close), never a UnicodeDecodeError."""
    name = b"\xff\xfe"
    exchange, rk = (name, b"q") if field == "exchange" else (b"", name)
    payload = b"\x00\x3c\x00\x28\x00\x00" + sstr(exchange) + sstr(rk) + b"\x00"
    d = open_driver()
    d.feed(method_frame(1, C.Channel.Open()))
    d.feed(raw_frame(1, 1, payload) + raw_frame(2, 1, struct.pack(">HHQ", 60, 0, 0)
                                                 + b"\x00\x00"))
    for code in d.close_codes:
        assert code in ALLOWED_CLOSE_CODES

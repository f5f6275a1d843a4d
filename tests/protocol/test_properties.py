"""protocol.properties: peek_* on the publisher's raw property bytes, checked against pamqp.

Raw form = content-header payload after class/weight/body-size, i.e. exactly
``pamqp.commands.Basic.Properties(...).marshal()``.
"""

from __future__ import annotations

import datetime
import itertools

import pytest
from pamqp import commands as C

from protocol import properties as P

Props = C.Basic.Properties

# values chosen so that reading at a wrong offset gives a different answer
FIELDS = {
    "content_type": "tëxt/plain; charset=utf-8",
    "content_encoding": "gzip",
    "headers": {"x-long": "h" * 300, "n": 7, "nested": {"a": [1, "b", True]},
                "x-match": "all"},
    "delivery_mode": 2,
    "priority": 9,
    "correlation_id": "corr-\x02\x07",
    "reply_to": "amq.rabbitmq.reply-to.g1h2AA5yZXBseUA2NDQ5",
    "expiration": "60000",
}
TRAILING = {
    "message_id": "msg-1",
    "timestamp": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC),
    "message_type": "order.created",
    "user_id": "guest",
    "app_id": "tests",
}


def raw_of(**kwargs) -> bytes:
    return Props(**kwargs).marshal()


def expected_peeks(kwargs: dict) -> tuple:
    return (kwargs.get("delivery_mode", 0), kwargs.get("priority", 0),
            kwargs.get("expiration"), kwargs.get("reply_to"), "headers" in kwargs)


def actual_peeks(raw: bytes) -> tuple:
    return (P.peek_delivery_mode(raw), P.peek_priority(raw), P.peek_expiration(raw),
            P.peek_reply_to(raw), P.has_headers(raw))


def test_empty_constant_is_pamqp_empty_properties():
    assert P.EMPTY == b"\x00\x00"
    assert Props().marshal() == P.EMPTY


def test_flag_constants_match_pamqp():
    assert P.DELIVERY_MODE == Props.flags["delivery_mode"]
    assert P.PRIORITY == Props.flags["priority"]
    assert P.EXPIRATION == Props.flags["expiration"]
    assert P.HEADERS == Props.flags["headers"]
    assert P.REPLY_TO == Props.flags["reply_to"]


def test_peeks_on_empty_properties():
    assert actual_peeks(P.EMPTY) == (0, 0, None, None, False)
    assert P.headers(P.EMPTY) == {}


@pytest.mark.parametrize("kwargs", [
    {"delivery_mode": 1},
    {"delivery_mode": 2},
    {"priority": 0},
    {"priority": 255},
    {"expiration": "0"},
    {"expiration": ""},  # pamqp omits empty strings: flag unset
    {"reply_to": "amq.rabbitmq.reply-to"},
    {"content_type": "application/json", "delivery_mode": 2},
    {"headers": {}, "priority": 3},
    {"headers": {"a": 1}, "expiration": "1000", "reply_to": "r"},
    {"content_encoding": "utf-8", "correlation_id": "c", "expiration": "5"},
    {"message_id": "m", "app_id": "a"},
    {"correlation_id": "x" * 255, "reply_to": "y" * 255},
    {"content_type": "c" * 255, "content_encoding": "e" * 255, "priority": 4},
], ids=lambda kw: ",".join(sorted(kw)))
def test_peeks_match_pamqp_encoding(kwargs):
    raw = raw_of(**kwargs)
    effective = {k: v for k, v in kwargs.items() if v != ""}
    assert actual_peeks(raw) == expected_peeks(effective)


def test_peeks_for_every_combination_of_the_leading_fields():
    names = list(FIELDS)
    checked = 0
    for r in range(len(names) + 1):
        for subset in itertools.combinations(names, r):
            for trailing in (False, True):
                kwargs = {n: FIELDS[n] for n in subset}
                if trailing:
                    kwargs.update(TRAILING)
                raw = raw_of(**kwargs)
                assert actual_peeks(raw) == expected_peeks(kwargs), (subset, trailing)
                checked += 1
    assert checked == 2 * 2 ** len(names)


@pytest.mark.parametrize("field,flag", [
    ("content_type", 0x8000),
    ("content_encoding", 0x4000),
    ("correlation_id", 0x0400),
    ("reply_to", 0x0200),
    ("expiration", 0x0100),
])
def test_peek_shortstr_reads_each_shortstr_field(field, flag):
    full = raw_of(**FIELDS)
    assert P.peek_shortstr(full, flag) == FIELDS[field]
    without = raw_of(**{k: v for k, v in FIELDS.items() if k != field})
    assert P.peek_shortstr(without, flag) is None


def test_peek_shortstr_decodes_utf8_bytes_not_characters():
    raw = raw_of(content_type="ä/ö", reply_to="ünïcode-reply")
    assert P.peek_reply_to(raw) == "ünïcode-reply"
    assert P.peek_shortstr(raw, 0x8000) == "ä/ö"


def test_peek_skips_a_headers_table_longer_than_255_bytes():
    headers = {"big": "v" * 70000}
    raw = raw_of(headers=headers, delivery_mode=2, priority=1, reply_to="rt",
                 expiration="42")
    assert actual_peeks(raw) == (2, 1, "42", "rt", True)


def test_literal_raw_bytes():
    # flags: delivery_mode (0x1000) | expiration (0x0100) = 0x1100
    raw = b"\x11\x00" + b"\x02" + b"\x03" + b"100"
    assert P.peek_delivery_mode(raw) == 2
    assert P.peek_expiration(raw) == "100"
    assert P.peek_priority(raw) == 0
    assert P.peek_reply_to(raw) is None
    assert not P.has_headers(raw)


def test_has_headers_on_short_input_is_false():
    assert P.has_headers(b"") is False
    assert P.has_headers(b"\x20") is False


@pytest.mark.parametrize("kwargs", [
    {},
    {"headers": {"a": 1, "b": "two", "c": {"d": [1, 2]}}},
    dict(FIELDS),
    {**FIELDS, **TRAILING},
    {"headers": {"x-death": [{"count": 1, "queue": "q", "reason": "rejected"}]},
     "delivery_mode": 1},
], ids=["empty", "headers", "leading", "all", "x-death"])
def test_decode_encode_round_trip(kwargs):
    raw = raw_of(**kwargs)
    decoded = P.decode(raw)
    assert isinstance(decoded, Props)
    for name, value in kwargs.items():
        if name == "timestamp":
            assert decoded.timestamp.replace(tzinfo=None) == value.replace(tzinfo=None)
        else:
            assert getattr(decoded, name) == value, name
    assert P.encode(decoded) == raw


def test_headers_returns_the_table_or_empty_dict():
    table = {"x-match": "any", "k": 5, "nested": {"z": True}}
    assert P.headers(raw_of(headers=table, priority=2)) == table
    assert P.headers(raw_of(priority=2)) == {}
    assert P.headers(raw_of(headers={})) == {}

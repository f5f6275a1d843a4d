"""Exchange behaviour: declare rules, reserved names, deletion, bindings and routing.

Expected replies are RabbitMQ 3.10's (see rabbitmq-behaviour.md section 3).
"""

import aio_pika
import aiormq
import pika
import pytest
from pika_helpers import channel_closed, connect, connection_closed, drain, pump

DEFAULT_DENIED = "ACCESS_REFUSED - operation not permitted on the default exchange"


def _inequivalent(arg: str, ex: str, detail: str) -> str:
    return (f"PRECONDITION_FAILED - inequivalent arg '{arg}' for exchange '{ex}' "
            f"in vhost '/': {detail}")


def _queue(ch, exchange: str = "", routing_key: str = "", arguments=None) -> str:  # type: ignore[no-untyped-def]
    q = ch.queue_declare("", exclusive=True).method.queue
    if exchange:
        ch.queue_bind(q, exchange, routing_key, arguments=arguments)
    return q


# ---- declare -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["direct", "fanout", "topic", "headers"])
def test_declare_each_type(ch, kind):
    name = f"ex-{kind}"
    assert ch.exchange_declare(name, kind).method.NAME == "Exchange.DeclareOk"
    ch.exchange_declare(name, kind)  # same declaration again
    ch.exchange_declare(name, "fanout" if kind != "fanout" else "direct", passive=True,
                        durable=True)  # passive ignores every other field
    ch.exchange_declare(name, kind, arguments={"x-foo": "bar"})  # unknown args not compared
    assert ch.is_open


@pytest.mark.parametrize("name", ["cat-missing-x", "amq.foo"], ids=["missing", "reserved"])
def test_passive_declare_missing_is_404(ch, name):
    """A passive declare only looks the name up, a reserved one too."""
    with channel_closed(404, f"NOT_FOUND - no exchange '{name}' in vhost '/'"):
        ch.exchange_declare(name, passive=True)


@pytest.mark.parametrize("first,second,arg,detail", [
    ({}, {"exchange_type": "fanout"}, "type", "received 'fanout' but current is 'direct'"),
    ({}, {"durable": True}, "durable", "received 'true' but current is 'false'"),
    ({"durable": True}, {}, "durable", "received 'false' but current is 'true'"),
    ({}, {"auto_delete": True}, "auto_delete", "received 'true' but current is 'false'"),
    ({}, {"internal": True}, "internal", "received 'true' but current is 'false'"),
    ({}, {"arguments": {"alternate-exchange": "cat-ae"}}, "alternate-exchange",
     "received the value 'cat-ae' of type 'longstr' but current is none"),
    ({"arguments": {"alternate-exchange": "cat-ae1"}},
     {"arguments": {"alternate-exchange": "cat-ae2"}}, "alternate-exchange",
     "received 'cat-ae2' but current is 'cat-ae1'"),
    ({"arguments": {"alternate-exchange": "cat-ae1"}}, {}, "alternate-exchange",
     "received none but current is the value 'cat-ae1' of type 'longstr'"),
])
def test_redeclare_inequivalent(ch, first, second, arg, detail):
    ch.exchange_declare("ex1", **{"exchange_type": "direct", **first})
    with channel_closed(406, _inequivalent(arg, "ex1", detail)):
        ch.exchange_declare("ex1", **{"exchange_type": "direct", **second})


@pytest.mark.parametrize("kind,text", [
    ("foo", "COMMAND_INVALID - invalid exchange type 'foo'"),
    ("", "COMMAND_INVALID - invalid exchange type ''"),
    # x-consistent-hash is built in here; a plugin type that is not (RabbitMQ: plugin off)
    ("x-random", "COMMAND_INVALID - unknown exchange type 'x-random'"),
])
def test_unknown_type_closes_connection(broker, kind, text):
    conn = connect(broker)
    ch = conn.channel()
    with connection_closed(503, text):
        ch.exchange_declare("typed-x", kind)
    assert conn.is_closed


@pytest.mark.parametrize("name", ["amq.foo", "amq.default"])
def test_reserved_prefix(ch, name):
    with channel_closed(403, f"ACCESS_REFUSED - exchange name '{name}' contains reserved "
                             "prefix 'amq.*'"):
        ch.exchange_declare(name, "direct")


def test_system_exchange_redeclare(ch):
    ch.exchange_declare("amq.direct", "direct", durable=True)
    ch.exchange_declare("amq.topic", "topic", durable=True)
    with channel_closed(406, _inequivalent("durable", "amq.direct",
                                           "received 'false' but current is 'true'")):
        ch.exchange_declare("amq.direct", "direct", durable=False)


def test_system_exchange_redeclare_type(ch):
    with channel_closed(406, _inequivalent("type", "amq.direct",
                                           "received 'fanout' but current is 'direct'")):
        ch.exchange_declare("amq.direct", "fanout", durable=True)


def test_odd_names_accepted(ch):
    ch.exchange_declare("cat-has space/and#", "fanout")
    ch.exchange_declare("cat-has space/and#", passive=True)


# ---- delete ------------------------------------------------------------------------------

def test_delete_system_exchange_refused(ch):
    with channel_closed(403, "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in "
                             "vhost '/' not allowed"):
        ch.exchange_delete("amq.direct")


def test_delete_missing_is_ok(ch):
    assert ch.exchange_delete("cat-missing-x").method.NAME == "Exchange.DeleteOk"
    ch.exchange_delete("cat-missing-x", if_unused=True)


def test_delete(ch):
    ch.exchange_declare("gone-x", "fanout")
    ch.exchange_delete("gone-x")
    with channel_closed(404, "NOT_FOUND - no exchange 'gone-x' in vhost '/'"):
        ch.exchange_declare("gone-x", passive=True)


def test_delete_if_unused(ch):
    ch.exchange_declare("used-x", "direct")
    _queue(ch, "used-x", "k")
    with channel_closed(406, "PRECONDITION_FAILED - exchange 'used-x' in vhost '/' in use"):
        ch.exchange_delete("used-x", if_unused=True)


def test_delete_if_unused_only_counts_outgoing(ch):
    ch.exchange_declare("src-x", "fanout")
    ch.exchange_declare("dst-x", "fanout")
    ch.exchange_bind("dst-x", "src-x")
    ch.exchange_delete("dst-x", if_unused=True)
    with channel_closed(404, "NOT_FOUND - no exchange 'dst-x' in vhost '/'"):
        ch.exchange_declare("dst-x", passive=True)


# ---- default exchange ----------------------------------------------------------------------

@pytest.mark.parametrize("op", [
    lambda ch: ch.exchange_declare("", "direct"),
    lambda ch: ch.exchange_declare("", passive=True),
    lambda ch: ch.exchange_delete(""),
    lambda ch: ch.exchange_bind("", "amq.fanout"),
    lambda ch: ch.exchange_bind("amq.fanout", ""),
    lambda ch: ch.queue_bind(_queue(ch), ""),
    lambda ch: ch.queue_unbind(_queue(ch), "", "whatever"),
], ids=["declare", "passive", "delete", "e2e-dest", "e2e-source", "bind", "unbind"])
def test_default_exchange_operations_refused(ch, op):
    with channel_closed(403, DEFAULT_DENIED):
        op(ch)


def test_unbind_implicit_default_binding_refused(ch):
    q = _queue(ch)
    with channel_closed(403, DEFAULT_DENIED):
        ch.queue_unbind(q, "", q)


# ---- bindings ------------------------------------------------------------------------------

def test_exchange_to_exchange_binding(ch):
    ch.exchange_declare("e1", "direct")
    ch.exchange_declare("e2", "fanout")
    q = _queue(ch, "e2")
    ch.exchange_bind("e2", "e1", "rk")
    ch.basic_publish("e1", "rk", b"routed")
    ch.basic_publish("e1", "other", b"not routed")
    assert drain(ch, q) == [b"routed"]
    ch.exchange_unbind("e2", "e1", "rk")
    ch.basic_publish("e1", "rk", b"after unbind")
    assert drain(ch, q) == []


def test_exchange_bind_to_itself_and_missing_unbind(ch):
    ch.exchange_declare("selfie", "fanout")
    ch.exchange_bind("selfie", "selfie")
    q = _queue(ch, "selfie")
    ch.basic_publish("selfie", "", b"once")
    assert drain(ch, q) == [b"once"]
    assert ch.exchange_unbind("selfie", "amq.direct", "nope").method.NAME == \
        "Exchange.UnbindOk"


@pytest.mark.parametrize("destination,source", [("cat-missing-x", "amq.direct"),
                                                ("amq.direct", "cat-missing-x")])
def test_exchange_bind_missing(ch, destination, source):
    with channel_closed(404, "NOT_FOUND - no exchange 'cat-missing-x' in vhost '/'"):
        ch.exchange_bind(destination, source, "rk")


def test_queue_bind_missing_exchange(ch):
    q = _queue(ch)
    with channel_closed(404, "NOT_FOUND - no exchange 'cat-missing-x' in vhost '/'"):
        ch.queue_bind(q, "cat-missing-x")


def test_queue_bind_missing_queue(ch):
    with channel_closed(404, "NOT_FOUND - no queue 'cat-missing-q' in vhost '/'"):
        ch.queue_bind("cat-missing-q", "amq.direct")


def test_queue_bind_both_missing_reports_exchange(ch):
    with channel_closed(404, "NOT_FOUND - no exchange 'cat-missing-x' in vhost '/'"):
        ch.queue_bind("cat-missing-q", "cat-missing-x")


def test_bind_twice_and_internal_source(ch):
    ch.exchange_declare("inner", "fanout", internal=True)
    q = _queue(ch, "amq.direct", "k")
    ch.queue_bind(q, "amq.direct", "k")
    ch.queue_bind(q, "inner")
    ch.basic_publish("amq.direct", "k", b"one copy")
    assert drain(ch, q) == [b"one copy"]


def test_unbind_missing_things_is_ok(ch):
    q = _queue(ch)
    ch.queue_unbind(q, "amq.direct", "never-bound")
    ch.queue_unbind(q, "cat-missing-x", "k")
    ch.queue_unbind("cat-missing-q", "amq.direct", "k")
    assert ch.is_open


# ---- publishing errors ---------------------------------------------------------------------

@pytest.mark.parametrize("exchange,text", [
    ("cat-missing-x", "NOT_FOUND - no exchange 'cat-missing-x' in vhost '/'"),
    ("amq.default", "NOT_FOUND - no exchange 'amq.default' in vhost '/'"),
])
def test_publish_to_missing_exchange(ch, exchange, text):
    ch.basic_publish(exchange, "k", b"x")
    with channel_closed(404, text):
        ch.queue_declare("", exclusive=True)  # a round trip to collect the close


def test_publish_to_internal_exchange(ch):
    ch.exchange_declare("int-x", "fanout", internal=True)
    ch.basic_publish("int-x", "", b"x")
    with channel_closed(403, "ACCESS_REFUSED - cannot publish to internal exchange 'int-x' "
                             "in vhost '/'"):
        ch.queue_declare("", exclusive=True)


# ---- routing -----------------------------------------------------------------------------

def test_direct_routing(ch):
    ch.exchange_declare("dx", "direct")
    qa, qb = _queue(ch, "dx", "a"), _queue(ch, "dx", "b")
    ch.queue_bind(qb, "dx", "a")
    for key in ("a", "b", "c"):
        ch.basic_publish("dx", key, key.encode())
    assert drain(ch, qa) == [b"a"]
    assert drain(ch, qb) == [b"a", b"b"]


def test_fanout_routing_ignores_key(ch):
    ch.exchange_declare("fx", "fanout")
    queues = [_queue(ch, "fx", f"ignored-{i}") for i in range(3)]
    ch.basic_publish("fx", "anything", b"all")
    assert [drain(ch, q) for q in queues] == [[b"all"]] * 3


TOPIC_KEYS = ["quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox",
              "lazy.brown.fox", "lazy.pink.rabbit", "quick.brown.fox", "orange",
              "quick.orange.male.rabbit", "lazy.orange.male.rabbit", "lazy", "a.b",
              "a.x.y.b", "x", "y.x", ""]
TOPIC_EXPECT = {
    "*.orange.*": {"quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox"},
    "*.*.rabbit": {"quick.orange.rabbit", "lazy.pink.rabbit"},
    "lazy.#": {"lazy.orange.elephant", "lazy.brown.fox", "lazy.pink.rabbit",
               "lazy.orange.male.rabbit", "lazy"},
    "#": set(TOPIC_KEYS),
    "a.#.b": {"a.b", "a.x.y.b"},
    "#.x": {"x", "y.x"},
    "*": {"orange", "lazy", "x"},
    "quick.orange.rabbit": {"quick.orange.rabbit"},
    "#.rabbit.#": {"quick.orange.rabbit", "lazy.pink.rabbit", "quick.orange.male.rabbit",
                   "lazy.orange.male.rabbit"},
}


def test_topic_routing(ch):
    ch.exchange_declare("tx", "topic")
    queues = {pattern: _queue(ch, "tx", pattern) for pattern in TOPIC_EXPECT}
    for key in TOPIC_KEYS:
        ch.basic_publish("tx", key, key.encode())
    got = {p: {b.decode() for b in drain(ch, q)} for p, q in queues.items()}
    assert got == TOPIC_EXPECT


def test_headers_routing(ch):
    ch.exchange_declare("hx", "headers")
    match = {"format": "pdf", "type": "report"}
    q_all = _queue(ch, "hx", "", {"x-match": "all", **match})
    q_any = _queue(ch, "hx", "", {"x-match": "any", **match})
    q_default = _queue(ch, "hx", "", match)  # no x-match means all
    cases = {"both": match, "pdf": {"format": "pdf"}, "none": {"format": "zip", "type": "log"},
             "extra": {**match, "extra": 1}, "bare": None}
    for body, headers in cases.items():
        ch.basic_publish("hx", "rk", body.encode(), pika.BasicProperties(headers=headers))
    assert drain(ch, q_all) == [b"both", b"extra"]
    assert drain(ch, q_default) == [b"both", b"extra"]
    assert drain(ch, q_any) == [b"both", b"pdf", b"extra"]


def _returns(ch) -> list:  # type: ignore[no-untyped-def]
    returned: list = []
    ch.add_on_return_callback(lambda _ch, method, _props, body: returned.append((method, body)))
    return returned


def test_mandatory_unroutable_is_returned(broker):
    conn = connect(broker)
    ch = conn.channel()
    returned = _returns(ch)
    ch.basic_publish("amq.direct", "nobody", b"lost", mandatory=True)
    pump(conn, lambda: returned)
    method, body = returned[0]
    assert (method.reply_code, method.reply_text) == (312, "NO_ROUTE")
    assert (method.exchange, method.routing_key, body) == ("amq.direct", "nobody", b"lost")
    conn.close()


def test_alternate_exchange_wins_over_mandatory(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.exchange_declare("ae", "fanout")
    ch.exchange_declare("main-x", "direct", arguments={"alternate-exchange": "ae"})
    q_main, q_ae = _queue(ch, "main-x", "known"), _queue(ch, "ae")
    returned = _returns(ch)
    ch.basic_publish("main-x", "known", b"routed", mandatory=True)
    ch.basic_publish("main-x", "unknown", b"to-ae", mandatory=True)
    assert drain(ch, q_main) == [b"routed"]
    assert drain(ch, q_ae) == [b"to-ae"]
    conn.process_data_events(time_limit=0.1)
    assert returned == []
    conn.close()


async def test_mandatory_return_with_aio_pika(broker):
    conn = await aio_pika.connect(broker.url)
    async with conn:
        ch = await conn.channel()
        returned = []
        ch.return_callbacks.add(lambda _ch, msg: returned.append(msg))
        result = await ch.default_exchange.publish(
            aio_pika.Message(b"bounce"), routing_key="no-such-queue", mandatory=True)
        assert isinstance(result, aiormq.abc.DeliveredMessage)
        assert (result.delivery.reply_code, result.delivery.reply_text) == (312, "NO_ROUTE")
        assert result.body == b"bounce"
        assert [m.body for m in returned] == [b"bounce"]

"""Topic permissions, enforced: write on the routing key of a publish to a topic exchange, read
on the binding key of queue.bind / unbind and exchange.bind with a topic source, with RabbitMQ
3.13's variable expansion and 403 texts; set, listed and cleared through the management API,
burrowctl and definitions. RabbitMQ 3.10.8 answered the same inputs on a local node (its texts
lack the leading ``write`` / ``read``, which 3.13 added)."""

from __future__ import annotations

import pika
import pytest
from ops_helpers import Api, amqp_url, burrowctl, connect


@pytest.fixture
def node(burrowmq_factory):  # type: ignore[no-untyped-def]
    handle = burrowmq_factory()
    api = Api(handle.management_port)
    assert api.put("/api/users/tp", {"password": "tp", "tags": ""}) == 201
    assert api.put("/api/permissions/%2F/tp",
                   {"configure": ".*", "write": ".*", "read": ".*"}) == 201
    return handle, api


def topic_perm(api: Api, write: str, read: str, exchange: str = "amq.topic") -> None:
    assert api.put("/api/topic-permissions/%2F/tp",
                   {"exchange": exchange, "write": write, "read": read}) in (201, 204)


def refused(fn, text: str, ids: tuple[int, int] | None = None) -> None:  # type: ignore
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        fn()
    assert (info.value.reply_code, info.value.reply_text) == (403, "ACCESS_REFUSED - " + text)


def test_publish_checks_write_on_the_routing_key(node) -> None:  # type: ignore
    handle, api = node
    topic_perm(api, r"^allowed\.{username}", r"^r\.")
    conn = connect(amqp_url(handle, "tp", "tp"))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("amq.topic", "allowed.tp.x", b"ok")  # {username} expanded
    refused(lambda: ch.basic_publish("amq.topic", "denied.x", b"no"),
            "write access to topic 'denied.x' in exchange 'amq.topic' in vhost '/' refused "
            "for user 'tp'")
    ch = conn.channel()
    ch.confirm_delivery()
    # the placeholder is not a pattern of its own: the literal text does not match
    refused(lambda: ch.basic_publish("amq.topic", "allowed.{username}", b"no"),
            "write access to topic 'allowed.{username}' in exchange 'amq.topic' in vhost '/' "
            "refused for user 'tp'")
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("amq.direct", "denied.x", b"not a topic exchange: not checked")
    ch.exchange_declare("other-topic", "topic")
    ch.basic_publish("other-topic", "denied.x", b"no permission set for it: allowed")
    conn.close()


def test_bind_and_unbind_check_read_on_the_binding_key(node) -> None:  # type: ignore
    handle, api = node
    topic_perm(api, ".*", r"^r\.{vhost}")
    conn = connect(amqp_url(handle, "tp", "tp"))
    ch = conn.channel()
    ch.queue_declare("tq")
    ch.queue_bind("tq", "amq.topic", "r./")  # {vhost} expanded
    refused(lambda: ch.queue_bind("tq", "amq.topic", "other"),
            "read access to topic 'other' in exchange 'amq.topic' in vhost '/' refused for "
            "user 'tp'")
    ch = conn.channel()
    refused(lambda: ch.queue_unbind("tq", "amq.topic", "other"),
            "read access to topic 'other' in exchange 'amq.topic' in vhost '/' refused for "
            "user 'tp'")
    ch = conn.channel()
    ch.exchange_declare("fan", "fanout")
    refused(lambda: ch.exchange_bind("fan", "amq.topic", "zzz"),
            "read access to topic 'zzz' in exchange 'amq.topic' in vhost '/' refused for "
            "user 'tp'")
    ch = conn.channel()
    ch.exchange_declare("src-topic", "topic")
    ch.exchange_bind("amq.topic", "src-topic", "zzz")  # the destination is not checked
    conn.close()


def test_changes_apply_to_open_connections(node) -> None:  # type: ignore
    handle, api = node
    conn = connect(amqp_url(handle, "tp", "tp"))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("amq.topic", "a.b", b"no topic permissions: allowed")
    topic_perm(api, "^x$", ".*")
    refused(lambda: ch.basic_publish("amq.topic", "a.b", b"now refused"),
            "write access to topic 'a.b' in exchange 'amq.topic' in vhost '/' refused for "
            "user 'tp'")
    assert api.delete("/api/topic-permissions/%2F/tp") == 204
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("amq.topic", "a.b", b"allowed again")
    conn.close()


def test_management_api_shapes(node) -> None:  # type: ignore
    _handle, api = node
    assert api.request("GET", "/api/topic-permissions/%2F/tp")[0] == 404
    topic_perm(api, "^w", "^r")
    topic_perm(api, "^w2", "^r2", exchange="x2")
    one = {"user": "tp", "vhost": "/", "exchange": "amq.topic", "write": "^w", "read": "^r"}
    two = {"user": "tp", "vhost": "/", "exchange": "x2", "write": "^w2", "read": "^r2"}
    assert api.get("/api/topic-permissions") == [one, two]
    assert api.get("/api/topic-permissions/%2F/tp") == [one, two]
    assert api.get("/api/users/tp/topic-permissions") == [one, two]
    assert api.get("/api/vhosts/%2F/topic-permissions")[0] == {
        "vhost": "/", "user": "tp", "exchange": "amq.topic", "write": "^w", "read": "^r"}
    assert api.delete("/api/topic-permissions/%2F/tp/x2") == 204
    assert api.get("/api/topic-permissions/%2F/tp") == [one]
    status, body = api.request("PUT", "/api/topic-permissions/%2F/tp", {"exchange": "e"})
    assert (status, body) == (400, {"error": "bad_request",
                                    "reason": "[{key_missing,write},{key_missing,read}]"})
    status, body = api.request("PUT", "/api/topic-permissions/%2F/tp",
                               {"exchange": "e", "write": "(", "read": ".*"})
    assert status == 400 and body["reason"][:2] == ["invalid_regexp", "("]
    status, body = api.request("PUT", "/api/topic-permissions/%2F/nobody",
                               {"exchange": "e", "write": "", "read": ""})
    assert (status, body["reason"]) == (400, "vhost_or_user_not_found")
    # definitions carry them, and import them back
    exported = api.get("/api/definitions")["topic_permissions"]
    assert exported == [one]
    assert api.delete("/api/topic-permissions/%2F/tp") == 204
    assert api.post("/api/definitions", {"topic_permissions": exported})[0] == 204
    assert api.get("/api/topic-permissions") == [one]


def test_burrowctl_commands(node) -> None:  # type: ignore
    handle, _api = node
    port = str(handle.management_port)
    got = burrowctl("--port", port, "set_topic_permissions", "-p", "/", "tp", "amq.topic",
                    "^a", "^b")
    assert (got.code, got.out) == (
        0, 'Setting topic permissions on "amq.topic" for user "tp" in vhost "/" ...\n')
    got = burrowctl("--port", port, "list_topic_permissions")
    assert got.out.splitlines() == ['Listing topic permissions for vhost "/" ...',
                                    "user\texchange\twrite\tread", "tp\tamq.topic\t^a\t^b"]
    got = burrowctl("--port", port, "list_user_topic_permissions", "tp")
    assert got.out.splitlines() == ['Listing topic permissions for user "tp" ...',
                                    "/\tamq.topic\t^a\t^b"]  # no header row, as rabbitmqctl
    assert burrowctl("--port", port, "set_topic_permissions", "nobody", "x", "a", "b").code \
        == 67
    assert burrowctl("--port", port, "set_topic_permissions", "-p", "nov", "tp", "x", "a",
                     "b").code == 69
    assert burrowctl("--port", port, "set_topic_permissions", "tp", "x", "a").code == 64
    got = burrowctl("--port", port, "clear_topic_permissions", "tp", "amq.topic")
    assert got.out == 'Clearing topic permissions on "amq.topic" for user "tp" in vhost "/" ' \
                      '...\n'
    assert burrowctl("--port", port, "list_topic_permissions", "-s").out == ""


def test_management_publish_goes_through_the_same_checks(node) -> None:  # type: ignore
    _handle, api = node
    topic_perm(api, "^ok", ".*")
    tp = api.as_user("tp", "tp")
    assert api.put("/api/users/tp", {"password": "tp", "tags": "management"}) == 204
    body = {"routing_key": "ok.1", "payload": "x", "payload_encoding": "string",
            "properties": {}}
    assert tp.post("/api/exchanges/%2F/amq.topic/publish", body) == (200, {"routed": False})
    status, got = tp.post("/api/exchanges/%2F/amq.topic/publish", {**body, "routing_key": "no"})
    assert (status, got["reason"]) == (
        400, "403 ACCESS_REFUSED - write access to topic 'no' in exchange 'amq.topic' in "
             "vhost '/' refused for user 'tp'")
    assert api.put("/api/permissions/%2F/tp", {"configure": ".*", "write": "^$",
                                               "read": ".*"}) == 204
    status, got = tp.post("/api/exchanges/%2F/amq.topic/publish", body)
    assert (status, got["reason"]) == (
        400, "403 ACCESS_REFUSED - write access to exchange 'amq.topic' in vhost '/' refused "
             "for user 'tp'")

"""Management API pieces the UI's Admin and queue pages need: vhost and user limits (enforced
on real AMQP clients with RabbitMQ's codes and texts), operator policies (merged into the
effective policy), topic permissions (stored and listed), and moving messages between queues
with a one-shot shovel."""

from __future__ import annotations

import pika
import pika.exceptions
import pytest
from ops_helpers import Api, amqp_url, connect


@pytest.fixture
def node(burrowmq):  # type: ignore[no-untyped-def]
    return burrowmq, Api(burrowmq.management_port)


def test_vhost_limits(node) -> None:  # type: ignore[no-untyped-def]
    handle, api = node
    assert api.put("/api/vhost-limits/%2F/max-queues", {"value": 2}) == 204
    assert api.put("/api/vhost-limits/%2F/max-connections", {"value": 1}) == 204
    assert api.get("/api/vhost-limits") == [
        {"vhost": "/", "value": {"max-queues": 2, "max-connections": 1}}]
    conn = connect(handle.url)
    ch = conn.channel()
    ch.queue_declare("lim-1")
    ch.queue_declare("lim-2")
    ch.queue_declare("lim-2")  # redeclaring an existing queue is not a new queue
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare("lim-3")
    assert info.value.reply_code == 406
    assert info.value.reply_text == ("PRECONDITION_FAILED - cannot declare queue 'lim-3': "
                                     "queue limit in vhost '/' (2) is reached")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as refused:
        connect(handle.url)
    assert "(530) \"NOT_ALLOWED - access to vhost '/' refused for user 'guest': connection " \
        "limit (1) is reached\"" in str(refused.value)
    conn.close()
    assert api.delete("/api/vhost-limits/%2F/max-connections") == 204
    assert api.delete("/api/vhost-limits/%2F/max-connections") == 404
    connect(handle.url).close()
    status, body = api.request("PUT", "/api/vhost-limits/%2F/max-bananas", {"value": 1})
    assert status == 400 and "max-bananas" in body["reason"]
    status, body = api.request("PUT", "/api/vhost-limits/%2F/max-queues", {"value": "x"})
    assert status == 400


def test_user_limits(node) -> None:  # type: ignore[no-untyped-def]
    handle, api = node
    assert api.put("/api/users/lim", {"password": "pw", "tags": ""}) == 201
    assert api.put("/api/permissions/%2F/lim", {"configure": ".*", "write": ".*",
                                                 "read": ".*"}) == 201
    assert api.put("/api/user-limits/lim/max-channels", {"value": 1}) == 204
    assert api.put("/api/user-limits/lim/max-connections", {"value": 1}) == 204
    assert api.get("/api/user-limits/lim") == [
        {"user": "lim", "value": {"max-channels": 1, "max-connections": 1}}]
    assert api.get("/api/users/lim")["limits"] == {"max-channels": 1, "max-connections": 1}
    url = amqp_url(handle, "lim", "pw")
    conn = connect(url)
    conn.channel()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        conn.channel()
    assert info.value.reply_code == 530
    assert info.value.reply_text == ("NOT_ALLOWED - number of channels opened for user 'lim' "
                                     "has reached the maximum allowed user limit of 1")
    conn2 = connect(url)
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as refused:
        connect(url)
    assert "NOT_ALLOWED - connection refused for user 'lim': user connection limit (1) is " \
        "reached" in str(refused.value)
    conn2.close()
    # A password change keeps the limits.
    assert api.put("/api/users/lim", {"password": "new", "tags": ""}) == 204
    assert api.get("/api/users/lim")["limits"]["max-channels"] == 1
    assert api.delete("/api/user-limits/lim/max-channels") == 204
    assert api.get("/api/user-limits") == [{"user": "lim", "value": {"max-connections": 1}}]


def test_operator_policy_merges_into_the_effective_policy(node) -> None:  # type: ignore
    handle, api = node
    assert api.put("/api/queues/%2F/op-q", {"durable": True}) == 201
    assert api.put("/api/policies/%2F/user-cap", {
        "pattern": "^op-", "apply-to": "queues", "definition": {"max-length": 100}}) == 201
    assert api.put("/api/operator-policies/%2F/op-cap", {
        "pattern": "^op-", "apply-to": "queues",
        "definition": {"max-length": 3, "message-ttl": 60000}}) == 201
    q = api.get("/api/queues/%2F/op-q")
    assert q["policy"] == "user-cap" and q["operator_policy"] == "op-cap"
    assert q["effective_policy_definition"] == {"max-length": 3, "message-ttl": 60000}
    conn = connect(handle.url)
    ch = conn.channel()
    for i in range(5):
        ch.basic_publish("", "op-q", str(i).encode())
    assert ch.queue_declare("op-q", passive=True).method.message_count == 3
    conn.close()
    assert api.get("/api/operator-policies/%2F")[0]["name"] == "op-cap"
    status, body = api.request("PUT", "/api/operator-policies/%2F/bad", {
        "pattern": ".*", "apply-to": "queues", "definition": {"dead-letter-exchange": "x"}})
    assert status == 400
    assert body["reason"] == ('Validation failed\n\n[<<"dead-letter-exchange">>] are not '
                              'recognised policy settings\n')
    assert api.delete("/api/operator-policies/%2F/op-cap") == 204
    q = api.get("/api/queues/%2F/op-q")
    assert q["operator_policy"] is None and q["effective_policy_definition"] == {
        "max-length": 100}


def test_operator_policies_survive_a_restart(burrowmq_factory, tmp_path) -> None:  # type: ignore
    data = str(tmp_path / "node")
    handle = burrowmq_factory(data_dir=data)
    api = Api(handle.management_port)
    assert api.put("/api/operator-policies/%2F/keep", {
        "pattern": ".", "apply-to": "queues", "definition": {"max-length": 7}}) == 201
    assert api.put("/api/vhost-limits/%2F/max-queues", {"value": 9}) == 204
    assert api.put("/api/users/u1", {"password": "p", "tags": ""}) == 201
    assert api.put("/api/user-limits/u1/max-channels", {"value": 4}) == 204
    handle.stop()
    again = Api(burrowmq_factory(data_dir=data).management_port)
    assert again.get("/api/operator-policies")[0]["definition"] == {"max-length": 7}
    assert again.get("/api/vhost-limits") == [{"vhost": "/", "value": {"max-queues": 9}}]
    assert again.get("/api/user-limits/u1") == [{"user": "u1", "value": {"max-channels": 4}}]


def test_topic_permissions_are_stored_and_listed(node) -> None:  # type: ignore
    _handle, api = node
    assert api.put("/api/users/tp", {"password": "pw", "tags": ""}) == 201
    body = {"exchange": "amq.topic", "write": "^a", "read": "^b"}
    assert api.put("/api/topic-permissions/%2F/tp", body) == 201
    assert api.put("/api/topic-permissions/%2F/tp", {**body, "write": "^c"}) == 204
    expected = [{"user": "tp", "vhost": "/", "exchange": "amq.topic", "write": "^c",
                 "read": "^b"}]
    assert api.get("/api/topic-permissions/%2F/tp") == expected
    assert api.get("/api/users/tp/topic-permissions") == expected
    assert api.get("/api/vhosts/%2F/topic-permissions") == expected
    assert api.get("/api/definitions")["topic_permissions"] == expected
    assert api.delete("/api/topic-permissions/%2F/tp?exchange=amq.topic") == 204
    assert api.delete("/api/topic-permissions/%2F/tp") == 404
    assert api.put("/api/topic-permissions/%2F/tp", body) == 201
    assert api.delete("/api/users/tp") == 204
    assert api.get("/api/topic-permissions") == []


def test_move_messages_with_a_one_shot_shovel(node) -> None:  # type: ignore
    handle, api = node
    conn = connect(handle.url)
    ch = conn.channel()
    ch.queue_declare("mv-src")
    ch.queue_declare("mv-dst")
    for i in range(4):
        ch.basic_publish("", "mv-src", f"m{i}".encode(),
                         pika.BasicProperties(headers={"n": i}, message_id=f"id{i}"))
    value = {"src-uri": "amqp:///%2F", "src-queue": "mv-src", "src-protocol": "amqp091",
             "src-delete-after": "queue-length", "dest-protocol": "amqp091",
             "dest-uri": "amqp:///%2F", "dest-queue": "mv-dst"}
    assert api.put("/api/parameters/shovel/%2F/Move%20from%20mv-src", {"value": value}) == 201
    assert ch.queue_declare("mv-src", passive=True).method.message_count == 0
    got = []
    for _ in range(4):
        method, props, body = ch.basic_get("mv-dst", auto_ack=True)
        got.append((body, props.headers, props.message_id, method.routing_key))
    assert got == [(f"m{i}".encode(), {"n": i}, f"id{i}", "mv-dst") for i in range(4)]
    assert api.get("/api/parameters/shovel") == []
    status, body = api.request("PUT", "/api/parameters/shovel/%2F/x", {
        "value": {**value, "dest-queue": "nowhere"}})
    assert status == 400 and body["reason"] == "no queue 'nowhere' in vhost '/'"
    conn.close()


def test_limits_and_topic_permissions_in_definitions(node) -> None:  # type: ignore
    _handle, api = node
    assert api.put("/api/vhost-limits/%2F/max-queues", {"value": 50}) == 204
    assert api.put("/api/users/defs", {"password": "pw", "tags": ""}) == 201
    assert api.put("/api/user-limits/defs/max-channels", {"value": 3}) == 204
    assert api.put("/api/topic-permissions/%2F/defs", {
        "exchange": "amq.topic", "write": "^w", "read": "^r"}) == 201
    exported = api.get("/api/definitions")
    assert exported["parameters"] == [{"value": {"max-queues": 50}, "vhost": "/",
                                       "component": "vhost-limits", "name": "limits"}]
    assert {"max-channels": 3} in [u["limits"] for u in exported["users"]]
    # Importing the same document again changes nothing (no duplicates).
    assert api.post("/api/definitions", exported)[0] == 204
    assert api.get("/api/definitions")["topic_permissions"] == exported["topic_permissions"]
    assert api.delete("/api/vhost-limits/%2F/max-queues") == 204
    assert api.post("/api/definitions", exported)[0] == 204
    assert api.get("/api/vhost-limits") == [{"vhost": "/", "value": {"max-queues": 50}}]


def test_a_big_move_lets_the_broker_serve_others_meanwhile(node) -> None:  # type: ignore
    """Moving 20,000 messages goes in slices: between two, the event loop runs everything
    else (it stalled every client for the whole move: ~3 s for 300,000 messages)."""
    handle, api = node
    conn = connect(handle.url)
    ch = conn.channel()
    ch.queue_declare("big-src")
    ch.queue_declare("big-dst")
    for _ in range(20_000):
        ch.basic_publish("", "big-src", b"x")
    assert ch.queue_declare("big-src", passive=True).method.message_count == 20_000
    source = handle.server.vhosts["/"].queues["big-src"]
    seen: list[int] = []
    done = False

    def tick() -> None:  # another task on the broker's loop: what does it see, turn by turn?
        seen.append(source.message_count)
        if not done:
            handle.loop.call_soon(tick)

    handle.loop.call_soon_threadsafe(tick)
    value = {"src-uri": "amqp:///%2F", "src-queue": "big-src", "src-protocol": "amqp091",
             "src-delete-after": "queue-length", "dest-protocol": "amqp091",
             "dest-uri": "amqp:///%2F", "dest-queue": "big-dst"}
    assert api.put("/api/parameters/shovel/%2F/big", {"value": value}) == 201
    done = True
    assert ch.queue_declare("big-dst", passive=True).method.message_count == 20_000
    assert ch.queue_declare("big-src", passive=True).method.message_count == 0
    assert [n for n in seen if 0 < n < 20_000], "no other task ran during the move"
    conn.close()

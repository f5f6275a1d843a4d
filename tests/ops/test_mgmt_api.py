"""Management HTTP API against a running broker, with a real HTTP client (urllib) and real
AMQP clients; field names and shapes are compared with what RabbitMQ 3.13 returns."""

from __future__ import annotations

import time

import pika
import pytest
from ops_helpers import Api, connect, quote

OVERVIEW_KEYS = {
    "management_version", "rates_mode", "sample_retention_policies", "exchange_types",
    "product_version", "product_name", "rabbitmq_version", "cluster_name", "erlang_version",
    "erlang_full_version", "release_series_support_status", "disable_stats",
    "is_op_policy_updating_enabled", "enable_queue_totals", "message_stats", "churn_rates",
    "queue_totals", "object_totals", "statistics_db_event_queue", "node", "listeners",
    "contexts"}
QUEUE_KEYS = {
    "arguments", "auto_delete", "consumer_capacity", "consumer_utilisation", "consumers",
    "durable", "effective_policy_definition", "exclusive", "exclusive_consumer_tag",
    "garbage_collection", "head_message_timestamp", "idle_since", "memory", "message_bytes",
    "message_bytes_paged_out", "message_bytes_persistent", "message_bytes_ram",
    "message_bytes_ready", "message_bytes_unacknowledged", "messages", "messages_details",
    "messages_paged_out", "messages_persistent", "messages_ram", "messages_ready",
    "messages_ready_details", "messages_ready_ram", "messages_unacknowledged",
    "messages_unacknowledged_details", "messages_unacknowledged_ram", "name", "node",
    "operator_policy", "policy", "recoverable_slaves", "reductions", "reductions_details",
    "single_active_consumer_tag", "state", "storage_version", "type", "vhost"}
CONNECTION_KEYS = {
    "auth_mechanism", "channel_max", "channels", "client_properties", "connected_at",
    "frame_max", "garbage_collection", "host", "name", "node", "peer_cert_issuer",
    "peer_cert_subject", "peer_cert_validity", "peer_host", "peer_port", "port", "protocol",
    "recv_cnt", "recv_oct", "recv_oct_details", "reductions", "reductions_details",
    "send_cnt", "send_oct", "send_oct_details", "send_pend", "ssl", "ssl_cipher", "ssl_hash",
    "ssl_key_exchange", "ssl_protocol", "state", "timeout", "type", "user",
    "user_provided_name", "user_who_performed_action", "vhost"}
CHANNEL_KEYS = {
    "acks_uncommitted", "confirm", "connection_details", "consumer_count",
    "garbage_collection", "global_prefetch_count", "idle_since", "messages_unacknowledged",
    "messages_uncommitted", "messages_unconfirmed", "name", "node", "number",
    "pending_raft_commands", "prefetch_count", "reductions", "reductions_details", "state",
    "transactional", "user", "user_who_performed_action", "vhost"}
CONSUMER_KEYS = {"ack_required", "active", "activity_status", "arguments", "channel_details",
                 "consumer_tag", "consumer_timeout", "exclusive", "prefetch_count", "queue"}


@pytest.fixture
def node(burrowmq):  # type: ignore[no-untyped-def]
    return burrowmq, Api(burrowmq.management_port)


def wait_for(predicate, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_overview_shape_and_totals(node) -> None:  # type: ignore[no-untyped-def]
    handle, api = node
    conn = connect(handle.url)
    ch = conn.channel()
    ch.queue_declare("ov")
    ch.basic_publish("", "ov", b"x")
    ch.basic_publish("", "nowhere", b"x")
    body = wait_for(lambda: (b := api.get("/api/overview"))["queue_totals"]["messages"] and b)
    assert OVERVIEW_KEYS <= set(body)
    assert body["rabbitmq_version"] == body["product_version"] == "3.13.7"
    assert body["management_version"] == "3.13.7" and body["product_name"] == "RabbitMQ"
    exchanges = len(handle.server.vhosts["/"].exchanges)
    assert body["object_totals"] == {"channels": 1, "connections": 1, "consumers": 0,
                                     "exchanges": exchanges, "queues": 1}
    assert body["queue_totals"]["messages_ready"] == 1
    assert body["queue_totals"]["messages_ready_details"] == {"rate": 0.0}
    stats = body["message_stats"]
    assert stats["publish"] == 2 and stats["drop_unroutable"] == 1
    assert isinstance(stats["publish_details"]["rate"], float)
    protocols = {item["protocol"]: item["port"] for item in body["listeners"]}
    assert protocols["amqp"] == handle.port and protocols["http"] == handle.management_port
    assert set(body["listeners"][0]) == {"node", "protocol", "ip_address", "port",
                                         "socket_opts"}
    assert body["node"].startswith("rabbit@")
    conn.close()


def test_auth_errors(node) -> None:  # type: ignore[no-untyped-def]
    _handle, api = node
    assert api.as_user("guest", "bad").request("GET", "/api/overview") == (
        401, {"error": "not_authorized", "reason": "Not_Authorized"})
    assert api.put("/api/users/plain", {"password": "p", "tags": ""}) == 201
    assert api.as_user("plain", "p").request("GET", "/api/overview") == (
        401, {"error": "not_authorised", "reason": "Not management user"})
    assert api.put("/api/users/mon", {"password": "p", "tags": "monitoring"}) == 201
    assert api.as_user("mon", "p").request("PUT", "/api/vhosts/x", {}) == (
        401, {"error": "not_authorised", "reason": "Not administrator user"})
    assert api.request("GET", "/api/queues/%2F/missing") == (
        404, {"error": "Object Not Found", "reason": "Not Found"})


def test_nodes_whoami_cluster_name(node) -> None:  # type: ignore[no-untyped-def]
    _handle, api = node
    nodes = api.get("/api/nodes")
    assert len(nodes) == 1
    assert {"name", "type", "running", "mem_used", "mem_limit", "mem_alarm", "disk_free",
            "disk_free_limit", "disk_free_alarm", "fd_used", "fd_total", "sockets_used",
            "proc_used", "uptime", "processors", "os_pid", "rates_mode"} <= set(nodes[0])
    assert nodes[0]["running"] is True and nodes[0]["mem_used"] > 1_000_000
    assert api.get(f"/api/nodes/{nodes[0]['name']}")["name"] == nodes[0]["name"]
    assert api.get("/api/whoami") == {"name": "guest", "tags": ["administrator"],
                                      "is_internal_user": True}
    assert api.get("/api/cluster-name") == {"name": nodes[0]["name"]}
    assert api.put("/api/cluster-name", {"name": "prod"}) == 204
    assert api.get("/api/cluster-name") == {"name": "prod"}


def test_queue_lifecycle_get_purge(node) -> None:  # type: ignore[no-untyped-def]
    handle, api = node
    assert api.put("/api/queues/%2F/work", {"durable": True, "arguments": {}}) == 201
    assert api.put("/api/queues/%2F/work", {"durable": True, "arguments": {}}) == 204
    status, body = api.request("PUT", "/api/queues/%2F/work", {"durable": False})
    assert (status, body["error"]) == (400, "bad_request")
    assert body["reason"] == ("inequivalent arg 'durable' for queue 'work' in vhost '/': "
                              "received 'false' but current is 'true'")
    for i in range(3):
        status, body = api.post("/api/exchanges/%2F/amq.default/publish", {
            "properties": {"delivery_mode": 2, "headers": {"n": i}}, "routing_key": "work",
            "payload": f"m{i}", "payload_encoding": "string"})
        assert (status, body) == (200, {"routed": True})
    q = api.get("/api/queues/%2F/work")
    assert QUEUE_KEYS <= set(q)
    assert (q["messages"], q["messages_ready"], q["durable"], q["type"]) == (3, 3, True,
                                                                            "classic")
    status, got = api.post("/api/queues/%2F/work/get", {"count": 2,
                                                        "ackmode": "ack_requeue_true",
                                                        "encoding": "auto"})
    assert status == 200
    assert got[0] == {"payload_bytes": 2, "redelivered": False, "exchange": "",
                      "routing_key": "work", "message_count": 2,
                      "properties": {"delivery_mode": 2, "headers": {"n": 0}},
                      "payload": "m0", "payload_encoding": "string"}
    assert [m["payload"] for m in got] == ["m0", "m1"]
    assert api.get("/api/queues/%2F/work")["messages_ready"] == 3
    status, got = api.post("/api/queues/%2F/work/get", {"count": 5,
                                                        "ackmode": "ack_requeue_false",
                                                        "encoding": "base64"})
    assert [m["payload"] for m in got] == ["bTA=", "bTE=", "bTI="]
    assert got[0]["redelivered"] is True and got[0]["payload_encoding"] == "base64"
    assert api.get("/api/queues/%2F/work")["messages"] == 0
    api.post("/api/exchanges/%2F/amq.default/publish", {
        "properties": {}, "routing_key": "work", "payload": "x", "payload_encoding": "string"})
    assert api.delete("/api/queues/%2F/work/contents") == 204
    assert api.get("/api/queues/%2F/work")["messages"] == 0
    assert api.delete("/api/queues/%2F/work") == 204
    assert api.request("GET", "/api/queues/%2F/work")[0] == 404


def test_unacked_and_consumers(node) -> None:  # type: ignore[no-untyped-def]
    handle, api = node
    conn = connect(handle.url)
    ch = conn.channel()
    ch.queue_declare("cq")
    ch.basic_publish("", "cq", b"a")
    ch.basic_qos(prefetch_count=5)
    ch.basic_consume("cq", lambda *a: None, consumer_tag="tag-1")
    conn.process_data_events(0.2)
    q = wait_for(lambda: (b := api.get("/api/queues/%2F/cq"))["messages_unacknowledged"]
                 and b)
    assert (q["messages"], q["messages_ready"], q["consumers"]) == (1, 0, 1)
    consumers = api.get("/api/consumers")
    assert CONSUMER_KEYS <= set(consumers[0])
    assert consumers[0]["consumer_tag"] == "tag-1"
    assert consumers[0]["queue"] == {"name": "cq", "vhost": "/"}
    assert consumers[0]["prefetch_count"] == 5 and consumers[0]["ack_required"] is True
    channels = api.get("/api/channels")
    assert CHANNEL_KEYS <= set(channels[0])
    assert channels[0]["messages_unacknowledged"] == 1 and channels[0]["number"] == 1
    assert api.get(f"/api/channels/{quote(channels[0]['name'])}")["consumer_count"] == 1
    conn.close()


def test_connections_list_show_close(node) -> None:  # type: ignore[no-untyped-def]
    handle, api = node
    conn = connect(handle.url, client_properties={"connection_name": "worker-1"})
    conns = wait_for(lambda: api.get("/api/connections"))
    c = conns[0]
    assert CONNECTION_KEYS <= set(c)
    local_port = conn._impl._transport._sock.getsockname()[1]  # noqa: SLF001
    assert c["name"] == f"127.0.0.1:{local_port} -> 127.0.0.1:{handle.port}"
    assert (c["user"], c["vhost"], c["protocol"], c["user_provided_name"]) == (
        "guest", "/", "AMQP 0-9-1", "worker-1")
    assert (c["peer_port"], c["port"]) == (local_port, handle.port)
    assert api.get(f"/api/connections/{quote(c['name'])}")["name"] == c["name"]
    assert len(api.get(f"/api/connections/{quote(c['name'])}/channels")) == 0
    assert api.delete(f"/api/connections/{quote(c['name'])}",
                      headers={"X-Reason": "maintenance"}) == 204
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        conn.channel()
        conn.process_data_events(1)
    assert (info.value.reply_code, info.value.reply_text) == (320,
                                                              "CONNECTION_FORCED - maintenance")
    wait_for(lambda: api.get("/api/connections") == [])


def test_exchanges_and_bindings(node) -> None:  # type: ignore[no-untyped-def]
    _handle, api = node
    names = [x["name"] for x in api.get("/api/exchanges/%2F")]
    assert names[:2] == ["", "amq.direct"] and "amq.topic" in names
    assert api.put("/api/exchanges/%2F/events", {"type": "topic", "durable": True}) == 201
    assert api.get("/api/exchanges/%2F/events") == {
        "arguments": {}, "auto_delete": False, "durable": True, "internal": False,
        "name": "events", "type": "topic", "user_who_performed_action": "rmq-internal",
        "vhost": "/", "incoming": [], "outgoing": []}  # no message_stats: no traffic yet
    assert api.put("/api/queues/%2F/audit", {}) == 201
    status, _ = api.request("POST", "/api/bindings/%2F/e/events/q/audit",
                            {"routing_key": "order.*", "arguments": {}})
    assert status == 201
    bindings = api.get("/api/queues/%2F/audit/bindings")
    assert bindings == [
        {"source": "", "vhost": "/", "destination": "audit", "destination_type": "queue",
         "routing_key": "audit", "arguments": {}, "properties_key": "audit"},
        {"source": "events", "vhost": "/", "destination": "audit",
         "destination_type": "queue", "routing_key": "order.*", "arguments": {},
         "properties_key": "order.*"}]
    status, body = api.post("/api/exchanges/%2F/events/publish", {
        "properties": {}, "routing_key": "order.new", "payload": "p",
        "payload_encoding": "string"})
    assert body == {"routed": True}
    assert len(api.get("/api/exchanges/%2F/events/bindings/source")) == 1
    assert api.delete("/api/bindings/%2F/e/events/q/audit/order.*") == 204
    assert api.get("/api/bindings/%2F/e/events/q/audit") == []
    assert api.delete("/api/exchanges/%2F/events") == 204


def test_vhosts_users_permissions(node) -> None:  # type: ignore[no-untyped-def]
    handle, api = node
    assert api.put("/api/vhosts/staging", {"description": "pre-prod", "tags": "a,b"}) == 201
    vh = api.get("/api/vhosts/staging")
    assert (vh["name"], vh["description"], vh["tags"], vh["default_queue_type"]) == (
        "staging", "pre-prod", ["a", "b"], "classic")
    assert vh["metadata"] == {"description": "pre-prod", "tags": ["a", "b"],
                              "default_queue_type": "classic"}
    assert api.put("/api/users/app", {"password": "pw", "tags": "management"}) == 201
    assert api.put("/api/permissions/staging/app",
                   {"configure": "^app", "write": ".*", "read": ".*"}) == 201
    assert api.get("/api/permissions/staging/app") == {
        "user": "app", "vhost": "staging", "configure": "^app", "write": ".*", "read": ".*"}
    assert api.get("/api/users/app/permissions") == [api.get("/api/permissions/staging/app")]
    conn = connect(f"amqp://app:pw@127.0.0.1:{handle.port}/staging")
    conn.channel().queue_declare("app-q")
    conn.close()
    assert [v["name"] for v in api.as_user("app", "pw").get("/api/vhosts")] == ["staging"]
    assert api.delete("/api/vhosts/staging") == 204
    assert api.request("GET", "/api/permissions/staging/app")[0] == 404
    assert api.delete("/api/users/app") == 204
    assert [u["name"] for u in api.get("/api/users")] == ["guest"]


def test_policies_stored_and_hook_called(node) -> None:  # type: ignore[no-untyped-def]
    handle, api = node
    vhost = handle.server.vhosts["/"]
    calls: list[int] = []
    vhost.on_policies_changed = lambda: calls.append(1)
    policy = {"pattern": "^q\\.", "apply-to": "queues", "priority": 3,
              "definition": {"max-length": 10}}
    assert api.put("/api/policies/%2F/cap", policy) == 201
    assert api.get("/api/policies/%2F/cap") == {"vhost": "/", "name": "cap", **policy}
    assert vhost.policies == {"cap": policy}
    assert handle.server.policies["/"] is vhost.policies
    assert api.delete("/api/policies/%2F/cap") == 204
    assert vhost.policies == {} and calls == [1, 1]
    status, body = api.request("PUT", "/api/policies/%2F/bad", {"pattern": "x"})
    assert status == 400 and body["error"] == "bad_request"


def test_definitions_roundtrip(node, burrowmq_factory) -> None:  # type: ignore[no-untyped-def]
    _handle, api = node
    api.put("/api/exchanges/%2F/orders", {"type": "direct", "durable": True})
    api.put("/api/queues/%2F/orders.new", {"durable": True, "arguments": {"x-max-length": 5}})
    api.request("POST", "/api/bindings/%2F/e/orders/q/orders.new", {"routing_key": "new"})
    api.put("/api/users/svc", {"password": "pw", "tags": ["monitoring"]})
    api.put("/api/policies/%2F/p1", {"pattern": ".*", "definition": {"expires": 100000}})
    exported = api.get("/api/definitions")
    assert {"rabbit_version", "rabbitmq_version", "product_name", "product_version", "users",
            "vhosts", "permissions", "topic_permissions", "parameters", "global_parameters",
            "policies", "queues", "exchanges", "bindings"} == set(exported)
    assert exported["queues"] == [{"name": "orders.new", "vhost": "/", "durable": True,
                                   "auto_delete": False, "arguments": {"x-max-length": 5}}]
    assert exported["bindings"] == [{"source": "orders", "vhost": "/",
                                     "destination": "orders.new", "destination_type": "queue",
                                     "routing_key": "new", "arguments": {}}]
    other = burrowmq_factory()
    other_api = Api(other.management_port)
    assert other_api.post("/api/definitions", exported)[0] == 204
    again = other_api.get("/api/definitions")
    for key in ("queues", "exchanges", "bindings", "policies", "permissions", "vhosts"):
        assert again[key] == exported[key], key
    assert {u["name"]: u["password_hash"] for u in again["users"]}["svc"] == \
        {u["name"]: u["password_hash"] for u in exported["users"]}["svc"]
    connect(f"amqp://guest:guest@127.0.0.1:{other.port}/").close()


def test_health_checks(node) -> None:  # type: ignore[no-untyped-def]
    handle, api = node
    assert api.get("/api/aliveness-test/%2F") == {"status": "ok"}
    assert api.get("/api/healthchecks/node") == {"status": "ok"}
    assert api.get("/api/health/checks/alarms") == {"status": "ok"}
    assert api.get("/api/health/checks/local-alarms") == {"status": "ok"}
    assert api.get("/api/health/checks/virtual-hosts") == {"status": "ok"}
    assert api.get("/api/health/checks/ready-to-serve-clients") == {"status": "ok"}
    assert api.get(f"/api/health/checks/port-listener/{handle.port}") == {
        "status": "ok", "port": handle.port}
    assert api.get("/api/health/checks/protocol-listener/amqp") == {"status": "ok",
                                                                     "protocol": "amqp"}
    status, body = api.request("GET", "/api/health/checks/port-listener/1")
    assert status == 503
    assert body == {"status": "failed", "reason": "No active listener", "missing": 1,
                    "ports": [handle.port, handle.management_port]}
    handle.call(handle.node.alarms.set, "memory", True)
    status, body = api.request("GET", "/api/health/checks/alarms")
    assert (status, body["status"], body["alarms"]) == (
        503, "failed", [{"node": api.get("/api/overview")["node"], "resource": "memory"}])
    assert api.request("GET", "/api/health/checks/ready-to-serve-clients")[0] == 503
    handle.call(handle.node.alarms.set, "memory", False)
    assert api.get("/api/health/checks/alarms") == {"status": "ok"}


def test_list_columns_sort_pagination(node) -> None:  # type: ignore[no-untyped-def]
    _handle, api = node
    for name in ("b", "a", "c"):
        api.put(f"/api/queues/%2F/{name}", {})
    assert api.get("/api/queues?columns=name,vhost&sort=name") == [
        {"name": "a", "vhost": "/"}, {"name": "b", "vhost": "/"}, {"name": "c", "vhost": "/"}]
    page = api.get("/api/queues?page=2&page_size=2&sort=name&columns=name")
    assert page == {"filtered_count": 3, "item_count": 1, "items": [{"name": "c"}], "page": 2,
                    "page_count": 2, "page_size": 2, "total_count": 3}


def test_channel_with_a_reply_consumer(node) -> None:  # type: ignore[no-untyped-def]
    """The direct reply-to consumer has no queue: the channel's details leave it out instead
    of failing (mypy found fmt.consumer reading the queue of a queue-less consumer)."""
    handle, api = node
    conn = connect(handle.url)
    ch = conn.channel()
    ch.queue_declare("cq2")
    ch.basic_consume("cq2", lambda *a: None, consumer_tag="on-cq2")
    ch.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=True)
    name = wait_for(lambda: api.get("/api/channels"))[0]["name"]
    details = api.get(f"/api/channels/{quote(name)}")["consumer_details"]
    assert [(c["consumer_tag"], c["queue"]["name"]) for c in details] == [("on-cq2", "cq2")]
    conn.close()


def test_columns_apply_to_single_objects_too(burrowmq) -> None:  # type: ignore[no-untyped-def]
    """Monitoring scripts ask /api/overview?columns=... (nested with dots) and one queue's
    columns; RabbitMQ trims single-object answers as it trims lists."""
    conn = connect(burrowmq.url)
    conn.channel().queue_declare("colq")
    conn.close()
    api = Api(burrowmq.management_port)
    assert api.get("/api/queues/%2F/colq?columns=name,messages") == {"name": "colq",
                                                                    "messages": 0}
    overview = api.get("/api/overview?columns=rabbitmq_version,object_totals.queues")
    assert overview == {"rabbitmq_version": overview["rabbitmq_version"],
                        "object_totals": {"queues": 1}}
    assert set(api.get("/api/exchanges/%2F/amq.topic?columns=name,type")) == {"name", "type"}
    paged = api.get("/api/queues?columns=name&page=1&page_size=10")
    assert paged["items"] == [{"name": "colq"}] and paged["total_count"] == 1
    assert api.get("/api/queues?columns=name") == [{"name": "colq"}]

"""Strict input at every door of the management API: wrong JSON types get 400 with RabbitMQ's
error body (its reason where RabbitMQ 3.10.8 gives one, measured on a local node; a 400 naming
the field where RabbitMQ itself crashes with a 500), routes answer with a trailing slash, and
the publish endpoint applies basic.publish's rules (broker.core.publishing)."""

from __future__ import annotations

import pytest
from ops_helpers import Api


@pytest.fixture
def api(burrowmq):  # type: ignore[no-untyped-def]
    return Api(burrowmq.management_port)


def bad(api: Api, method: str, path: str, body, reason) -> None:  # type: ignore
    status, got = api.request(method, path, body)
    assert (status, got) == (400, {"error": "bad_request", "reason": reason}), (path, body)


@pytest.mark.parametrize("body,reason", [
    ({"durable": "maybe"}, ["not_boolean", "maybe"]),        # RabbitMQ 3.10.8: the same
    ({"durable": 1}, ["not_boolean", 1]),                    # the same
    ({"auto_delete": "x"}, ["not_boolean", "x"]),            # the same
    ({"arguments": "x"}, "arguments should be a JSON object but was <<\"x\">>"),  # RabbitMQ: 500
    ([1, 2], "not_json"),                                    # the same
    ("str", "invalid payload: the request body JSON-decoded to a string. Is the input "
            "doubly-JSON-encoded?"),                        # the same
])
def test_queue_declare_types(api, body, reason) -> None:  # type: ignore[no-untyped-def]
    bad(api, "PUT", "/api/queues/%2F/strict-q", body, reason)
    assert api.request("GET", "/api/queues/%2F/strict-q")[0] == 404  # nothing was declared


def test_not_json_and_empty_bodies(api) -> None:  # type: ignore[no-untyped-def]
    status, got = api.request("PUT", "/api/queues/%2F/q-raw", None,
                              headers={"Content-Type": "application/json"})
    assert status == 201  # an empty body is {} (durable by default)
    import json
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{api.port}/api/queues/%2F/q-raw2",
                                 data=b"{bad", method="PUT")
    req.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("accepted")
    except urllib.error.HTTPError as err:
        assert (err.code, json.loads(err.read())) == (
            400, {"error": "bad_request", "reason": "not_json"})


def test_exchange_and_other_doors(api) -> None:  # type: ignore[no-untyped-def]
    bad(api, "PUT", "/api/exchanges/%2F/sx", {"type": "direct", "internal": "no"},
        ["not_boolean", "no"])
    bad(api, "PUT", "/api/exchanges/%2F/sx", {"type": 5}, "type should be a string but was 5")
    bad(api, "PUT", "/api/permissions/%2F/guest", {}, "[{key_missing,configure},"
        "{key_missing,write},{key_missing,read}]")
    bad(api, "PUT", "/api/permissions/%2F/guest",
        {"configure": 5, "write": ".*", "read": ".*"}, "configure should be a string but was 5")
    bad(api, "PUT", "/api/policies/%2F/p", {"pattern": "x", "definition": {"max-length": "a"}},
        "Validation failed\n\n<<\"a\">> is not a valid maximum length\n")
    bad(api, "PUT", "/api/policies/%2F/p", {"pattern": "x", "definition": {"max-length": 1},
                                           "priority": "x"},
        "Validation failed\n\npriority should be a number, actually was <<\"x\">>\n")
    bad(api, "PUT", "/api/users/u1", {"password": "x", "tags": 5},
        "tags should be a string or a list of strings but was 5")
    bad(api, "PUT", "/api/vhosts/v1", {"tags": 5},
        "tags should be a string or a list of strings but was 5")
    assert api.put("/api/queues/%2F/sq", {}) == 201
    bad(api, "POST", "/api/queues/%2F/sq/get", {},
        "[{key_missing,ackmode},{key_missing,count},{key_missing,encoding}]")
    bad(api, "POST", "/api/queues/%2F/sq/get",
        {"count": "x", "ackmode": "ack_requeue_true", "encoding": "auto"}, ["not_integer", "x"])
    bad(api, "POST", "/api/bindings/%2F/e/amq.direct/q/sq", {"routing_key": 5},
        "routing_key should be a string but was 5")
    bad(api, "POST", "/api/definitions", {"queues": "x"}, "queues should be a list but was "
        "<<\"x\">>")
    bad(api, "POST", "/api/definitions", {"queues": [{"name": 5, "vhost": "/"}]},
        "queues[0].name should be a string but was 5")
    status, got = api.request("GET", "/api/queues?page=1&page_size=1000")
    assert (status, got["error"]) == (400, "invalid_pagination_parameters")


def test_trailing_slashes_are_accepted(api) -> None:  # type: ignore[no-untyped-def]
    assert api.request("GET", "/api/overview/")[0] == 200
    assert api.request("GET", "/api/queues/")[0] == 200
    assert api.request("PUT", "/api/queues/%2F/slashed/", {"durable": False})[0] == 201
    assert api.request("GET", "/api/queues/%2F/slashed/")[1]["durable"] is False
    assert api.request("DELETE", "/api/queues/%2F/slashed/")[0] == 204


PUBLISH = {"routing_key": "pq", "payload": "hello", "payload_encoding": "string",
           "properties": {}}


def test_publish_applies_basic_publish_rules(api, burrowmq) -> None:  # type: ignore
    assert api.put("/api/queues/%2F/pq", {}) == 201
    assert api.post("/api/exchanges/%2F/amq.default/publish", PUBLISH) == (200, {"routed": True})
    for exchange, props, reason in [
        ("nope", {}, "404 NOT_FOUND - no exchange 'nope' in vhost '/'"),
        ("amq.rabbitmq.trace", {}, "403 ACCESS_REFUSED - cannot publish to internal exchange "
                                   "'amq.rabbitmq.trace' in vhost '/'"),
        ("amq.default", {"expiration": "abc"},
         "406 PRECONDITION_FAILED - invalid expiration 'abc': no_integer"),
        ("amq.default", {"user_id": "other"}, "406 PRECONDITION_FAILED - user_id property set "
                                              "to 'other' but authenticated user was 'guest'"),
        ("amq.default", {"delivery_mode": "x"}, ["not_int", "delivery_mode"]),
    ]:
        bad(api, "POST", f"/api/exchanges/%2F/{exchange}/publish",
            {**PUBLISH, "properties": props}, reason)
    bad(api, "POST", "/api/exchanges/%2F/amq.default/publish", {**PUBLISH, "payload": 5},
        "payload_not_string")
    bad(api, "POST", "/api/exchanges/%2F/amq.default/publish",
        {**PUBLISH, "payload_encoding": "base64", "payload": "!!!"}, ["not_base64", "!!!"])
    assert api.get("/api/queues/%2F/pq")["messages"] == 1  # only the first one landed


def test_publish_max_size_alarms_and_queue_limits(burrowmq_factory) -> None:  # type: ignore
    handle = burrowmq_factory(max_message_size=10)
    api = Api(handle.management_port)
    assert api.put("/api/queues/%2F/lim", {"arguments": {"x-max-length": 1,
                                                         "x-overflow": "reject-publish"}}) == 201
    body = {**PUBLISH, "routing_key": "lim"}
    bad(api, "POST", "/api/exchanges/%2F/amq.default/publish", {**body, "payload": "x" * 11},
        "406 PRECONDITION_FAILED - message size 11 is larger than configured max size 10")
    assert api.post("/api/exchanges/%2F/amq.default/publish", body)[0] == 200
    assert api.post("/api/exchanges/%2F/amq.default/publish", body)[0] == 200
    assert api.get("/api/queues/%2F/lim")["messages"] == 1  # the queue's overflow rule held
    import dataclasses
    import time

    node = handle.node

    def disk_limit(limit: int) -> None:
        node.config = dataclasses.replace(node.config, disk_free_limit=limit,
                                          disk_free_limit_relative=None)
    handle.loop.call_soon_threadsafe(disk_limit, 10**18)
    try:
        deadline = time.monotonic() + 3
        while "disk" not in node.alarms.active:  # the alarm timer runs every second
            assert time.monotonic() < deadline
            time.sleep(0.05)
        status, got = api.post("/api/exchanges/%2F/amq.default/publish", body)
        assert (status, got) == (503, {"error": "service_unavailable",
                                       "reason": "publishing is blocked: low on disk"})
    finally:
        handle.loop.call_soon_threadsafe(disk_limit, 0)
    assert api.get("/api/overview")["message_stats"]["publish"] >= 2

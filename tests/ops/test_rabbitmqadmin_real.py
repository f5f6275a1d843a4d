"""RabbitMQ's own rabbitmqadmin (shipped in Debian's rabbitmq-server, which .ci/run installs)
against our management API: the everyday verbs an operator types, unchanged. It sends what
RabbitMQ's management API accepts, which is not always what our own CLI sends (``count`` of
``get`` as a string, for one)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from ops_helpers import Api, connect
from outside import require_program


def admin(handle, *args: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    script = require_program("rabbitmqadmin", package="rabbitmq-server")
    return subprocess.run([sys.executable, script, "-H", "127.0.0.1",
                           "-P", str(handle.management_port), *args],
                          capture_output=True, text=True, timeout=30)


def ok(handle, *args: str) -> str:  # type: ignore[no-untyped-def]
    proc = admin(handle, *args)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


def test_declare_publish_get_delete(burrowmq) -> None:  # type: ignore[no-untyped-def]
    assert ok(burrowmq, "declare", "queue", "name=jobs", "durable=true",
              'arguments={"x-max-length": 5}').strip() == "queue declared"
    ok(burrowmq, "declare", "exchange", "name=work", "type=topic")
    ok(burrowmq, "declare", "binding", "source=work", "destination=jobs",
       "routing_key=jobs.#")
    # it sends "auto_delete": "false", "internal": "false" (strings): not truthy
    api = Api(burrowmq.management_port)
    ex = api.get("/api/exchanges/%2F/work")
    assert (ex["type"], ex["durable"], ex["auto_delete"], ex["internal"]) == (
        "topic", True, False, False)
    q = api.get("/api/queues/%2F/jobs")
    assert (q["durable"], q["auto_delete"]) == (True, False)
    assert ok(burrowmq, "publish", "exchange=work", "routing_key=jobs.a",
              "payload=hello").strip() == "Message published"
    assert ok(burrowmq, "publish", "exchange=work", "routing_key=nowhere",
              "payload=x").strip() == "Message published but NOT routed"
    # rabbitmqadmin sends {"count": "1", ...}: a string, as RabbitMQ's own UI does
    got = json.loads(ok(burrowmq, "-f", "raw_json", "get", "queue=jobs",
                        "ackmode=ack_requeue_false"))
    assert [(m["payload"], m["routing_key"]) for m in got] == [("hello", "jobs.a")]
    conn = connect(burrowmq.url)
    conn.channel().basic_publish("work", "jobs.pika", b"from pika")  # not internal
    conn.close()
    assert api.get("/api/queues/%2F/jobs")["messages"] == 1
    rows = json.loads(ok(burrowmq, "-f", "raw_json", "list", "queues"))
    assert [(q["name"], q["arguments"]) for q in rows] == [("jobs", {"x-max-length": 5})]
    ok(burrowmq, "delete", "queue", "name=jobs")
    ok(burrowmq, "delete", "exchange", "name=work")  # still there: not auto-deleted


def test_booleans_are_json_or_strings(burrowmq) -> None:  # type: ignore[no-untyped-def]
    api = Api(burrowmq.management_port)
    assert api.put("/api/exchanges/%2F/x1", {"type": "direct", "durable": "false",
                                             "auto_delete": "true", "internal": "false"}) == 201
    ex = api.get("/api/exchanges/%2F/x1")
    assert (ex["durable"], ex["auto_delete"], ex["internal"]) == (False, True, False)
    status, body = api.request("PUT", "/api/queues/%2F/q1", {"durable": "yes"})
    assert status == 400 and "not_boolean" in body["reason"], body
    assert api.request("GET", "/api/queues/%2F/q1")[0] == 404


@pytest.mark.parametrize("body", [{"count": "2", "ackmode": "ack_requeue_true",
                                   "encoding": "auto", "truncate": "3"},
                                  {"count": 2, "ackmode": "ack_requeue_true",
                                   "encoding": "auto", "truncate": 3}])
def test_get_takes_numbers_as_strings(burrowmq, body) -> None:  # type: ignore[no-untyped-def]
    """RabbitMQ's UI posts the form's text fields as they are ("count": "1",
    "truncate": "50000"); RabbitMQ parses them as integers."""
    conn = connect(burrowmq.url)
    ch = conn.channel()
    ch.queue_declare("q")
    for body_text in (b"first", b"second"):
        ch.basic_publish("", "q", body_text)
    conn.close()
    status, got = Api(burrowmq.management_port).post("/api/queues/%2F/q/get", body)
    assert status == 200, got
    assert [m["payload"] for m in got] == ["fir", "sec"]
    assert [m["payload_bytes"] for m in got] == [5, 6]


def test_policies_users_vhosts_and_definitions(burrowmq, tmp_path) -> None:  # type: ignore
    ok(burrowmq, "declare", "vhost", "name=staging")
    ok(burrowmq, "declare", "user", "name=app", "password=pw", "tags=monitoring")
    ok(burrowmq, "declare", "permission", "vhost=staging", "user=app", "configure=.*",
       "write=.*", "read=.*")
    ok(burrowmq, "declare", "policy", "name=cap", "pattern=^jobs",
       'definition={"max-length": 3}', "apply-to=queues")
    policies = json.loads(ok(burrowmq, "-f", "raw_json", "list", "policies"))
    assert [(p["name"], p["definition"]) for p in policies] == [("cap", {"max-length": 3})]
    ok(burrowmq, "declare", "vhost_limit", "vhost=staging", "name=max-queues", "value=10")
    limits = json.loads(ok(burrowmq, "-f", "raw_json", "list", "vhost_limits"))
    assert limits == [{"vhost": "staging", "value": {"max-queues": 10}}]
    path = tmp_path / "defs.json"
    ok(burrowmq, "export", str(path))
    assert {u["name"] for u in json.loads(path.read_text())["users"]} == {"guest", "app"}
    ok(burrowmq, "delete", "policy", "name=cap")
    ok(burrowmq, "delete", "user", "name=app")
    ok(burrowmq, "delete", "vhost", "name=staging")
    ok(burrowmq, "import", str(path))
    users = json.loads(ok(burrowmq, "-f", "raw_json", "list", "users"))
    assert {u["name"] for u in users} == {"guest", "app"}

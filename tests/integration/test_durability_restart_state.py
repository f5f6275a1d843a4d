"""State that is not AMQP topology across a restart: policies, vhosts added at runtime (with
their queues), vhost descriptions and tags, topic permissions.

Vhosts and policies have no AMQP way to be set, so most of these tests run the broker in this
process, set them through the Server object, stop it and start a new one on the same data
directory.
"""

from __future__ import annotations

import json
import time

import pika
import pytest
from durability_clients import PERSISTENT
from durability_helpers import InProcessBroker, saved_definitions, wait_for
from pika_helpers import drain

pytestmark = pytest.mark.deadline(None)  # every wait here has its own bound


# ---- vhosts and policies (in process) --------------------------------------------------------
def test_policy_comes_back(tmp_path) -> None:
    data = tmp_path / "data"
    first = InProcessBroker(data)
    try:
        first.call(lambda: first.server.vhosts["/"].set_policy(
            "limit", r"^pol\.", {"max-length": 1}, 3, "queues"))
        conn = first.connect()
        ch = conn.channel()
        ch.queue_declare("pol.a", durable=True)
        conn.close()
        wait_for(lambda: saved_definitions(data).get("policies") and any(
            q["name"] == "pol.a" for q in saved_definitions(data).get("queues", [])), 5,
            "definitions saved")
    finally:
        first.stop()

    second = InProcessBroker(data)
    try:
        policy = second.call(lambda: second.server.vhosts["/"].policies.get("limit"))
        assert policy == {"pattern": r"^pol\.", "definition": {"max-length": 1},
                          "priority": 3, "apply-to": "queues"}
        conn = second.connect()
        ch = conn.channel()
        ch.queue_declare("pol.b", durable=True)
        for queue in ("pol.a", "pol.b"):
            for n in range(3):
                ch.basic_publish("", queue, f"{queue}-{n}".encode(), PERSISTENT)
        assert drain(ch, "pol.a") == [b"pol.a-2"]  # the policy applies to the old queue
        assert drain(ch, "pol.b") == [b"pol.b-2"]  # and to new ones
        conn.close()
    finally:
        second.stop()


def test_vhost_added_at_runtime_comes_back_with_its_queues(tmp_path) -> None:
    data = tmp_path / "data"
    first = InProcessBroker(data)
    try:
        first.call(first.server.add_vhost, "v2")
        conn = first.connect("v2")
        ch = conn.channel()
        ch.confirm_delivery()
        ch.exchange_declare("v2.x", "direct", durable=True)
        ch.queue_declare("v2.q", durable=True)
        ch.queue_bind("v2.q", "v2.x", "k")
        ch.basic_publish("v2.x", "k", b"in-v2", PERSISTENT, mandatory=True)
        conn.close()
        # give an asynchronous definitions save time to land (not asserted: checked below)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not any(
                q["name"] == "v2.q" for q in saved_definitions(data).get("queues", [])):
            time.sleep(0.05)
    finally:
        first.stop()

    second = InProcessBroker(data)
    try:
        assert "v2" in second.call(lambda: list(second.server.vhosts)), \
            "vhost v2 did not survive the restart"
        conn = second.connect("v2")
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("v2.q", passive=True)
        assert drain(ch, "v2.q") == [b"in-v2"]
        ch.basic_publish("v2.x", "k", b"again", PERSISTENT, mandatory=True)
        assert drain(ch, "v2.q") == [b"again"]
        conn.close()
    finally:
        second.stop()


def test_vhost_description_and_tags_come_back(tmp_path) -> None:
    data = tmp_path / "data"
    first = InProcessBroker(data)
    try:
        first.call(first.server.add_vhost, "meta", "before", ["a"], "quorum")
        first.call(first.server.update_vhost_meta, "meta", "billing jobs", ["prod", "eu"])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
                v.get("description") == "billing jobs"
                for v in saved_definitions(data).get("vhosts", [])):
            time.sleep(0.05)
    finally:
        first.stop()

    second = InProcessBroker(data)
    try:
        meta = second.call(lambda: dict(second.server.vhost_meta["meta"]))
        assert meta == {"description": "billing jobs", "tags": ["prod", "eu"],
                        "default_queue_type": "quorum"}
    finally:
        second.stop()


def test_topic_permissions_survive_a_restart(brokers, tmp_path) -> None:
    defs = tmp_path / "defs.json"
    defs.write_text(json.dumps({
        "users": [{"name": "tp", "password": "tp", "tags": "administrator"}],
        "vhosts": [{"name": "/"}],
        "permissions": [{"user": "tp", "vhost": "/", "configure": ".*", "write": ".*",
                         "read": ".*"}],
        "topic_permissions": [{"user": "tp", "vhost": "/", "exchange": "amq.topic",
                               "write": "^ok", "read": ".*"}]}))
    broker = brokers("--load-definitions", str(defs))
    deadline = time.monotonic() + 3
    while not saved_definitions(broker.data_dir).get("topic_permissions"):
        assert time.monotonic() < deadline, "topic permissions not saved"
        time.sleep(0.05)
    broker.terminate()
    broker = brokers()  # no definitions file this time: what was saved comes back
    params = pika.ConnectionParameters("127.0.0.1", broker.port,
                                       credentials=pika.PlainCredentials("tp", "tp"))
    with pika.BlockingConnection(params) as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("amq.topic", "ok.1", b"allowed")
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            ch.basic_publish("amq.topic", "no.1", b"refused")
        assert info.value.reply_code == 403

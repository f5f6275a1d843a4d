"""Users, permissions, loopback users and password hashes, through real AMQP clients."""

from __future__ import annotations

import time

import pika
import pytest
from ops_helpers import Api, amqp_url, connect

from broker.core import users


@pytest.fixture
def node(burrowmq_factory):  # type: ignore[no-untyped-def]
    handle = burrowmq_factory()
    api = Api(handle.management_port)
    assert api.put("/api/users/u", {"password": "pw", "tags": ""}) == 201
    return handle, api


def grant(api: Api, configure: str, write: str, read: str, vhost: str = "%2F") -> None:
    assert api.put(f"/api/permissions/{vhost}/u",
                   {"configure": configure, "write": write, "read": read}) in (201, 204)


def refused(fn, text: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        fn()
    assert (info.value.reply_code, info.value.reply_text) == (403, "ACCESS_REFUSED - " + text)


def test_vhost_access_refused_at_connection_open(node) -> None:  # type: ignore[no-untyped-def]
    handle, _api = node
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        connect(amqp_url(handle, "u", "pw"))
    assert "NOT_ALLOWED - access to vhost '/' refused for user 'u'" in str(info.value)


def test_configure_write_read_enforced(node) -> None:  # type: ignore[no-untyped-def]
    handle, api = node
    grant(api, "^own-", "^own-", "^own-")
    conn = connect(amqp_url(handle, "u", "pw"))
    ch = conn.channel()
    ch.queue_declare("own-q")
    ch.exchange_declare("own-x", "fanout")
    ch.queue_bind("own-q", "own-x")
    ch.basic_publish("own-x", "", b"hi")
    ch.basic_get("own-q")
    refused(lambda: ch.queue_declare("other-q"),
            "configure access to queue 'other-q' in vhost '/' refused for user 'u'")
    ch = conn.channel()
    refused(lambda: ch.basic_publish("amq.fanout", "", b"x") or ch.queue_declare("own-z"),
            "write access to exchange 'amq.fanout' in vhost '/' refused for user 'u'")
    ch = conn.channel()
    refused(lambda: ch.queue_bind("own-q", "amq.direct"),
            "read access to exchange 'amq.direct' in vhost '/' refused for user 'u'")
    conn.close()


def test_default_exchange_is_amq_default(node) -> None:  # type: ignore[no-untyped-def]
    handle, api = node
    grant(api, ".*", "^own-", ".*")
    conn = connect(amqp_url(handle, "u", "pw"))
    ch = conn.channel()
    refused(lambda: ch.basic_publish("", "q", b"x") or ch.queue_declare("any"),
            "write access to exchange 'amq.default' in vhost '/' refused for user 'u'")
    conn.close()


def test_read_needed_for_consume_get_purge(node) -> None:  # type: ignore[no-untyped-def]
    handle, api = node
    grant(api, ".*", ".*", "^$")
    conn = connect(amqp_url(handle, "u", "pw"))
    ch = conn.channel()
    ch.queue_declare("q1")
    for action in (lambda c: c.basic_get("q1"), lambda c: c.queue_purge("q1"),
                   lambda c: c.basic_consume("q1", lambda *a: None)):
        refused(lambda a=action, c=ch: a(c),
                "read access to queue 'q1' in vhost '/' refused for user 'u'")
        ch = conn.channel()
    conn.close()


def test_permission_change_applies_to_open_connection(node) -> None:  # type: ignore
    handle, api = node
    grant(api, ".*", ".*", ".*")
    conn = connect(amqp_url(handle, "u", "pw"))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("amq.topic", "k", b"1")
    grant(api, ".*", "^$", ".*")
    refused(lambda: ch.basic_publish("amq.topic", "k", b"2"),
            "write access to exchange 'amq.topic' in vhost '/' refused for user 'u'")
    conn.close()


def test_wrong_password_refused(node) -> None:  # type: ignore[no-untyped-def]
    handle, _api = node
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as info:
        connect(amqp_url(handle, "u", "nope"))
    assert "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN" \
        in str(info.value)


def test_guest_refused_from_non_loopback(burrowmq, monkeypatch) -> None:  # type: ignore
    """The broker sees 127.0.0.1 here; make it judge the peer as remote, as a LAN client is."""
    monkeypatch.setattr(users, "is_loopback", lambda host: False)
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as info:
        connect(burrowmq.url)
    assert ("ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For "
            "details see the broker logfile.") in str(info.value)


def test_loopback_users_empty_lets_guest_in_remotely(burrowmq_factory, monkeypatch) -> None:  # type: ignore  # noqa: E501
    monkeypatch.setattr(users, "is_loopback", lambda host: False)
    handle = burrowmq_factory(loopback_users=())
    connect(handle.url).close()


def test_password_hash_layout_matches_rabbitmq() -> None:
    # RabbitMQ's documented examples: salt 908DC60A + "test12" (SHA-256, the default) and
    # salt CAD5089B + "simon" (the legacy MD5 module).
    stored = users.decode_hash("kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR")
    assert users.hash_password("test12", bytes.fromhex("908DC60A")) == stored
    assert users.check_password(stored, "test12")
    assert not users.check_password(stored, "test13")
    legacy = users.decode_hash("ytUIm8s3AnKsXQjptplKFytfVxI=")
    assert users.check_password(legacy, "simon", "rabbit_password_hashing_md5")
    fresh = users.hash_password("secret")
    assert len(fresh) == 36 and users.check_password(fresh, "secret")
    assert users.hash_password("secret", fresh[:4]) == fresh


def test_imported_hash_logs_in(burrowmq) -> None:  # type: ignore[no-untyped-def]
    api = Api(burrowmq.management_port)
    digest = users.encode_hash(users.hash_password("s3cret"))
    assert api.put("/api/users/imp", {"password_hash": digest, "tags": ["monitoring"]}) == 201
    assert api.put("/api/permissions/%2F/imp",
                   {"configure": ".*", "write": ".*", "read": ".*"}) == 201
    connect(amqp_url(burrowmq, "imp", "s3cret")).close()
    user = api.get("/api/users/imp")
    assert user == {"name": "imp", "password_hash": digest,
                    "hashing_algorithm": "rabbit_password_hashing_sha256",
                    "tags": ["monitoring"], "limits": {}}


def test_users_permissions_and_vhosts_survive_restart(burrowmq_factory, tmp_path) -> None:  # type: ignore  # noqa: E501
    data = str(tmp_path / "node")
    first = burrowmq_factory(data_dir=data)
    api = Api(first.management_port)
    assert api.put("/api/vhosts/team", {}) == 201  # the creator (guest) gets full access
    assert api.get("/api/permissions/team/guest")["configure"] == ".*"
    assert api.put("/api/users/svc", {"password": "pw", "tags": "monitoring"}) == 201
    assert api.put("/api/permissions/team/svc",
                   {"configure": "^svc", "write": ".*", "read": ".*"}) == 201
    assert api.delete("/api/users/guest") == 204
    api = api.as_user("svc", "pw")
    time.sleep(0.3)  # the definitions document is saved asynchronously
    first.stop()
    second = burrowmq_factory(data_dir=data)
    api = Api(second.management_port, "svc", "pw")
    assert api.get("/api/whoami") == {"name": "svc", "tags": ["monitoring"],
                                      "is_internal_user": True}
    conn = connect(amqp_url(second, "svc", "pw", "team"))
    refused(lambda: conn.channel().queue_declare("other"),
            "configure access to queue 'other' in vhost 'team' refused for user 'svc'")
    conn.close()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(second.url)  # not a blank node: the default user is not re-created


def test_server_named_queue_is_checked_by_its_generated_name(node) -> None:  # type: ignore[no-untyped-def]
    """RabbitMQ checks configure on the name it generated, so a pattern for the full
    amq.gen-<22 chars> form allows it and the refusal names the generated queue."""
    handle, api = node
    grant(api, r"^amq\.gen-[A-Za-z0-9_-]{22}$", ".*", ".*")
    conn = connect(amqp_url(handle, "u", "pw"))
    ch = conn.channel()
    name = ch.queue_declare("", exclusive=True).method.queue
    assert name.startswith("amq.gen-") and len(name) == 30
    grant(api, "^own-", ".*", ".*")
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare("", exclusive=True)
    assert info.value.reply_code == 403
    text = info.value.reply_text
    assert text.startswith("ACCESS_REFUSED - configure access to queue 'amq.gen-")
    assert text.endswith("' in vhost '/' refused for user 'u'")
    assert len(text.split("'")[1]) == 30
    conn.close()

"""Configuration: rabbitmq.conf keys, environment variables, flags, definitions at boot."""

from __future__ import annotations

import json

import pika
import pytest
from ops_helpers import Api, amqp_url, connect

from broker.node import conffile
from broker.node.config import parse_args


def test_rabbitmq_conf_keys(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for var in ("RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS", "RABBITMQ_NODE_PORT",
                "RABBITMQ_DEFAULT_VHOST", "RABBITMQ_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text("""
# a comment
listeners.tcp.default = 127.0.0.1:5999
default_user = admin
default_pass = s3cret
default_vhost = app
loopback_users.guest = false
loopback_users.admin = true
heartbeat = 30
frame_max = 65536
channel_max = 100
disk_free_limit.absolute = 2GB
vm_memory_high_watermark.relative = 0.6
load_definitions = /etc/rabbitmq/definitions.json
management.tcp.port = 15999
prometheus.tcp.port = 0
default_user_tags.monitoring = true
""")
    cfg = parse_args(["--config-file", str(conf)])
    assert (cfg.host, cfg.port, cfg.default_user, cfg.default_pass, cfg.default_vhost) == (
        "127.0.0.1", 5999, "admin", "s3cret", "app")
    assert cfg.loopback_users == ("admin",)
    assert (cfg.heartbeat, cfg.frame_max, cfg.channel_max) == (30, 65536, 100)
    assert cfg.disk_free_limit == 2_000_000_000 and cfg.disk_free_limit_relative is None
    assert cfg.vm_memory_high_watermark_relative == 0.6
    assert cfg.load_definitions == "/etc/rabbitmq/definitions.json"
    assert (cfg.management_port, cfg.prometheus_port) == (15999, None)
    assert cfg.default_user_tags == ("administrator", "monitoring")
    monkeypatch.setenv("RABBITMQ_DEFAULT_USER", "fromenv")
    monkeypatch.setenv("RABBITMQ_NODE_PORT", "6001")
    cfg = parse_args(["--config-file", str(conf), "--port", "6002"])
    assert (cfg.default_user, cfg.port) == ("fromenv", 6002)
    monkeypatch.setenv("RABBITMQ_CONFIG_FILE", str(conf))
    assert parse_args([]).default_vhost == "app"


def test_defaults_of_python_m_broker(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("RABBITMQ_CONFIG_FILE", raising=False)
    cfg = parse_args([])
    assert (cfg.management_port, cfg.prometheus_port) == (15672, 15692)
    assert parse_args(["--management-port", "0"]).management_port is None


def test_units_and_listener_forms() -> None:
    assert conffile.parse_bytes("1GiB") == 1024**3
    assert conffile.parse_bytes("50MB") == 50_000_000
    assert conffile.parse_bytes("12345") == 12345
    assert conffile.parse_listener(":::5672") == ("::", 5672)
    assert conffile.parse_listener("5672") == (None, 5672)
    assert conffile.parse_text("loopback_users = none") == {"loopback_users": ()}
    assert conffile.parse_text("disk_free_limit.relative = 1.5") == {
        "disk_free_limit_relative": 1.5}
    with pytest.raises(conffile.ConfigFileError, match="rabbitmq.conf:2"):
        conffile.parse_text("heartbeat = 1\nno equals sign here")
    with pytest.raises(conffile.ConfigFileError):
        conffile.parse_text("disk_free_limit.absolute = lots")


DEFINITIONS = {
    "vhosts": [{"name": "/"}, {"name": "orders"}],
    "queues": [{"name": "jobs", "vhost": "orders", "durable": True, "auto_delete": False,
                "arguments": {}}],
    "exchanges": [{"name": "jobs-x", "vhost": "orders", "type": "direct", "durable": True,
                   "auto_delete": False, "internal": False, "arguments": {}}],
    "bindings": [{"source": "jobs-x", "vhost": "orders", "destination": "jobs",
                  "destination_type": "queue", "routing_key": "run", "arguments": {}}],
}


def test_definitions_without_users_keep_default_user(burrowmq_factory, tmp_path) -> None:  # type: ignore  # noqa: E501
    path = tmp_path / "defs.json"
    path.write_text(json.dumps(DEFINITIONS))
    handle = burrowmq_factory(load_definitions=str(path))
    vhost = handle.server.vhosts["orders"]
    assert "jobs" in vhost.queues and "jobs-x" in vhost.exchanges
    connect(handle.url).close()


def test_definitions_with_users_replace_default_user(burrowmq_factory, tmp_path) -> None:  # type: ignore  # noqa: E501
    data = dict(DEFINITIONS, users=[{"name": "ops", "password": "pw", "tags": "administrator"}],
                permissions=[{"user": "ops", "vhost": "orders", "configure": ".*",
                              "write": ".*", "read": ".*"}])
    path = tmp_path / "defs.json"
    path.write_text(json.dumps(data))
    handle = burrowmq_factory(load_definitions=str(path))
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(handle.url)
    conn = connect(amqp_url(handle, "ops", "pw", "orders"))
    conn.channel().queue_declare("jobs", passive=True)
    conn.close()
    assert Api(handle.management_port, "ops", "pw").get("/api/whoami")["name"] == "ops"

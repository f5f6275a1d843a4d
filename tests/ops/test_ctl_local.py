"""burrowctl over the local control socket (``<data dir>/ctl.sock`` + ``ctl.cookie``): works
with the management API off and after the admin password changed, as rabbitmqctl does with
its cookie; the HTTP API stays the way to a remote node."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pika
import pytest
from ops_helpers import Api, burrowctl, connect

from broker.ops import localctl


def local(handle, *args: str):  # type: ignore[no-untyped-def]
    return burrowctl("--data-dir", handle.data_dir, *args)


def test_management_off_password_changed_still_controllable(burrowmq_factory) -> None:  # type: ignore  # noqa: E501
    handle = burrowmq_factory(management_port=None)
    assert handle.management_port is None
    ping = local(handle, "ping")
    assert ping.code == 0 and ping.out.endswith("Ping succeeded\n")
    assert "answers on its control socket" in ping.out and "epmd" not in ping.out
    assert local(handle, "change_password", "guest", "n3w").code == 0
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(handle.url)
    assert local(handle, "authenticate_user", "guest", "n3w").out.endswith("Success\n")
    status = local(handle, "status")
    assert status.code == 0 and f"port: {handle.port}, protocol: amqp, purpose: AMQP " \
        "0-9-1\n" in status.out
    assert "AMQP 1.0" not in status.out


def test_http_fallback_names_the_way_out(burrowmq) -> None:  # type: ignore[no-untyped-def]
    assert local(burrowmq, "change_password", "guest", "n3w").code == 0
    remote = burrowctl("--port", str(burrowmq.management_port), "list_queues")
    assert remote.code == 69
    assert "authentication to the management API at 127.0.0.1" in remote.err
    assert "burrowctl --data-dir" in remote.err
    assert burrowctl("--port", str(burrowmq.management_port), "--password", "n3w",
                     "list_queues", "-q").code == 0


def test_socket_and_cookie_are_private_and_authenticated(burrowmq) -> None:  # type: ignore
    data = Path(burrowmq.data_dir)
    for name in (localctl.SOCKET_NAME, localctl.COOKIE_NAME):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    import http.client

    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = localctl.connect(data / localctl.SOCKET_NAME, 5)

    for headers in ({}, {localctl.COOKIE_HEADER: "wrong"},
                    {"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}):  # guest:guest is not enough
        conn = Conn("localhost")
        conn.request("GET", "/api/overview", headers=headers)
        assert conn.getresponse().status == 401, headers
        conn.close()
    # and the cookie is not a password for the TCP listener
    status, _ = Api(burrowmq.management_port, "x", "y").request(
        "GET", "/api/overview",
        headers={localctl.COOKIE_HEADER: (data / "ctl.cookie").read_text().strip()})
    assert status == 401


def test_cookie_survives_a_restart_and_is_tightened(tmp_path) -> None:  # type: ignore
    first = localctl.ensure_cookie(tmp_path)
    (tmp_path / localctl.COOKIE_NAME).chmod(0o644)
    assert localctl.ensure_cookie(tmp_path) == first
    assert stat.S_IMODE((tmp_path / localctl.COOKIE_NAME).stat().st_mode) == 0o600


def test_stopped_node_is_reported_not_replaced_by_http(burrowmq_factory) -> None:  # type: ignore  # noqa: E501
    handle = burrowmq_factory()
    sock = Path(handle.data_dir) / localctl.SOCKET_NAME
    handle.stop()
    assert not sock.exists()  # a clean stop removes it
    sock.touch()  # what a kill -9 leaves behind (a dead socket file)
    (Path(handle.data_dir) / localctl.COOKIE_NAME).write_text("c\n")
    result = local(handle, "ping")
    assert result.code == 69
    assert f"attempted to contact: control socket {sock}" in result.err


def test_long_data_dir_path(burrowmq_factory, tmp_path) -> None:  # type: ignore
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    handle = burrowmq_factory(data_dir=str(deep))
    assert len(str(deep / "ctl.sock")) > 108
    assert local(handle, "ping").code == 0


def test_node_commands(burrowmq) -> None:  # type: ignore[no-untyped-def]
    assert local(burrowmq, "await_startup").code == 0
    health = local(burrowmq, "node_health_check")
    assert health.code == 0 and health.out.endswith("Health check passed\n")
    perms = local(burrowmq, "list_user_permissions", "guest")
    assert perms.out == ('Listing permissions for user "guest" ...\n'
                         "vhost\tconfigure\twrite\tread\n/\t.*\t.*\t.*\n")
    nobody = local(burrowmq, "list_user_permissions", "nobody")
    assert (nobody.code, nobody.err) == (69, 'Error:\nUser "nobody" does not exist\n')
    bad = local(burrowmq, "authenticate_user", "guest", "wrong")
    assert (bad.code, bad.err) == (65, 'Error:\nError: failed to authenticate user "guest"\n'
                                       "user 'guest' - invalid credentials\n")
    env = local(burrowmq, "environment")
    assert env.out.startswith("Application environment of node rabbit@")
    assert f'{{data_dir,"{os.path.abspath(burrowmq.data_dir)}"}}' in env.out
    assert '{default_pass,"********"}' in env.out and "guest\"}" in env.out
    settings = json.loads(local(burrowmq, "environment", "--formatter", "json").out)
    assert settings["burrowmq"]["heartbeat"] == 60
    report = local(burrowmq, "report").out
    for part in ("Reporting server status of node", "\nStatus of node", "\nCluster status of",
                 "Application environment", "Listing connections", "Listing queues for vhost /",
                 "Listing policies for vhost"):
        assert part in report, part


def test_status_and_cluster_status_agree(burrowmq) -> None:  # type: ignore[no-untyped-def]
    status = local(burrowmq, "status").out
    cluster = local(burrowmq, "cluster_status").out
    version = next(line for line in status.splitlines() if line.startswith("burrowmq version:"))
    python = next(line for line in status.splitlines() if line.startswith("Python: "))
    node = status.splitlines()[0].split()[3]
    assert f"{node}: RabbitMQ 3.13.7 (burrowmq {version.split(': ')[1]}) on Python " \
           f"{python.split(': ')[1]}" in cluster
    assert "Erlang" not in cluster
    data_dir = next(line for line in status.splitlines() if "Node data directory" in line)
    assert data_dir == f"Node data directory: {os.path.abspath(burrowmq.data_dir)}"


def test_cluster_commands_on_a_single_node(burrowmq) -> None:  # type: ignore
    running = local(burrowmq, "join_cluster", "rabbit@other")
    assert running.code == 64 and running.err.startswith(
        "Error (argument validation): this command requires the 'rabbit' app to be stopped on "
        "the target node. Stop it with 'burrowctl stop_app'.\n")
    assert local(burrowmq, "stop_app").code == 0
    join = local(burrowmq, "join_cluster", "rabbit@other")
    assert join.code == 69 and join.out.startswith("Clustering node rabbit@")
    assert "runs as a single node" in join.err
    assert local(burrowmq, "start_app").code == 0
    forget = local(burrowmq, "forget_cluster_node", "rabbit@other")
    assert (forget.code, forget.err) == (69, "Error:\nThe node selected is not in the "
                                             "cluster.\n")
    node = local(burrowmq, "status").out.splitlines()[0].split()[3]
    itself = local(burrowmq, "forget_cluster_node", node)
    assert itself.code == 69 and "it is the only node of the cluster" in itself.err


def test_list_queues_memory_grows_with_messages(burrowmq) -> None:  # type: ignore
    conn = connect(burrowmq.url)
    ch = conn.channel()
    ch.queue_declare("small")
    ch.queue_declare("big")
    for _ in range(200):
        ch.basic_publish("", "big", b"x" * 1000)
    ch.basic_publish("", "small", b"x")
    conn.process_data_events(0.1)
    rows = dict(line.split("\t") for line in
                local(burrowmq, "list_queues", "name", "memory", "-s").out.splitlines())
    assert 0 < int(rows["small"]) < int(rows["big"])
    assert int(rows["big"]) > 200 * 1000
    conn.close()

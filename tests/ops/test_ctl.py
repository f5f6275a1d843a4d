"""burrowctl: rabbitmqctl's commands and output layout, run as a separate process against a
running broker, output parsed as a script would parse it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pika
import pytest
from ops_helpers import amqp_url, connect


def ctl(handle, *args: str, check: bool = True) -> subprocess.CompletedProcess:  # type: ignore
    proc = subprocess.run([sys.executable, "-m", "broker.ops.ctl", "--port",
                           str(handle.management_port), *args],
                          capture_output=True, text=True, timeout=30)
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def table(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines()]


def test_ping_and_console_script(burrowmq) -> None:  # type: ignore[no-untyped-def]
    out = ctl(burrowmq, "ping").stdout.splitlines()
    assert out[-1] == "Ping succeeded" and out[0].startswith("Will ping rabbit@")
    script = Path(sys.executable).with_name("burrowctl")
    proc = subprocess.run([str(script), "--port", str(burrowmq.management_port), "-q", "ping"],
                          capture_output=True, text=True, timeout=30)
    assert (proc.returncode, proc.stdout) == (0, "Ping succeeded\n")


def test_ping_fails_with_69_when_nothing_listens(tmp_path) -> None:  # type: ignore
    from broker.ops.pytest_plugin import free_port

    proc = subprocess.run([sys.executable, "-m", "broker.ops.ctl", "--port", str(free_port()),
                           "ping"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 69
    assert proc.stderr.startswith("Error: unable to perform an operation on node 'rabbit@")
    assert "Connection refused" in proc.stderr


def test_user_and_permission_commands(burrowmq) -> None:  # type: ignore[no-untyped-def]
    assert ctl(burrowmq, "add_user", "ann", "pw1").stdout.splitlines()[0] == \
        'Adding user "ann" ...'
    ctl(burrowmq, "set_permissions", "-p", "/", "ann", "^ann-", "^ann-", ".*")
    ctl(burrowmq, "set_user_tags", "ann", "monitoring", "policymaker")
    assert table(ctl(burrowmq, "list_users", "-q").stdout) == [
        ["user", "tags"], ["guest", "[administrator]"], ["ann", "[monitoring, policymaker]"]]
    assert table(ctl(burrowmq, "list_permissions", "-s").stdout) == [
        ["ann", "^ann-", "^ann-", ".*"], ["guest", ".*", ".*", ".*"]]
    ctl(burrowmq, "change_password", "ann", "pw2")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(amqp_url(burrowmq, "ann", "pw1"))
    conn = connect(amqp_url(burrowmq, "ann", "pw2"))
    conn.channel().queue_declare("ann-q")
    conn.close()
    ctl(burrowmq, "delete_user", "ann")
    proc = ctl(burrowmq, "delete_user", "ann", check=False)
    assert (proc.returncode, proc.stderr) == (67, 'Error:\nUser "ann" does not exist\n')


def test_list_queues_columns_and_json(burrowmq) -> None:  # type: ignore[no-untyped-def]
    conn = connect(burrowmq.url)
    ch = conn.channel()
    ch.queue_declare("jobs", durable=True)
    for _ in range(3):
        ch.basic_publish("", "jobs", b"x")
    conn.process_data_events(0.1)
    out = ctl(burrowmq, "list_queues").stdout.splitlines()
    assert out == ["Timeout: 60.0 seconds ...", "Listing queues for vhost / ...",
                   "name\tmessages", "jobs\t3"]
    assert table(ctl(burrowmq, "list_queues", "name", "durable", "messages_ready",
                     "consumers", "--silent").stdout) == [["jobs", "true", "3", "0"]]
    rows = json.loads(ctl(burrowmq, "list_queues", "name", "messages",
                          "--formatter", "json").stdout)
    assert rows == [{"name": "jobs", "messages": 3}]
    ctl(burrowmq, "purge_queue", "jobs")
    assert table(ctl(burrowmq, "list_queues", "-s").stdout) == [["jobs", "0"]]
    out = ctl(burrowmq, "delete_queue", "jobs").stdout.splitlines()
    assert out == ["Deleting queue 'jobs' on vhost '/' ...",
                   "Queue was successfully deleted with 0 messages"]
    conn.close()


def test_connections_channels_consumers_close(burrowmq) -> None:  # type: ignore
    conn = connect(burrowmq.url)
    ch = conn.channel()
    ch.queue_declare("cq")
    ch.basic_consume("cq", lambda *a: None, consumer_tag="c1")
    conn.process_data_events(0.1)
    rows = table(ctl(burrowmq, "list_connections", "-s", "pid", "user", "peer_host",
                     "state").stdout)
    assert len(rows) == 1 and rows[0][1:] == ["guest", "127.0.0.1", "running"]
    assert rows[0][0].startswith("<0.")
    assert table(ctl(burrowmq, "list_channels", "-s", "user", "consumer_count").stdout) == [
        ["guest", "1"]]
    consumers = table(ctl(burrowmq, "list_consumers", "-s").stdout)
    assert [consumers[0][0], consumers[0][2], consumers[0][3]] == ["cq", "c1", "true"]
    ctl(burrowmq, "close_connection", rows[0][0], "go away")
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        conn.process_data_events(2)
        conn.process_data_events(2)
    assert (info.value.reply_code, info.value.reply_text) == (320,
                                                              "CONNECTION_FORCED - go away")


def test_vhost_policy_definitions(burrowmq, tmp_path) -> None:  # type: ignore
    ctl(burrowmq, "add_vhost", "qa")
    assert table(ctl(burrowmq, "list_vhosts", "-s").stdout) == [["/"], ["qa"]]
    ctl(burrowmq, "set_policy", "-p", "qa", "--priority", "2", "--apply-to", "queues",
        "lim", "^l", '{"max-length": 3}')
    assert table(ctl(burrowmq, "list_policies", "-p", "qa", "-s").stdout) == [
        ["qa", "lim", "^l", "queues", '{"max-length":3}', "2"]]
    target = tmp_path / "defs.json"
    ctl(burrowmq, "export_definitions", str(target))
    exported = json.loads(target.read_text())
    assert [p["name"] for p in exported["policies"]] == ["lim"]
    ctl(burrowmq, "clear_policy", "-p", "qa", "lim")
    ctl(burrowmq, "delete_vhost", "qa")
    ctl(burrowmq, "import_definitions", str(target))
    assert table(ctl(burrowmq, "list_policies", "-p", "qa", "-s").stdout) == [
        ["qa", "lim", "^l", "queues", '{"max-length":3}', "2"]]


def test_status_cluster_status_and_app_control(burrowmq) -> None:  # type: ignore
    status = ctl(burrowmq, "status").stdout
    assert status.startswith("Status of node rabbit@")
    for section in ("Runtime", "Plugins", "Alarms", "Memory", "Free Disk Space", "Totals",
                    "Listeners"):
        assert f"\n{section}\n" in status
    assert f"port: {burrowmq.port}, protocol: amqp" in status
    data = json.loads(ctl(burrowmq, "status", "--formatter", "json").stdout)
    assert data["rabbitmq_version"] == "3.13.7" and data["totals"]["queue_count"] == 0
    cluster = ctl(burrowmq, "cluster_status").stdout
    node = data["node_name"]
    assert f"Disk Nodes\n\n{node}\n\nRunning Nodes\n\n{node}\n" in cluster
    ctl(burrowmq, "stop_app")
    assert ctl(burrowmq, "ping").stdout.endswith("Ping succeeded\n")  # liveness, as RabbitMQ
    proc = ctl(burrowmq, "await_startup", "--timeout", "0.5", check=False)  # readiness
    assert (proc.returncode, proc.stderr) == (69, "Error:\nrabbit_is_not_running\n")
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        connect(burrowmq.url)
    ctl(burrowmq, "add_user", "tmp", "pw")
    ctl(burrowmq, "reset")
    ctl(burrowmq, "start_app")
    ctl(burrowmq, "await_startup")
    assert table(ctl(burrowmq, "list_users", "-s", "user").stdout) == [["guest"]]
    connect(burrowmq.url).close()


def admin(handle, *args: str) -> str:  # type: ignore[no-untyped-def]
    proc = subprocess.run([sys.executable, "-m", "broker.ops.ctl.rabbitmqadmin", "-P",
                           str(handle.management_port), *args],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


def test_rabbitmqadmin_style(burrowmq) -> None:  # type: ignore[no-untyped-def]
    assert admin(burrowmq, "declare", "queue", "name=adm", "durable=true") == \
        "queue declared\n"
    assert admin(burrowmq, "publish", "routing_key=adm", "payload=hello") == \
        "Message published\n"
    out = admin(burrowmq, "list", "queues", "name", "messages").splitlines()
    assert out[1] == "| name | messages |" and out[3] == "| adm  | 1        |"
    rows = json.loads(admin(burrowmq, "-f", "raw_json", "get", "queue=adm",
                            "ackmode=ack_requeue_false"))
    assert rows[0]["payload"] == "hello"
    assert admin(burrowmq, "-f", "tsv", "list", "queues", "name", "messages") == \
        "name\tmessages\nadm\t0\n"

"""RabbitMQ's clustering commands, as its tutorials use them, against three real nodes:
``stop_app``, ``reset``, ``join_cluster``, ``start_app``, ``cluster_status`` (text and JSON),
``forget_cluster_node`` (refused for a running node and for the leader), ``-n`` to pick a node;
and what is made on one node is seen on all."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pika
from brokers import REPO, BrokerCluster, BrokerNode


def ctl(node: BrokerNode, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    """burrowctl on the node's machine: through its control socket (no password)."""
    proc = subprocess.run([sys.executable, "-m", "broker.ops.ctl", "--data-dir",
                           str(node.data_dir), *args], capture_output=True, text=True,
                          timeout=60, cwd=str(REPO))
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def section(text: str, title: str) -> list[str]:
    """The lines of one section of rabbitmqctl's layout."""
    lines = text.splitlines()
    start = lines.index(title) + 2
    end = lines.index("", start)
    return lines[start:end]


def test_tutorial_sequence_then_forget(cluster3: BrokerCluster) -> None:
    node1, node2, node3 = cluster3.nodes
    assert cluster3.leader() is node1

    assert ctl(node2, "stop_app").stdout == "Stopping rabbit application on node rabbit@node2 " \
                                            "...\n"
    assert ctl(node2, "reset").stdout == "Resetting node rabbit@node2 ...\n"
    assert not (node2.data_dir / "definitions.bin").exists()
    assert ctl(node2, "join_cluster", "rabbit@node1").stdout == \
        "Clustering node rabbit@node2 with rabbit@node1\n"
    assert ctl(node2, "start_app").stdout == "Starting node rabbit@node2 ...\n"
    ctl(node2, "await_startup")
    cluster3.wait_stable(30)

    status = ctl(node3, "cluster_status").stdout
    assert status.startswith("Cluster status of node rabbit@node3 ...\nBasics\n")
    everyone = ["rabbit@node1", "rabbit@node2", "rabbit@node3"]
    assert section(status, "Disk Nodes") == everyone
    assert section(status, "Running Nodes") == everyone
    assert section(status, "Leader") == ["rabbit@node1"]
    assert section(status, "In-sync") == everyone
    assert section(status, "Alarms") == ["(none)"]
    assert section(status, "Versions")[1].startswith("rabbit@node2: RabbitMQ 3.13.7 (burrowmq ")
    for title in ("Basics", "Versions", "CPU Cores", "Maintenance status", "Network Partitions",
                  "Listeners", "Feature flags"):
        assert f"\n{title}\n\n" in status
    assert f"Node: rabbit@node2, interface: 127.0.0.1, port: {node2.amqp_port}, protocol: " \
           "amqp" in status
    data = json.loads(ctl(node1, "cluster_status", "--formatter", "json").stdout)
    assert (data["disk_nodes"], data["running_nodes"], data["leader"], data["in_sync"]) == \
        (everyone, everyone, "rabbit@node1", everyone)
    assert data["cluster_name"] == cluster3.cluster

    # -n picks the node, whichever node's socket the CLI reached
    assert ctl(node3, "-n", "rabbit@node2", "status").stdout.startswith(
        "Status of node rabbit@node2 ...")
    unknown = ctl(node3, "-n", "rabbit@nowhere", "status", code=69)
    assert "rabbit@nowhere" in unknown.stderr

    # forget_cluster_node: refused for a running node and for the leader
    running = ctl(node2, "forget_cluster_node", "rabbit@node3", code=69)
    assert running.stdout == "Removing node rabbit@node3 from the cluster\n"
    assert "rabbit@node3 is running" in running.stderr
    leader = ctl(node2, "forget_cluster_node", "rabbit@node1", code=69)
    assert "is the cluster's leader" in leader.stderr
    node3.stop()
    deadline = time.monotonic() + 15
    while "rabbit@node3" in cluster3.status(node1)["running"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    ctl(node2, "forget_cluster_node", "rabbit@node3")
    status = ctl(node1, "cluster_status").stdout
    assert section(status, "Disk Nodes") == ["rabbit@node1", "rabbit@node2"]
    assert "rabbit@node3" not in section(status, "In-sync")
    missing = ctl(node1, "forget_cluster_node", "rabbit@node3", code=69)
    assert "The node selected is not in the cluster." in missing.stderr
    node3.start()  # a forgotten node does not come back by itself
    deadline = time.monotonic() + 15
    while "no longer a member" not in node3.log_text():
        assert time.monotonic() < deadline, node3.log_text()[-2000:]
        time.sleep(0.1)
    assert sorted(cluster3.status(node1)["members"]) == ["rabbit@node1", "rabbit@node2"]

    # reset, it serves alone (as a reset RabbitMQ node does) until it joins again
    ctl(node3, "stop_app")
    ctl(node3, "reset")
    ctl(node3, "start_app")
    ctl(node3, "await_startup")
    alone = pika.BlockingConnection(pika.URLParameters(node3.url))
    alone.channel().queue_declare("only-on-node3", durable=True)
    alone.close()
    assert section(ctl(node3, "cluster_status").stdout, "Disk Nodes") == ["rabbit@node3"]
    assert "only-on-node3" not in ctl(node1, "list_queues", "name", "-s").stdout
    ctl(node3, "stop_app")
    ctl(node3, "join_cluster", "rabbit@node2")
    ctl(node3, "start_app")
    cluster3.wait_stable(30)
    assert "only-on-node3" not in ctl(node3, "list_queues", "name", "-s").stdout


def test_definitions_made_on_any_node_are_seen_on_all(cluster3: BrokerCluster) -> None:
    node1, node2, node3 = cluster3.nodes
    follower = next(n for n in cluster3.nodes if n is not cluster3.leader())
    ctl(follower, "add_user", "admin", "123")
    ctl(follower, "set_user_tags", "admin", "administrator")
    ctl(follower, "add_vhost", "shop")
    ctl(follower, "set_permissions", "-p", "shop", "admin", ".*", ".*", ".*")
    ctl(follower, "set_policy", "-p", "shop", "--apply-to", "queues", "ha-all", ".*",
        '{"ha-mode":"all","ha-sync-mode":"automatic"}')
    for node in cluster3.nodes:  # log in anywhere
        conn = pika.BlockingConnection(pika.URLParameters(
            f"amqp://admin:123@127.0.0.1:{node.amqp_port}/shop"))
        channel = conn.channel()
        channel.exchange_declare(f"ex-{node.name[-1]}", "topic", durable=True)
        channel.queue_declare(f"orders-{node.name[-1]}", durable=True)
        channel.queue_declare("quorum-jobs", durable=True,
                              arguments={"x-queue-type": "quorum"})
        channel.queue_bind(f"orders-{node.name[-1]}", f"ex-{node.name[-1]}", "#")
        conn.close()
    for node in cluster3.nodes:
        listed = ctl(node, "list_queues", "-p", "shop", "name", "-s").stdout
        assert sorted(listed.split()) == ["orders-1", "orders-2", "orders-3", "quorum-jobs"]
        assert "ha-all" in ctl(node, "list_policies", "-p", "shop", "-s").stdout
        assert "ex-2" in ctl(node, "list_exchanges", "-p", "shop", "name", "-s").stdout
        assert "admin" in ctl(node, "list_users", "-s").stdout
    code, queues = node3.get("/api/queues/shop")
    assert code == 200
    classic = next(q for q in queues if q["name"] == "orders-1")
    leader = cluster3.leader()
    assert leader is not None
    others = sorted(n.name for n in cluster3.nodes if n is not leader)
    assert classic["node"] == leader.name
    assert sorted(classic["slave_nodes"]) == others
    assert sorted(classic["synchronised_slave_nodes"]) == others
    quorum = next(q for q in queues if q["name"] == "quorum-jobs")
    assert sorted(quorum["members"]) == sorted(n.name for n in cluster3.nodes)
    assert sorted(quorum["online"]) == sorted(n.name for n in cluster3.nodes)


def test_leader_health_check(cluster3: BrokerCluster) -> None:
    leader = cluster3.leader()
    assert leader is not None
    code, body = leader.get("/api/health/checks/leader")
    assert (code, body["status"], body["leader"]) == (200, "ok", leader.name)
    for node in cluster3.nodes:
        if node is not leader:
            code, body = node.get("/api/health/checks/leader")
            assert (code, body["status"], body["leader"]) == (503, "failed", leader.name)


def test_leader_sees_the_clients_address_through_a_follower(cluster3: BrokerCluster) -> None:
    leader = cluster3.leader()
    assert leader is not None
    follower = next(n for n in cluster3.nodes if n is not leader)
    conn = pika.BlockingConnection(pika.URLParameters(follower.url))
    try:
        deadline = time.monotonic() + 10
        while True:
            code, found = leader.get("/api/connections")
            if code == 200 and found:
                break
            assert time.monotonic() < deadline, (code, found)
            time.sleep(0.1)
        client = conn._impl._transport._sock.getsockname()  # type: ignore[attr-defined]
        assert [(c["peer_host"], c["peer_port"]) for c in found] == [tuple(client)]
        assert f"accepting AMQP connection <0.1000.0> ({client[0]}:{client[1]} ->" in \
            leader.log_text()
    finally:
        conn.close()


def test_nodes_api_shows_every_members_own_figures(cluster3: BrokerCluster) -> None:
    """/api/nodes (the UI's Overview and Cluster pages) has each running member's own memory,
    disk, descriptors and uptime, as RabbitMQ's does, asked through any node; not zeros."""
    follower = next(n for n in cluster3.nodes if not n.is_leader())
    code, found = follower.get("/api/nodes", timeout=10)
    assert code == 200, found
    assert sorted(n["name"] for n in found) == sorted(n.name for n in cluster3.nodes)
    for item in found:
        assert item["running"] is True
        assert item["fd_total"] > 0 and item["mem_limit"] > 0 and item["mem_used"] > 0, item
        assert item["disk_free"] > 0 and item["disk_free_limit"] > 0, item
        assert item["uptime"] > 0 and item["enabled_plugins"], item
    pids = {int(n["os_pid"]) for n in found}
    assert pids == {n.pid for n in cluster3.nodes}

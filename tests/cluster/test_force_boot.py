"""``burrowctl force_boot`` (rabbitmqctl's) in cluster mode, with real nodes:

- the in-sync replicas shrank to one node that is then gone for good: the others refuse to
  lead (their copies may lack confirmed messages) until the operator picks one with
  force_boot; it leads with its own data and the other follows it;
- etcd is wiped while the nodes keep their data: no node founds the cluster again on its own
  (the first to campaign would lead with whatever copy it has), each logs why, until
  force_boot picks the copy to keep; the others rejoin with reset + join_cluster.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pika
from brokers import BrokerCluster, BrokerNode
from etcd_server import EtcdCluster
from test_commands import ctl


def publish_confirmed(node: BrokerNode, count: int, queue: str = "kept") -> None:
    conn = pika.BlockingConnection(pika.URLParameters(node.url))
    channel = conn.channel()
    channel.queue_declare(queue, durable=True)
    channel.confirm_delivery()
    for i in range(count):
        channel.basic_publish("", queue, b"m%d" % i, pika.BasicProperties(delivery_mode=2))
    conn.close()


def queued(node: BrokerNode, queue: str = "kept") -> int:
    conn = pika.BlockingConnection(pika.URLParameters(node.url))
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        conn.close()


def wait_log(node: BrokerNode, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in node.log_text()[node.log_offset:]:
        assert time.monotonic() < deadline, f"{node.name} never logged {text!r}:\n" \
            + node.log_text()[-3000:]
        time.sleep(0.1)


def nobody_leads(cluster: BrokerCluster, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert not [n.name for n in cluster.nodes if n.running and n.is_leader()]
        time.sleep(0.2)


def test_force_boot_when_the_isr_shrank_to_a_node_gone_for_good(
        cluster3: BrokerCluster) -> None:
    node1, node2, node3 = cluster3.nodes
    assert cluster3.leader() is node1
    publish_confirmed(node1, 5)
    node2.kill()
    node3.kill()
    conn = pika.BlockingConnection(pika.URLParameters(node1.url))
    conn.channel().basic_publish("", "kept", b"only on node1",
                                 pika.BasicProperties(delivery_mode=2))
    conn.close()
    deadline = time.monotonic() + 15
    while cluster3.status(node1)["isr"] != ["rabbit@node1"]:
        assert time.monotonic() < deadline, cluster3.status(node1)
        time.sleep(0.1)
    node1.kill()  # gone for good
    node2.start()
    node3.start()
    wait_log(node2, "it is not in the in-sync replicas ['rabbit@node1']")
    nobody_leads(cluster3, 3)

    refused = ctl(node2, "force_boot", code=64)
    assert "requires the 'rabbit' app to be stopped" in refused.stderr
    ctl(node2, "stop_app")
    assert ctl(node2, "force_boot").stdout == ""  # as rabbitmqctl: nothing on success
    assert (node2.data_dir / "force_load").exists()
    ctl(node2, "start_app")
    assert cluster3.wait_leader(20) is node2
    wait_log(node2, "force_boot: rabbit@node2 leads with its own copy of the data")
    assert not (node2.data_dir / "force_load").exists()  # used once
    cluster3.wait_stable(30, followers=1)  # node3 syncs from it and is in sync again
    assert sorted(cluster3.status(node2)["isr"]) == ["rabbit@node2", "rabbit@node3"]
    assert queued(node3) == 5  # every confirmed message; the unconfirmed one is lost
    ctl(node3, "forget_cluster_node", "rabbit@node1")
    assert sorted(cluster3.status(node3)["members"]) == ["rabbit@node2", "rabbit@node3"]


def test_wiped_etcd_founds_nothing_until_force_boot(etcd1: EtcdCluster,
                                                    tmp_path: Path) -> None:
    cluster = BrokerCluster(tmp_path / "nodes", etcd1.endpoints, 3, cluster="wiped")
    try:
        cluster.start()
        node1, node2, node3 = cluster.nodes
        publish_confirmed(node1, 5)
        for node in cluster.nodes:  # logs from here on
            node.log_offset = node.log_path.stat().st_size
        etcd1.stop()  # wiped: a new, empty etcd on the same address
        for member in etcd1.members:
            shutil.rmtree(member.data_dir)
        etcd1.start()
        for node in cluster.nodes:
            wait_log(node, "has no record of the cluster: was etcd wiped or replaced? Not "
                     "founding it again")
        nobody_leads(cluster, 4)

        ctl(node3, "stop_app")
        ctl(node3, "force_boot")
        ctl(node3, "start_app")
        assert cluster.wait_leader(20) is node3
        wait_log(node3, "force_boot: rabbit@node3 founds cluster wiped again with its own data")
        assert queued(node3) == 5
        for node in (node1, node2):  # they were members of the lost cluster: rejoin
            wait_log(node, "is no longer a member of cluster wiped")
            ctl(node, "stop_app")
            ctl(node, "reset")
            ctl(node, "join_cluster", "rabbit@node3")
            ctl(node, "start_app")
        cluster.wait_stable(40)
        assert sorted(cluster.status(node3)["isr"]) == [n.name for n in cluster.nodes]
        assert queued(node1) == 5  # through node1 (a follower) to node3
    finally:
        cluster.stop()


def test_force_boot_on_a_node_that_is_down_marks_its_data_directory(
        brokers: BrokerCluster) -> None:
    node = brokers.nodes[0]
    node.data_dir.mkdir(parents=True)
    assert ctl(node, "force_boot").stdout == ""
    assert (node.data_dir / "force_load").exists()
    missing = ctl(node, "--data-dir", str(node.data_dir / "nowhere"), "force_boot", code=65)
    assert "mnesia_dir_not_found" in missing.stderr

"""A client behind HAProxy (Debian's) keeps publishing across a leader kill, with the shipped
``docker/haproxy.cfg`` (node addresses and ports replaced by the test's); and the compose file
describes etcd, three nodes and HAProxy."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from brokers import REPO, BrokerCluster
from etcd_server import free_port
from outside import require_program
from test_failover import finish, urls
from workload import Workload

CONFIG = REPO / "docker" / "haproxy.cfg"


def configured(cluster: BrokerCluster, amqp: int, http: int) -> str:
    """docker/haproxy.cfg for these nodes: loopback addresses, their ports, free front ports."""
    text = CONFIG.read_text()
    text = text.replace("bind :5672", f"bind 127.0.0.1:{amqp}")
    text = text.replace("bind :15672", f"bind 127.0.0.1:{http}")
    for i, node in enumerate(cluster.nodes, 1):
        text = text.replace(f"node{i}:5672 check port 15672",
                            f"127.0.0.1:{node.amqp_port} check port {node.http_port}")
        text = text.replace(f"node{i}:15672 check", f"127.0.0.1:{node.http_port} check")
    assert not re.search(r"node\d:", text), text
    return text


@pytest.fixture
def haproxy(cluster3: BrokerCluster, tmp_path: Path) -> Iterator[str]:
    haproxy = require_program("haproxy", package="haproxy")
    amqp, http = free_port(), free_port()
    path = tmp_path / "haproxy.cfg"
    path.write_text(configured(cluster3, amqp, http))
    log = open(tmp_path / "haproxy.log", "wb")
    proc = subprocess.Popen([haproxy, "-db", "-f", str(path)], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    try:
        yield f"amqp://guest:guest@127.0.0.1:{amqp}/%2F"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        print((tmp_path / "haproxy.log").read_text(errors="replace")[-3000:])


def test_client_behind_haproxy_publishes_across_a_leader_kill(cluster3: BrokerCluster,
                                                               haproxy: str) -> None:
    deadline = time.monotonic() + 20
    while True:  # until HAProxy has checked the nodes and found the leader
        try:
            pika.BlockingConnection(pika.URLParameters(haproxy)).close()
            break
        except pika.exceptions.AMQPError:
            assert time.monotonic() < deadline, "HAProxy found no leader"
            time.sleep(0.2)
    work = Workload(lambda: [haproxy], publishers=2).start()
    work.wait_confirmed(200)
    old = cluster3.leader()
    assert old is not None
    old.kill()
    cluster3.wait_leader(20, not_=old)
    work.wait_confirmed(200, timeout=40)
    old.start()
    work.urls = urls(cluster3)
    finish(work, cluster3)


def test_compose_file_runs_etcd_three_nodes_and_haproxy() -> None:
    text = (REPO / "docker" / "compose.cluster.yaml").read_text()
    services = re.findall(r"^  (\w+):\n", text.split("\nservices:\n", 1)[1], re.M)
    assert services == ["etcd", "node1", "node2", "node3", "haproxy"]
    for i in (1, 2, 3):
        assert f"RABBITMQ_NODENAME: rabbit@node{i}" in text
        assert f"BURROWMQ_ADVERTISE_HOST: node{i}" in text
    assert "BURROWMQ_ETCD_ENDPOINTS: etcd:2379" in text
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in text

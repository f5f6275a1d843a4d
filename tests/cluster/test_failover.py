"""Failover with three real nodes under a Jepsen-style workload: whatever fails, no confirmed
message is lost, nothing is consumed that was never published, order is kept among first
deliveries and every duplicate is explained (``checker``). Each test is bounded in time."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import pika
from brokers import BrokerCluster
from faultproxy import ThreadedFaultProxy
from workload import Workload


def urls(cluster: BrokerCluster):  # type: ignore[no-untyped-def]
    return lambda: [n.url for n in cluster.nodes if n.running]


def finish(work: Workload, cluster: BrokerCluster) -> None:
    work.stop()
    cluster.wait_stable(30, followers=0)
    work.drain()
    result = work.history.check()
    print(result.summary())
    assert result.ok, result.summary()
    assert result.confirmed > 0


def test_leader_killed_during_confirmed_publishing(cluster3: BrokerCluster) -> None:
    work = Workload(urls(cluster3), publishers=2).start()
    work.wait_confirmed(200)
    old = cluster3.leader()
    assert old is not None
    started = time.monotonic()
    old.kill()
    new = cluster3.wait_leader(20, not_=old)
    work.wait_confirmed(100, timeout=30)
    print(f"{new.name} leads; 100 more confirmed {time.monotonic() - started:.1f} s after the "
          "kill")
    old.start()
    work.wait_confirmed(100)
    finish(work, cluster3)


def test_follower_killed(cluster3: BrokerCluster) -> None:
    work = Workload(urls(cluster3), publishers=2).start()
    work.wait_confirmed(200)
    leader = cluster3.leader()
    follower = next(n for n in cluster3.nodes if n is not leader)
    follower.kill()
    work.wait_confirmed(200, timeout=30)  # the ISR shrinks to two: confirms go on
    assert follower.name not in cluster3.status(leader)["isr"]
    follower.start()
    cluster3.wait_stable(30)
    work.wait_confirmed(100)
    finish(work, cluster3)


def test_leader_paused_past_its_lease(cluster3: BrokerCluster) -> None:
    work = Workload(urls(cluster3), publishers=2).start()
    work.wait_confirmed(200)
    old = cluster3.leader()
    assert old is not None
    old.signal(signal.SIGSTOP)
    try:
        new = cluster3.wait_leader(20, not_=old)
        work.wait_confirmed(100, timeout=30)
    finally:
        old.signal(signal.SIGCONT)
    deadline = time.monotonic() + 10
    while old.is_leader():  # it wakes up, finds its lease gone and stops serving
        assert time.monotonic() < deadline, "the paused leader still says it leads"
        time.sleep(0.1)
    assert cluster3.leader() is new
    assert "stops leading" in old.log_text()
    work.wait_confirmed(100)
    finish(work, cluster3)


def test_blackholed_replication_link(cluster3: BrokerCluster) -> None:
    """A follower whose link to the leader goes silent leaves the ISR; confirms go on."""
    leader = cluster3.leader()
    assert leader is not None
    member = cluster3.status(leader)["members"][leader.name]
    host, _, port = member["replication"].rpartition(":")
    proxy = ThreadedFaultProxy((host, int(port)))
    via = proxy.start()
    follower = next(n for n in cluster3.nodes if n is not leader)
    try:
        follower.stop()
        follower.env["BURROWMQ_REPLICATION_VIA"] = f"{via[0]}:{via[1]}"
        follower.start()
        cluster3.wait_stable(30)
        work = Workload(urls(cluster3), publishers=2).start()
        work.wait_confirmed(200)
        proxy.set_mode("blackhole")
        work.wait_confirmed(200, timeout=30)  # after the ack timeout (1 s) without it
        assert follower.name not in cluster3.status(leader)["isr"]
        proxy.set_mode("pass")
        cluster3.wait_stable(30)  # it reconnects, syncs and joins again
        work.wait_confirmed(100)
        finish(work, cluster3)
    finally:
        follower.stop()
        proxy.stop()


def test_two_of_three_lost(cluster3: BrokerCluster) -> None:
    """With only the leader left, confirms stop (nacks after the confirm timeout), and
    resume once the followers are back: never a false confirm."""
    work = Workload(urls(cluster3), publishers=2).start()
    work.wait_confirmed(200)
    leader = cluster3.leader()
    followers = [n for n in cluster3.nodes if n is not leader]
    for node in followers:
        node.kill()
    # the ISR shrinks to the leader alone, fewer than min_insync (2); a confirm for what both
    # had acked before dying may still come while the leader's own fsync finishes
    time.sleep(2.5)
    before = work.history.confirmed()
    time.sleep(5)  # past the confirm timeout (4 s): publishers get nacks
    assert work.history.confirmed() == before, "confirmed with one node of three"
    assert any(p.outcome == "nacked" for p in work.history.publishes)
    for node in followers:
        node.start()
    cluster3.wait_stable(30)
    work.wait_confirmed(100, timeout=30)
    finish(work, cluster3)


def test_all_three_restarted(cluster3: BrokerCluster) -> None:
    work = Workload(urls(cluster3), publishers=2).start()
    work.wait_confirmed(300)
    for node in cluster3.nodes:
        node.kill()
    for node in cluster3.nodes:
        node.start()
    cluster3.wait_stable(40)
    work.wait_confirmed(100, timeout=40)
    finish(work, cluster3)


def test_leader_killed_while_a_follower_is_in_full_sync(brokers: BrokerCluster) -> None:
    """A blank node whose full sync is cut by the leader's death never leads, even as the only
    candidate; the other in-sync node takes over when it comes back, and the blank one syncs
    from it afterwards."""
    first, second, blank = brokers.nodes
    first.start()
    brokers.wait_leader(30)
    second.start()
    brokers.wait_stable(30, followers=1)
    work = Workload(lambda: [first.url, second.url], publishers=2, consume=False).start()
    work.wait_confirmed(300)
    work.stop()
    big = pika.BlockingConnection(pika.URLParameters(first.url))
    channel = big.channel()
    channel.confirm_delivery()
    channel.queue_declare("bulk", durable=True)
    for _ in range(40):  # 10 MB the blank node has to copy
        channel.basic_publish("", "bulk", b"x" * 256 * 1024,
                              pika.BasicProperties(delivery_mode=2))
    big.close()
    host, _, port = brokers.status(first)["members"][first.name]["replication"].rpartition(":")
    proxy = ThreadedFaultProxy((host, int(port)))
    via = proxy.start()
    try:
        proxy.set_mode("pass", delay=0.05)  # ~1 MB/s: the sync takes seconds
        blank.env["BURROWMQ_REPLICATION_VIA"] = f"{via[0]}:{via[1]}"
        blank.start()
        deadline = time.monotonic() + 20
        while "full sync of rabbit@node3" not in first.log_text():
            assert time.monotonic() < deadline, "the full sync did not start"
            time.sleep(0.05)
        time.sleep(0.5)
        second.signal(signal.SIGSTOP)  # the blank node becomes the only candidate
        first.kill()
        proxy.stop()
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            assert not blank.is_leader(), "a node with half a copy leads"
            time.sleep(0.1)
        assert "its copy of the data is incomplete" in blank.log_text()
        second.signal(signal.SIGCONT)
        assert brokers.wait_leader(20) is second
        blank.stop()
        blank.env.pop("BURROWMQ_REPLICATION_VIA")
        blank.start()
        first.start()
        brokers.wait_stable(40)
        work.urls = urls(brokers)
        work.drain()
        result = work.history.check()
        print(result.summary())
        assert result.ok, result.summary()
        code, queue = blank.get("/api/queues/%2F/bulk")
        assert code == 200 and queue["messages"] == 40, queue
    finally:
        proxy.stop()


def test_etcd_leader_killed(etcd3: object, tmp_path: Path) -> None:
    cluster = BrokerCluster(tmp_path, etcd3.endpoints, 3, cluster="etcd3")  # type: ignore[attr-defined]
    try:
        cluster.start()
        work = Workload(urls(cluster), publishers=2).start()
        work.wait_confirmed(200)
        leader = None
        for member in etcd3.members:  # type: ignore[attr-defined]
            with urllib.request.urlopen(urllib.request.Request(
                    member.url + "/v3/maintenance/status", data=b"{}"), timeout=3) as answer:
                status = json.loads(answer.read())
            if status.get("leader") == status.get("header", {}).get("member_id"):
                leader = member
        assert leader is not None
        leader.kill()
        work.wait_confirmed(200, timeout=30)
        finish(work, cluster)
    finally:
        cluster.stop()


def test_tx_commit_waits_for_the_replicas(cluster3: BrokerCluster) -> None:
    """tx.commit-ok follows the confirm rule: with the followers gone the commit fails with
    RabbitMQ's answer for a commit whose publishes a queue did not confirm, and the leader's
    log names the cause (the in-sync replicas)."""
    leader = cluster3.leader()
    assert leader is not None
    conn = pika.BlockingConnection(pika.URLParameters(leader.url))
    channel = conn.channel()
    channel.queue_declare("tx", durable=True)
    channel.tx_select()
    channel.basic_publish("", "tx", b"one", pika.BasicProperties(delivery_mode=2))
    channel.tx_commit()
    for node in cluster3.nodes:
        if node is not leader:
            node.kill()
    channel.basic_publish("", "tx", b"two", pika.BasicProperties(delivery_mode=2))
    started = time.monotonic()
    try:
        channel.tx_commit()
        raise AssertionError("tx.commit-ok with one node of three")
    except (pika.exceptions.ChannelClosedByBroker,
            pika.exceptions.ConnectionClosedByBroker) as exc:
        assert (exc.reply_code, exc.reply_text) == \
            (406, "PRECONDITION_FAILED - partial tx completion"), exc
    assert time.monotonic() - started >= 3  # it waited for the replicas (confirm timeout 4 s)
    assert "not confirmed by the in-sync replicas" in leader.log_text()

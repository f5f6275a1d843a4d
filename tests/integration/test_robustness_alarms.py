"""The memory alarm: publishers get connection.blocked ('low on memory') and are no longer read,
consumers keep draining, and raising the watermark unblocks them. Plus the cgroup-aware memory
limit the watermark is relative to."""

from __future__ import annotations

import dataclasses
import time

import pika
from pika_helpers import BlockWatch, connect, pump

from broker.node import sysinfo
from broker.node.config import Config

GiB = 1024**3
HUGE = 10**15


def set_watermark(broker, absolute: int) -> None:  # type: ignore[no-untyped-def]
    def change() -> None:
        node = broker.node
        node.config = dataclasses.replace(node.config,
                                            vm_memory_high_watermark_absolute=absolute,
                                            vm_memory_high_watermark_relative=None)
    broker.call(change)


def pump_both(a: pika.BlockingConnection, b: pika.BlockingConnection, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        a.process_data_events(time_limit=0.02)
        b.process_data_events(time_limit=0.02)


def test_memory_alarm_blocks_publishers_not_consumers_and_clears(broker_factory):
    broker = broker_factory(vm_memory_high_watermark_absolute=1,
                            vm_memory_high_watermark_relative=None)
    consumer = connect(broker)
    consumer_watch = BlockWatch(consumer)
    cch = consumer.channel()
    cch.queue_declare("mem-alarm")
    got: list[bytes] = []
    cch.basic_consume("mem-alarm", lambda _ch, _m, _p, body: got.append(body), auto_ack=True)

    pub = connect(broker)
    watch = BlockWatch(pub)
    pch = pub.channel()
    try:
        pch.basic_publish("", "mem-alarm", b"first")
        pump(pub, lambda: bool(watch.blocked), timeout=3)
        assert watch.blocked == ["low on memory"]

        # the consumer-only connection still gets what landed
        pump(consumer, lambda: got == [b"first"], timeout=3)
        # held publishes: written to the socket, but the broker does not read them
        for n in range(3):
            pch.basic_publish("", "mem-alarm", f"held-{n}".encode())
        pump_both(pub, consumer, 1.5)  # more than one alarm check
        assert got == [b"first"], "a blocked publisher's messages were routed"
        assert consumer_watch.blocked == [], "a consumer-only connection was blocked"
        assert watch.unblocked == 0
        # a consumer-only connection can still do everything but publish
        assert cch.queue_declare("mem-alarm", passive=True).method.queue == "mem-alarm"

        set_watermark(broker, HUGE)
        started = time.monotonic()
        pump(pub, lambda: watch.unblocked > 0, timeout=3.5)
        assert time.monotonic() - started < 3.5
        assert watch.unblocked == 1
        pump(consumer, lambda: len(got) == 4, timeout=3)
        assert got == [b"first", b"held-0", b"held-1", b"held-2"]
        assert consumer_watch.blocked == []
        # publishing works normally again
        pch.confirm_delivery()
        pch.basic_publish("", "mem-alarm", b"after")
        pump(consumer, lambda: len(got) == 5, timeout=3)
        assert got[-1] == b"after"
    finally:
        set_watermark(broker, HUGE)
        for conn in (pub, consumer):
            try:
                conn.close()
            except (pika.exceptions.AMQPError, OSError):
                pass


def test_memory_alarm_raised_at_runtime_blocks_an_active_publisher(broker_factory):
    broker = broker_factory(vm_memory_high_watermark_absolute=HUGE,
                            vm_memory_high_watermark_relative=None)
    pub = connect(broker)
    watch = BlockWatch(pub)
    ch = pub.channel()
    ch.queue_declare("runtime-alarm")
    ch.confirm_delivery()
    ch.basic_publish("", "runtime-alarm", b"before")
    pub.process_data_events(time_limit=0.3)
    assert watch.blocked == []
    try:
        set_watermark(broker, 1)
        pump(pub, lambda: bool(watch.blocked), timeout=3)  # the timer runs every second
        assert watch.blocked == ["low on memory"]
        set_watermark(broker, HUGE)
        pump(pub, lambda: watch.unblocked > 0, timeout=3.5)
    finally:
        set_watermark(broker, HUGE)
        pub.close()


def test_connection_that_never_publishes_is_never_blocked(broker_factory):
    broker = broker_factory(vm_memory_high_watermark_absolute=1,
                            vm_memory_high_watermark_relative=None)
    conn = connect(broker)
    watch = BlockWatch(conn)
    try:
        ch = conn.channel()
        q = ch.queue_declare("", exclusive=True).method.queue
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.05)
            assert ch.queue_declare(q, passive=True).method.message_count == 0
        assert watch.blocked == []
    finally:
        set_watermark(broker, HUGE)
        conn.close()


# ---- sysinfo: the limit the relative watermark applies to --------------------------------

def write(path, text: str) -> str:  # type: ignore[no-untyped-def]
    path.write_text(text)
    return str(path)


def test_cgroup_v2_max_means_no_limit(tmp_path):
    assert sysinfo.cgroup_memory_limit((write(tmp_path / "memory.max", "max\n"),)) is None


def test_cgroup_v2_number_is_the_limit(tmp_path):
    path = write(tmp_path / "memory.max", "536870912\n")
    assert sysinfo.cgroup_memory_limit((path,)) == 536870912


def test_cgroup_v1_huge_number_means_no_limit(tmp_path):
    path = write(tmp_path / "memory.limit_in_bytes", "9223372036854771712\n")
    assert sysinfo.cgroup_memory_limit((path,)) is None


def test_cgroup_v1_number_is_the_limit(tmp_path):
    path = write(tmp_path / "memory.limit_in_bytes", "2147483648\n")
    assert sysinfo.cgroup_memory_limit((path,)) == 2 * GiB


def test_cgroup_missing_files_fall_through(tmp_path):
    v1 = write(tmp_path / "memory.limit_in_bytes", "1073741824\n")
    assert sysinfo.cgroup_memory_limit((str(tmp_path / "absent"), v1)) == GiB
    assert sysinfo.cgroup_memory_limit((str(tmp_path / "a"), str(tmp_path / "b"))) is None


def test_relative_watermark_uses_the_cgroup_limit(monkeypatch):
    monkeypatch.setattr(sysinfo, "cgroup_memory_limit", lambda *a, **k: GiB)
    monkeypatch.setattr(sysinfo, "host_memory", lambda: 64 * GiB)
    assert sysinfo.total_memory() == GiB
    cfg = Config(vm_memory_high_watermark_relative=0.4, vm_memory_high_watermark_absolute=None)
    assert sysinfo.memory_limit(cfg) == int(0.4 * GiB)


def test_host_memory_is_used_when_smaller_than_the_cgroup_limit(monkeypatch):
    monkeypatch.setattr(sysinfo, "cgroup_memory_limit", lambda *a, **k: 64 * GiB)
    monkeypatch.setattr(sysinfo, "host_memory", lambda: 2 * GiB)
    assert sysinfo.total_memory() == 2 * GiB
    assert sysinfo.memory_limit(Config(vm_memory_high_watermark_relative=0.5)) == GiB


def test_no_cgroup_limit_uses_host_memory(monkeypatch):
    monkeypatch.setattr(sysinfo, "cgroup_memory_limit", lambda *a, **k: None)
    monkeypatch.setattr(sysinfo, "host_memory", lambda: 10 * GiB)
    assert sysinfo.memory_limit(Config(vm_memory_high_watermark_relative=0.4)) == 4 * GiB


def test_absolute_watermark_wins(monkeypatch):
    monkeypatch.setattr(sysinfo, "cgroup_memory_limit", lambda *a, **k: GiB)
    cfg = Config(vm_memory_high_watermark_absolute=123456789,
                 vm_memory_high_watermark_relative=None)
    assert sysinfo.memory_limit(cfg) == 123456789


def test_rss_is_read_from_proc():
    rss = sysinfo.rss_bytes()
    assert 10 * 1024 * 1024 < rss < 64 * GiB

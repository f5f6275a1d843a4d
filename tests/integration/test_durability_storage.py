"""The data directory as the broker subprocess uses it: segments are collected once their
messages are acked, one broker per directory (the lock), and clear errors for directories that
cannot be used."""

from __future__ import annotations

import time

import pika
import pytest
from durability_helpers import dir_size

MESSAGE = 8 * 1024
TOTAL = 20 * 1024 * 1024
LEFT_BEHIND = 256 * 1024  # "near zero": the QUEUE file, an index or an ack file at most
pytestmark = pytest.mark.deadline(None)  # every wait here has its own bound


def wait_count(ch, queue: str, expected: int, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = ch.queue_declare(queue, passive=True).method.message_count
        if got == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{queue}: {got} messages, expected {expected}")
        time.sleep(0.05)


@pytest.mark.parametrize("mode", ["default", "lazy"])
def test_segments_are_collected_after_draining(brokers, mode: str) -> None:
    broker = brokers()
    qdir = broker.queue_dir("gc")
    n = TOTAL // MESSAGE
    with broker.connect() as conn:
        ch = conn.channel()
        ch.queue_declare("gc", durable=True, arguments={"x-queue-mode": mode})
        props = pika.BasicProperties(delivery_mode=2)
        for i in range(n):
            ch.basic_publish("", "gc", i.to_bytes(4, "big") * (MESSAGE // 4), props)
        wait_count(ch, "gc", n)
        filled = dir_size(qdir)
        assert filled >= TOTAL * 0.9, f"only {filled} bytes on disk for {TOTAL} bytes of messages"

        ch.basic_qos(prefetch_count=500)
        seen = 0
        last_tag = 0
        deadline = time.monotonic() + 20
        for method, _props, body in ch.consume("gc", inactivity_timeout=3):
            assert method is not None, f"consume stalled after {seen} messages"
            assert body[:4] == seen.to_bytes(4, "big"), "out of order"
            seen += 1
            last_tag = method.delivery_tag
            if seen % 100 == 0:
                ch.basic_ack(last_tag, multiple=True)
            if seen == n or time.monotonic() > deadline:
                break
        ch.basic_ack(last_tag, multiple=True)
        ch.cancel()
        assert seen == n
        wait_count(ch, "gc", 0, timeout=2)

        deadline = time.monotonic() + 5
        while (size := dir_size(qdir)) > LEFT_BEHIND and time.monotonic() < deadline:
            time.sleep(0.1)
        files = sorted(p.name for p in qdir.iterdir())
        print(f"{mode}: {filled} bytes on disk when full, {size} after draining: {files}")
        assert size <= LEFT_BEHIND, (
            f"{size} bytes still in {qdir.name} 5 s after every message was acked: {files}")

    broker.restart()
    with broker.connect() as conn:
        assert conn.channel().queue_declare("gc", passive=True).method.message_count == 0
    assert dir_size(qdir) <= LEFT_BEHIND


def test_second_broker_on_the_same_data_dir_exits_naming_the_lock(brokers) -> None:
    first = brokers()
    second = brokers(data_dir=first.data_dir, start=False)
    second.spawn()
    code = second.wait_exit(15)
    log = second.log()
    assert code != 0, log
    assert str(first.data_dir) in log, log
    assert "lock" in log.lower(), log
    assert f"pid {first.proc.pid}" in log, log
    assert "Traceback" not in log, log
    # the first broker is untouched and still serves
    with first.connect() as conn:
        conn.channel().queue_declare("still-here", durable=True)
    assert first.proc.poll() is None


@pytest.mark.parametrize("where", ["under-a-file", "is-a-file"])
def test_unusable_data_dir_exits_with_a_clear_message(brokers, tmp_path, where: str) -> None:
    plain = tmp_path / "plain-file"
    plain.write_bytes(b"not a directory\n")
    data = plain / "data" if where == "under-a-file" else plain
    broker = brokers(data_dir=data, start=False)
    broker.spawn()
    code = broker.wait_exit(15)
    log = broker.log()
    assert code == 73, log  # EX_CANTCREAT
    assert str(data) in log, log
    assert "burrowmq: error: " in log and "data directory" in log, log
    assert "Traceback" not in log, log
    assert plain.read_bytes() == b"not a directory\n"

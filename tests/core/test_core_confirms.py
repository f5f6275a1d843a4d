"""Publisher-confirm bookkeeping (broker.amqp.confirms.Confirms): runs of acks coalesced into one
multiple ack, nacks in place, and publishes that wait for the group-commit fsync."""

from __future__ import annotations

from collections.abc import Callable

from pamqp import commands, frame

from broker.amqp.confirms import Confirms
from protocol import codec

Outcome = tuple[str, int, bool]  # ("ack" | "nack", delivery tag, multiple)


class Sink:
    """Where confirms go, as the connection machine's send_confirm encodes them."""

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def send_confirm(self, channel: int, delivery_tag: int, multiple: bool,
                     ack: bool = True) -> None:
        self.out.append(codec.ack_frame(channel, delivery_tag, multiple) if ack
                        else codec.nack_frame(channel, delivery_tag, multiple))


def flushed(confirms: Confirms) -> list[Outcome]:
    sink = Sink()
    confirms.flush(1, sink)
    found: list[Outcome] = []
    for raw in sink.out:
        consumed, channel, method = frame.unmarshal(raw)
        assert (consumed, channel) == (len(raw), 1)
        assert isinstance(method, commands.Basic.Ack | commands.Basic.Nack)
        kind = "ack" if isinstance(method, commands.Basic.Ack) else "nack"
        found.append((kind, method.delivery_tag, method.multiple))
    return found


def published(confirms: Confirms, count: int) -> list[int]:
    return [confirms.next() for _ in range(count)]


class Disk:
    """when_durable as the node offers it: callbacks kept until the test says synced."""

    def __init__(self) -> None:
        self.waiting: list[Callable[[bool], None]] = []

    def when_durable(self, callback: Callable[[bool], None]) -> None:
        self.waiting.append(callback)

    def sync(self, ok: bool = True) -> None:
        waiting, self.waiting = self.waiting, []
        for callback in waiting:
            callback(ok)


def test_sequence_numbers_start_at_one() -> None:
    assert published(Confirms(), 3) == [1, 2, 3]


def test_one_publish_one_single_ack() -> None:
    c = Confirms()
    published(c, 1)
    assert flushed(c) == [("ack", 1, False)]
    assert flushed(c) == []


def test_a_run_of_acks_is_one_multiple_ack() -> None:
    c = Confirms()
    published(c, 5)
    assert flushed(c) == [("ack", 5, True)]
    published(c, 1)
    assert flushed(c) == [("ack", 6, False)]


def test_a_nack_splits_the_run() -> None:
    c = Confirms()
    published(c, 5)
    c.nack(3)
    assert flushed(c) == [("ack", 2, True), ("nack", 3, False), ("ack", 5, True)]


def test_nacks_at_the_edges() -> None:
    c = Confirms()
    published(c, 3)
    c.nack(1)
    c.nack(3)
    assert flushed(c) == [("nack", 1, False), ("ack", 2, False), ("nack", 3, False)]


def test_a_publish_waiting_for_disk_holds_back_everything_after_it() -> None:
    c, disk, synced = Confirms(), Disk(), []
    published(c, 1)
    c.wait_for_disk(c.next())  # 2 went to a durable queue as a persistent message
    published(c, 1)
    assert flushed(c) == [("ack", 1, False)]
    c.request_sync(disk.when_durable, lambda: synced.append(True))
    assert flushed(c) == []  # 3 is not confirmed before 2
    disk.sync()
    assert synced == [True]
    assert flushed(c) == [("ack", 3, True)]


def test_a_failed_fsync_nacks_what_waited_for_it() -> None:
    c, disk = Confirms(), Disk()
    c.wait_for_disk(c.next())
    published(c, 1)
    c.request_sync(disk.when_durable, lambda: None)
    disk.sync(ok=False)
    assert flushed(c) == [("nack", 1, False), ("ack", 2, False)]


def test_one_fsync_request_covers_every_publish_waiting_so_far() -> None:
    c, disk = Confirms(), Disk()
    for _ in range(3):
        c.wait_for_disk(c.next())
    c.request_sync(disk.when_durable, lambda: None)
    c.request_sync(disk.when_durable, lambda: None)  # nothing new: no second request
    assert len(disk.waiting) == 1
    c.wait_for_disk(c.next())
    c.request_sync(disk.when_durable, lambda: None)
    assert len(disk.waiting) == 2
    disk.waiting.pop(0)(True)  # the first fsync covers 1-3 only
    assert flushed(c) == [("ack", 3, True)]
    disk.sync()
    assert flushed(c) == [("ack", 4, False)]


def test_a_message_routed_to_two_durable_queues_waits_once() -> None:
    c, disk = Confirms(), Disk()
    seq = c.next()
    c.wait_for_disk(seq)
    c.wait_for_disk(seq)
    c.request_sync(disk.when_durable, lambda: None)
    disk.sync()
    assert flushed(c) == [("ack", 1, False)]

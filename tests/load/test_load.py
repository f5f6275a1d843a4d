"""Load and soak tests (marked slow: ``make soak`` runs them, CI does not). Loopback only.

- test_1000_connections: LOAD_CONNECTIONS (default 1000) connections, a channel each, all held
  open at once; connection i publishes LOAD_MESSAGES (default 5) confirmed messages to
  connection i+1's queue and must receive exactly i-1's messages, in order.
- test_soak: SOAK_SECONDS (default 600) of publishers with confirms, consumers acking (and
  sometimes walking away with unacked messages), connections churning, queues declared and
  deleted. Zero confirmed messages lost; RSS at minute 1 (or half-way, for runs shorter than
  two minutes) and at the end reported and compared.

The broker runs in-process (the ``broker`` fixture), so RSS is the process's: broker and test
clients together; the clients keep their bookkeeping in flat bytearrays so that it stays small.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import Counter

import pytest
from aio_raw import BrokerClosed, Client, Delivery, raise_nofile_limit, rss_bytes
from pamqp import commands as C

pytestmark = pytest.mark.slow

MB = 2**20


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


async def bounded(limit: int, coros) -> list:  # type: ignore[no-untyped-def]
    sem = asyncio.Semaphore(limit)

    async def run(coro):  # type: ignore[no-untyped-def]
        async with sem:
            return await coro

    return await asyncio.gather(*(run(c) for c in coros))


def broker_errors(caplog) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# ---- 1,000 connections ---------------------------------------------------------------------

async def test_1000_connections(broker, caplog, record_property) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING)
    n = env_int("LOAD_CONNECTIONS", 1000)
    per = env_int("LOAD_MESSAGES", 5)
    limit = raise_nofile_limit(4 * n + 256)
    if limit < 2 * n + 64:
        pytest.skip(f"RLIMIT_NOFILE hard limit {limit} is too low for {n} connections")
    started = time.monotonic()
    rss0 = rss_bytes()

    async def open_one(i: int) -> Client:
        client = await Client.connect(broker.port, timeout=60)
        await client.channel(1, confirms=True, prefetch=per)
        await client.rpc(1, C.Queue.Declare(queue=f"load-{i}", exclusive=True),
                         C.Queue.DeclareOk)
        await client.rpc(1, C.Basic.Consume(queue=f"load-{i}", consumer_tag=f"c{i}"),
                         C.Basic.ConsumeOk)
        return client

    clients: list[Client] = await asyncio.wait_for(
        bounded(64, [open_one(i) for i in range(n)]), 180)
    connected = time.monotonic() - started
    held = broker.call(lambda: len(broker.server.sessions))
    rss_held = rss_bytes()
    assert held == n, f"the broker holds {held} sessions for {n} open connections"

    async def exchange(i: int, client: Client) -> list[int]:
        target = f"load-{(i + 1) % n}"
        futures = [client.publish(1, "", target, f"{i}:{k}".encode()) for k in range(per)]
        acks = await asyncio.gather(*futures)
        assert all(acks), f"connection {i}: nacked {acks}"
        got = []
        expected_from = (i - 1) % n
        for _ in range(per):
            d = await client.channels[1].deliveries.get()
            if isinstance(d, BaseException):
                raise d
            sender, k = d.body.decode().split(":")
            assert int(sender) == expected_from, (i, d.body)
            got.append(int(k))
            client.ack(1, d.delivery_tag)
        return got

    results = await asyncio.wait_for(
        asyncio.gather(*(exchange(i, c) for i, c in enumerate(clients))), 180)
    exchanged = time.monotonic() - started - connected
    assert all(r == list(range(per)) for r in results)
    still = broker.call(lambda: len(broker.server.sessions))
    assert still == n, f"{n - still} connections dropped while exchanging"
    await asyncio.wait_for(bounded(200, [c.close() for c in clients]), 120)
    deadline = time.monotonic() + 30
    while broker.call(lambda: len(broker.server.sessions)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    report = {"connections_held": held, "messages": n * per,
              "connect_s": round(connected, 1), "exchange_s": round(exchanged, 1),
              "total_s": round(time.monotonic() - started, 1), "nofile_limit": limit,
              "rss_start_mb": round(rss0 / MB, 1), "rss_held_mb": round(rss_held / MB, 1),
              "rss_end_mb": round(rss_bytes() / MB, 1)}
    print("1000 connections:", report)
    for key, value in report.items():
        record_property(key, value)
    assert broker.call(lambda: len(broker.server.sessions)) == 0
    assert broker_errors(caplog) == []


# ---- soak ----------------------------------------------------------------------------------

class Ledger:
    """Per-publisher bytearrays indexed by sequence number: confirmed (1 = acked, 2 = nacked)
    and consumed (delivery count with an ack)."""

    def __init__(self) -> None:
        self.confirmed: dict[int, bytearray] = {}
        self.consumed: dict[int, bytearray] = {}
        self.n_confirmed = 0
        self.n_nacked = 0
        self.n_acked_deliveries = 0
        self.n_redelivered = 0
        self.n_duplicates = 0
        self.unknown: list[bytes] = []

    @staticmethod
    def _mark(table: dict[int, bytearray], pub: int, seq: int) -> int:
        arr = table.setdefault(pub, bytearray())
        if len(arr) <= seq:
            arr.extend(bytes(seq + 1 - len(arr) + 4096))
        before = arr[seq]
        arr[seq] = min(255, before + 1)
        return before

    def confirm(self, pub: int, seq: int, ok: bool) -> None:
        arr = self.confirmed.setdefault(pub, bytearray())
        if len(arr) <= seq:
            arr.extend(bytes(seq + 1 - len(arr) + 4096))
        arr[seq] = 1 if ok else 2
        if ok:
            self.n_confirmed += 1
        else:
            self.n_nacked += 1

    def consume(self, body: bytes, redelivered: bool) -> None:
        try:
            pub, seq = (int(x) for x in body.split(b":", 2)[:2])
        except ValueError:
            self.unknown.append(body[:40])
            return
        if redelivered:
            self.n_redelivered += 1
        if self._mark(self.consumed, pub, seq):
            self.n_duplicates += 1
        self.n_acked_deliveries += 1

    def missing(self) -> list[tuple[int, int]]:
        lost = []
        for pub, arr in self.confirmed.items():
            got = self.consumed.get(pub, bytearray())
            for seq, state in enumerate(arr):
                if state == 1 and (seq >= len(got) or not got[seq]):
                    lost.append((pub, seq))
        return lost


async def test_soak(broker, caplog, record_property) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING)
    duration = env_int("SOAK_SECONDS", 600)
    rate = env_int("SOAK_RATE", 1500)            # messages per second, all publishers
    publishers, queues = 4, ["soak-d0", "soak-d1", "soak-t0", "soak-t1"]
    baseline_at = 60 if duration >= 120 else duration / 2
    ledger = Ledger()
    stop = asyncio.Event()
    stop_consumers = asyncio.Event()
    counters: Counter = Counter()
    errors: list[str] = []
    rng = random.Random(env_int("SOAK_SEED", 7))
    started = time.monotonic()
    samples: list[tuple[float, int]] = []

    setup = await Client.connect(broker.port)
    await setup.channel(1)
    for q in queues:
        await setup.rpc(1, C.Queue.Declare(queue=q, durable=q.startswith("soak-d")),
                        C.Queue.DeclareOk)
    await setup.close()

    async def publisher(pub: int) -> None:
        seq = 0
        per_batch = 50
        pause = per_batch * publishers / rate
        while not stop.is_set():
            try:
                client = await Client.connect(broker.port)
                counters["publisher_connections"] += 1
                await client.channel(1, confirms=True)
                for _ in range(rng.randint(5, 40)):  # batches, then churn the connection
                    if stop.is_set():
                        break
                    if ledger.n_confirmed - ledger.n_acked_deliveries > 20000:
                        await asyncio.sleep(0.05)  # let the consumers catch up
                        continue
                    batch = []
                    for _ in range(per_batch):
                        q = queues[seq % len(queues)]
                        body = b"%d:%d:" % (pub, seq) + b"x" * rng.randint(0, 1500)
                        props = C.Basic.Properties(delivery_mode=2 if q.startswith("soak-d")
                                                   else 1)
                        batch.append((seq, client.publish(1, "", q, body, props)))
                        seq += 1
                    t0 = time.monotonic()
                    for s, fut in batch:
                        ledger.confirm(pub, s, await asyncio.wait_for(fut, 60))
                    await asyncio.sleep(max(0.0, pause - (time.monotonic() - t0)))
                await client.close()
            except (TimeoutError, BrokerClosed, ConnectionError) as exc:
                errors.append(f"publisher {pub}: {exc!r}")
                await asyncio.sleep(0.5)

    async def consumer(q: str) -> None:
        while not stop_consumers.is_set():
            try:
                client = await Client.connect(broker.port)
                counters["consumer_connections"] += 1
                ch = await client.channel(1, prefetch=rng.choice([1, 10, 100, 500]))
                await client.rpc(1, C.Basic.Consume(queue=q), C.Basic.ConsumeOk)
                budget = rng.randint(200, 5000)
                walk_away = rng.random() < 0.3   # close with unacked messages in flight
                while budget > 0 and not stop_consumers.is_set():
                    try:
                        d = await asyncio.wait_for(ch.deliveries.get(), 0.5)
                    except TimeoutError:
                        continue
                    if isinstance(d, BaseException):
                        raise d
                    assert isinstance(d, Delivery)
                    budget -= 1
                    if walk_away and budget == 0:
                        # leave without acking this one (and whatever else is prefetched):
                        # the broker must requeue them when the connection closes
                        counters["walked_away_unacked"] += 1
                        break
                    client.ack(1, d.delivery_tag)
                    ledger.consume(d.body, d.redelivered)
                await client.close()
            except (TimeoutError, BrokerClosed, ConnectionError) as exc:
                errors.append(f"consumer {q}: {exc!r}")
                await asyncio.sleep(0.5)

    async def topology_churn() -> None:
        n = 0
        while not stop.is_set():
            try:
                client = await Client.connect(broker.port)
                counters["churn_connections"] += 1
                await client.channel(1, confirms=True)
                for _ in range(rng.randint(1, 10)):
                    n += 1
                    name = f"churn-{n}"
                    exclusive = rng.random() < 0.3
                    await client.rpc(1, C.Queue.Declare(
                        queue=name, exclusive=exclusive, durable=rng.random() < 0.3,
                        arguments=rng.choice([{}, {"x-max-length": 5},
                                              {"x-message-ttl": 50}])), C.Queue.DeclareOk)
                    await client.rpc(1, C.Exchange.Declare(exchange=f"x-{name}",
                                                           exchange_type="topic"),
                                     C.Exchange.DeclareOk)
                    await client.rpc(1, C.Queue.Bind(queue=name, exchange=f"x-{name}",
                                                     routing_key="a.#"), C.Queue.BindOk)
                    futs = [client.publish(1, f"x-{name}", "a.b", b"churn" * 20)
                            for _ in range(rng.randint(1, 20))]
                    assert all(await asyncio.gather(*futs))
                    got = await client.rpc(1, C.Basic.Get(queue=name, no_ack=True))
                    assert isinstance(got, C.Basic.GetEmpty | Delivery), got
                    await client.rpc(1, C.Exchange.Delete(exchange=f"x-{name}"),
                                     C.Exchange.DeleteOk)
                    if not exclusive or rng.random() < 0.5:
                        await client.rpc(1, C.Queue.Delete(queue=name), C.Queue.DeleteOk)
                    counters["queues_churned"] += 1
                await client.close()
            except (TimeoutError, BrokerClosed, ConnectionError) as exc:
                errors.append(f"churn: {exc!r}")
                await asyncio.sleep(0.5)

    async def sampler() -> None:
        while not stop_consumers.is_set():
            samples.append((time.monotonic() - started, rss_bytes()))
            await asyncio.sleep(5)

    tasks = [asyncio.create_task(publisher(p)) for p in range(publishers)]
    tasks += [asyncio.create_task(consumer(q)) for q in queues]
    tasks += [asyncio.create_task(topology_churn()), asyncio.create_task(sampler())]
    consumers_and_sampler = tasks[publishers:]

    await asyncio.sleep(baseline_at)
    rss_baseline = rss_bytes()
    await asyncio.sleep(max(0.0, duration - baseline_at))
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks[:publishers], tasks[-2]), 120)
    deadline = time.monotonic() + 120
    while ledger.missing() and time.monotonic() < deadline:
        await asyncio.sleep(1)
    await asyncio.sleep(1)
    stop_consumers.set()
    await asyncio.wait_for(asyncio.gather(*consumers_and_sampler), 60)
    rss_end = rss_bytes()

    probe = await Client.connect(broker.port)
    await probe.channel(1)
    depths = {}
    for q in queues:
        ok = await probe.rpc(1, C.Queue.Declare(queue=q, passive=True), C.Queue.DeclareOk)
        depths[q] = ok.message_count
    await probe.close()

    lost = ledger.missing()
    report = {
        "soak_s": round(time.monotonic() - started, 1),
        "confirmed": ledger.n_confirmed, "nacked": ledger.n_nacked,
        "consumed_acked": ledger.n_acked_deliveries, "redelivered": ledger.n_redelivered,
        "duplicates": ledger.n_duplicates, "lost": len(lost), **dict(counters),
        "client_errors": len(errors), "queue_depths_at_end": depths,
        f"rss_at_{round(baseline_at)}s_mb": round(rss_baseline / MB, 1),
        "rss_end_mb": round(rss_end / MB, 1),
        "rss_max_mb": round(max(r for _, r in samples) / MB, 1),
    }
    print("soak:", report)
    for key, value in report.items():
        record_property(key, value)
    assert not lost, f"{len(lost)} confirmed messages never consumed, first {lost[:10]}"
    assert not errors, errors[:10]
    assert not ledger.unknown
    assert ledger.n_duplicates <= ledger.n_redelivered, "duplicates without redelivered flag"
    assert broker_errors(caplog) == []
    assert rss_end - rss_baseline < max(25 * MB, rss_baseline // 4), report

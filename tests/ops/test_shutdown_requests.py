"""Management and CLI requests that arrive during a shutdown, after the queue stores closed
(the HTTP services stop last): whatever needs a store that does not exist yet -- a new queue,
a durable priority queue's first message of a new priority, a transient queue's spill file --
is refused with 503 and nothing is written to the data directory."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ops_helpers import Api

from broker.node.config import Config
from broker.node.node import Node
from broker.ops.http import HttpService

SHUTTING_DOWN = "the node is stopping: its queue stores are closed"


class HeldStop:
    """A service stopped before the HTTP one, that holds the shutdown until released: the
    window in which the stores are closed and the management API still answers."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.entered = threading.Event()
        self.release = asyncio.Event()

    async def start(self, node: Node) -> None:
        """Nothing to start."""

    async def stop(self) -> None:
        self.entered.set()
        await self.release.wait()


@dataclass
class Stopping:
    node: Node
    api: Api
    data_dir: Path
    loop: asyncio.AbstractEventLoop
    held: HeldStop

    def call(self, fn, *args):  # type: ignore[no-untyped-def]
        async def run():  # type: ignore[no-untyped-def]
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def stop(self) -> None:
        """Stop up to the services: stores closed, management API still up."""
        asyncio.run_coroutine_threadsafe(self.node.stop(), self.loop)
        assert self.held.entered.wait(10)


@pytest.fixture
def stopping(tmp_path: Path) -> Iterator[Stopping]:
    loop = asyncio.new_event_loop()
    held = HeldStop(loop)
    data_dir = tmp_path / "data"
    node = Node(Config(host="127.0.0.1", port=0, data_dir=str(data_dir), management_port=0,
                       prometheus_port=None), [held, HttpService()])
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(node.start(), loop).result(15)
    assert node.management_port
    try:
        yield Stopping(node, Api(node.management_port), data_dir, loop, held)
    finally:
        loop.call_soon_threadsafe(held.release.set)
        asyncio.run_coroutine_threadsafe(node.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def files(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def publish(api: Api, routing_key: str, priority: int | None = None) -> tuple[int, object]:
    props = {} if priority is None else {"priority": priority}
    return api.post("/api/exchanges/%2F/amq.default/publish",
                    {"routing_key": routing_key, "payload": "x", "payload_encoding": "string",
                     "properties": {"delivery_mode": 2, **props}})


def test_a_durable_priority_queue_makes_no_sub_store_after_the_close(stopping: Stopping
                                                                     ) -> None:
    api = stopping.api
    assert api.put("/api/queues/%2F/pq", {"durable": True,
                                          "arguments": {"x-max-priority": 5}}) == 201
    assert publish(api, "pq", 1) == (200, {"routed": True})
    stopping.stop()
    before = files(stopping.data_dir)
    status, body = publish(api, "pq", 3)  # priority 3 has no sub-store yet
    assert (status, body) == (503, {"error": "service_unavailable", "reason":
                                    "priority 3: the queue store is closed"})
    assert files(stopping.data_dir) == before


def test_no_queue_is_declared_after_the_close(stopping: Stopping) -> None:
    api = stopping.api
    stopping.stop()
    before = files(stopping.data_dir)
    for durable in (True, False):
        status, body = api.request("PUT", "/api/queues/%2F/late", {"durable": durable})
        assert (status, body) == (503, {"error": "service_unavailable",
                                        "reason": SHUTTING_DOWN})
    assert files(stopping.data_dir) == before
    assert "late" not in stopping.node.server.vhosts["/"].queues


def test_a_transient_queue_makes_no_scratch_file_after_the_close(stopping: Stopping) -> None:
    api = stopping.api
    assert api.put("/api/queues/%2F/lazy", {"durable": False,
                                            "arguments": {"x-queue-mode": "lazy"}}) == 201
    stopping.stop()
    before = files(stopping.data_dir)
    status, body = publish(api, "lazy")  # lazy: the message would go to a scratch file
    assert status == 503 and body["error"] == "service_unavailable"
    assert body["reason"].endswith(": the queue store is closed")
    assert files(stopping.data_dir) == before


def test_no_delayed_exchange_store_is_made_after_the_close(stopping: Stopping) -> None:
    api = stopping.api
    stopping.stop()
    before = files(stopping.data_dir)
    status, body = api.request("PUT", "/api/exchanges/%2F/late-delayed", {
        "type": "x-delayed-message", "durable": True,
        "arguments": {"x-delayed-type": "direct"}})
    assert (status, body) == (503, {"error": "service_unavailable", "reason": SHUTTING_DOWN})
    assert files(stopping.data_dir) == before
    assert "late-delayed" not in stopping.node.server.vhosts["/"].exchanges

"""Shared fixtures: a real broker on an ephemeral port, run in a background thread.

The broker gets its own event loop in a daemon thread so that blocking clients (pika) and
asyncio clients (aio-pika, on the test's loop) can both talk to it over real TCP.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from loop_call import call_on_loop

from broker.core.server import Server
from broker.node.config import Config
from broker.node.node import Node
from broker.ops.launch import make_node


@dataclass
class RunningBroker:
    node: Node
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    port: int

    @property
    def server(self) -> Server:
        """The broker's state (vhosts, users, connections); the node has the rest."""
        return self.node.server

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def call(self, fn, *args):  # type: ignore[no-untyped-def]
        """Run fn(*args) on the broker's loop and return its result."""
        return call_on_loop(self.loop, fn, *args)

    def stop(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self.node.stop(), self.loop)
        fut.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def start_broker(tmp_path, **overrides) -> RunningBroker:  # type: ignore[no-untyped-def]
    cfg = replace(Config(host="127.0.0.1", port=0, data_dir=str(tmp_path / "data")),
                  **overrides)
    node = make_node(cfg)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        box["port"] = loop.run_until_complete(node.start())
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="broker", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("broker did not start")
    return RunningBroker(node, loop, thread, box["port"])


@pytest.fixture
def broker(tmp_path) -> Iterator[RunningBroker]:  # type: ignore[no-untyped-def]
    running = start_broker(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def broker_factory(tmp_path):  # type: ignore[no-untyped-def]
    """Start brokers with Config overrides: broker_factory(heartbeat=2)."""
    started: list[RunningBroker] = []

    def make(**overrides) -> RunningBroker:  # type: ignore[no-untyped-def]
        running = start_broker(tmp_path, **overrides)
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()

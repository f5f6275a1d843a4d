"""pytest plugin (entry point ``pytest11``): a real burrowmq broker for your own test suite.

Fixtures:
- ``burrowmq`` — a broker on an ephemeral port with a temporary data dir, run in-process on a
  background thread, with the management API on an ephemeral port; stopped after the test.
- ``burrowmq_factory(**config)`` — start brokers with ``broker.node.config.Config`` overrides
  (``heartbeat=5``, ``prometheus_port=0``, ``default_user="app"`` ...).
- ``burrowmq_process`` — the same broker as a subprocess (``python -m broker``), for tests
  that want process isolation or signals; stopped with SIGTERM.

Each handle has ``url`` (an ``amqp://`` URL), ``port``, ``management_port``,
``management_url``, ``prometheus_port`` (None when off) and ``data_dir`` (``burrowctl
--data-dir <it>`` reaches the broker through its control socket); an in-process one also has
``node`` (``broker.node.node.Node``) and ``server`` (its state, ``broker.core.server.Server``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any  # Any: passed through to Config or a loop call

import pytest

from broker.core.server import Server
from broker.node.config import Config
from broker.node.node import Node

from .launch import make_node


@dataclass
class BrokerHandle:
    port: int
    management_port: int | None = None
    prometheus_port: int | None = None
    user: str = "guest"
    password: str = "guest"
    data_dir: str = ""
    node: Node | None = None
    loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _process: subprocess.Popen | None = None
    _extra: dict = field(default_factory=dict)

    @property
    def server(self) -> Server | None:
        return self.node.server if self.node is not None else None

    @property
    def url(self) -> str:
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.port}/"

    @property
    def management_url(self) -> str | None:
        if not self.management_port:
            return None
        return f"http://127.0.0.1:{self.management_port}"

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the in-process broker's event loop and return its result."""
        assert self.loop is not None, "call() needs an in-process broker"
        return asyncio.run_coroutine_threadsafe(_call(fn, *args), self.loop).result(10)

    def stop(self) -> None:
        """Stop the broker (SIGTERM for a process); calling it again does nothing."""
        if self._extra.get("stopped"):
            return
        self._extra["stopped"] = True
        if self._process is not None:
            stop_process(self._process)
        elif self.loop is not None and self.node is not None and self._thread is not None:
            asyncio.run_coroutine_threadsafe(self.node.stop(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def start_in_thread(config: Config) -> BrokerHandle:
    node = make_node(config)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(node.start())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            failure.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="burrowmq", daemon=True)
    thread.start()
    if not ready.wait(15) or failure:
        raise RuntimeError(f"burrowmq did not start: {failure[0] if failure else 'timeout'}")
    return BrokerHandle(node.port, node.management_port, node.prometheus_port,
                        config.default_user, config.default_pass, config.data_dir, node, loop,
                        thread)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_process(data_dir: Path, *extra: str, management: bool = True,
                  timeout: float = 15.0) -> BrokerHandle:
    port, mgmt = free_port(), free_port() if management else 0
    cmd = [sys.executable, "-m", "broker", "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(data_dir), "--management-port", str(mgmt),
           "--prometheus-port", "0", *extra]
    log_path = data_dir.parent / f"burrowmq-{port}.log"
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"burrowmq exited with {proc.returncode}; see {log_path}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                break
        except OSError:
            time.sleep(0.02)
    else:
        stop_process(proc)
        raise RuntimeError("burrowmq did not start listening in time")
    return BrokerHandle(port, mgmt or None, None, data_dir=str(data_dir), _process=proc,
                        _extra={"log": str(log_path)})


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@pytest.fixture
def burrowmq_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """Start brokers in this process: ``burrowmq_factory(**overrides)`` -> handle.

    Overrides are ``broker.node.config.Config`` fields (``heartbeat=5``, ``default_user="app"``,
    ``prometheus_port=0`` ...). Each broker gets an ephemeral AMQP and management port and its
    own temporary data directory; all are stopped when the test ends."""
    started: list[BrokerHandle] = []

    def make(**overrides: Any) -> BrokerHandle:
        data_dir = tmp_path_factory.mktemp("burrowmq")
        base = Config(host="127.0.0.1", port=0, data_dir=str(data_dir), management_port=0,
                      control_socket=True)
        handle = start_in_thread(replace(base, **overrides))
        started.append(handle)
        return handle

    yield make
    for handle in started:
        handle.stop()


@pytest.fixture
def burrowmq(burrowmq_factory: Callable[..., BrokerHandle]) -> BrokerHandle:
    """A broker for this test, in-process: connect to ``burrowmq.url`` (guest/guest).

    Ephemeral AMQP and management ports, a temporary data directory, stopped after the test.
    The handle has ``url``, ``port``, ``management_port``, ``management_url``,
    ``prometheus_port`` and ``data_dir``."""
    return burrowmq_factory()


@pytest.fixture
def burrowmq_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerHandle]:
    """A broker as a separate process (``python -m broker``), for process isolation or signals.

    Same handle as ``burrowmq``; stopped with SIGTERM after the test (clients get
    320 CONNECTION_FORCED, as RabbitMQ's)."""
    handle = start_process(tmp_path_factory.mktemp("burrowmq") / "data")
    yield handle
    handle.stop()

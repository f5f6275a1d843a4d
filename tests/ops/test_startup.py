"""``python -m broker`` starting, as an operator watches it: RabbitMQ's start-up log, and the
one-line errors (with the setting to change) when a port is taken -- the management and
Prometheus ports as much as AMQP's, as in RabbitMQ -- or the data directory is in use."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from broker.node.config import Config
from broker.node.node import Node, StartAborted
from broker.node.startup import port_error
from broker.ops.pytest_plugin import free_port, start_process, stop_process


@pytest.fixture
def taken() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def broker(tmp_path: Path, *args: str, env: dict | None = None,
           timeout: float = 30) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "BURROWMQ_"))}
    return subprocess.run([sys.executable, "-m", "broker", "--data-dir", str(tmp_path / "data"),
                           *args], capture_output=True, text=True, timeout=timeout,
                          env={**clean, **(env or {})})


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, text: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.startswith(f"burrowmq: error: {text}"), proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stdout + proc.stderr


def test_amqp_port_taken(tmp_path, taken: int) -> None:  # type: ignore[no-untyped-def]
    proc = broker(tmp_path, "--port", str(taken), "--management-port", "0",
                  "--prometheus-port", "0")
    assert_one_line_error(proc, 69, f"cannot listen on 127.0.0.1:{taken} for AMQP: address "
                                    "already in use (another broker or program listens "
                                    f"there); port {taken} was set by --port\n")


def test_management_port_taken_is_fatal_and_named(tmp_path, taken: int) -> None:  # type: ignore  # noqa: E501
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text(f"# the API\nmanagement.tcp.port = {taken}\n")
    proc = broker(tmp_path, "--port", str(free_port()), "--config-file", str(conf),
                  "--prometheus-port", "0")
    assert_one_line_error(proc, 69, f"cannot listen on 127.0.0.1:{taken} for the management "
                                    "API: address already in use (another broker or program "
                                    f"listens there); port {taken} was set by "
                                    f"management.tcp.port at {conf}:2\n")
    # nothing kept: the data directory is free again
    again = broker(tmp_path, "--port", str(free_port()), "--management-port", "0",
                   "--prometheus-port", str(taken))
    assert_one_line_error(again, 69, f"cannot listen on 127.0.0.1:{taken} for Prometheus "
                                     "metrics")
    assert f"port {taken} was set by --prometheus-port" in again.stderr


def test_prometheus_port_from_the_environment(tmp_path, taken: int) -> None:  # type: ignore
    proc = broker(tmp_path, "--port", str(free_port()), "--management-port", "0",
                  env={"RABBITMQ_PROMETHEUS_PORT": str(taken)})
    assert proc.returncode == 69
    assert f"port {taken} was set by RABBITMQ_PROMETHEUS_PORT" in proc.stderr


def test_default_port_message_names_every_way_to_change_it() -> None:
    err = port_error(Config(), "port", "AMQP", "127.0.0.1", 5672,
                     OSError(98, "Address already in use"))
    assert str(err) == ("cannot listen on 127.0.0.1:5672 for AMQP: address already in use "
                        "(another broker or program listens there); port 5672 is the default; "
                        "set another with --port, RABBITMQ_NODE_PORT or listeners.tcp.default")
    assert err.code == 69
    err = port_error(Config(), "management_port", "the management API", "127.0.0.1", 15672,
                     OSError(98, "Address already in use"))
    assert "--management-port, RABBITMQ_MANAGEMENT_PORT or management.tcp.port (0 turns the " \
           "management API off)" in str(err)


def test_in_process_start_failure_releases_everything(burrowmq_factory, taken) -> None:  # type: ignore  # noqa: E501
    with pytest.raises(RuntimeError, match=f"cannot listen on 127.0.0.1:{taken} for the "
                                           "management API"):
        burrowmq_factory(management_port=taken)
    pika.BlockingConnection(pika.URLParameters(burrowmq_factory().url)).close()


def test_data_directory_in_use(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = start_process(tmp_path / "data", management=False)
    try:
        proc = broker(tmp_path, "--port", str(free_port()), "--management-port", "0",
                      "--prometheus-port", "0")
        assert_one_line_error(proc, 69, f"data directory {tmp_path / 'data'} is")
    finally:
        first.stop()


def test_startup_log(tmp_path) -> None:  # type: ignore[no-untyped-def]
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text("default_user = ops\ndefault_pass = pw\n")
    handle = start_process(tmp_path / "data", "--config-file", str(conf))
    proc = handle._process  # noqa: SLF001
    assert proc is not None
    deadline = 100
    log = Path(handle._extra["log"])  # noqa: SLF001
    import time

    while "Server startup complete" not in log.read_text() and deadline:
        time.sleep(0.1)
        deadline -= 1
    assert stop_process(proc) == 0
    text = log.read_text()
    for part in (" Starting burrowmq 0.1.0 (RabbitMQ 3.13.7 compatible) on Python ",
                 " node           : rabbit@", f" config file(s) : {conf}\n",
                 f" data dir       : {tmp_path / 'data'}\n",
                 "[info] <broker> Memory high watermark set to ",
                 "[info] <broker> Disk free limit set to 50MB",
                 "Will seed default virtual host and user...", "Created user 'ops'",
                 "Successfully set user tags for user 'ops' to [administrator]",
                 "Successfully set permissions for 'ops' in virtual host '/' to '.*', '.*', "
                 "'.*'", f"started TCP listener on 127.0.0.1:{handle.port}",
                 f"Management plugin: HTTP (non-TLS) listener started on port "
                 f"{handle.management_port}",
                 "Server startup complete; 1 plugins started.\n * rabbitmq_management\n"):
        assert part in text, (part, text)
    assert text.index("Created user") < text.index("Server startup complete")


class GatedService:
    """A service whose start waits until the test lets it go, recording what happened."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def start(self, node: Node) -> None:
        self.entered.set()
        await self.release.wait()
        self.events.append("service started" if not node.stopping else "service gave up")

    async def stop(self) -> None:
        self.events.append("service stopped")


class Recorder:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def start(self, node: Node) -> None:
        self.events.append("second service started")

    async def stop(self) -> None:
        self.events.append("second service stopped")


def test_stop_during_start_waits_for_it_to_unwind(tmp_path: Path) -> None:
    """stop() while start() waits on a service: start gives up at its next step (the second
    service never starts), closes the listener and the stores; both stops return after."""
    events: list[str] = []
    gated = GatedService(events)
    node = Node(Config(host="127.0.0.1", port=0, data_dir=str(tmp_path / "data")),
                [gated, Recorder(events)])

    async def scenario() -> None:
        starting = asyncio.ensure_future(node.start())
        await gated.entered.wait()
        port = node.port
        stops = [asyncio.ensure_future(node.stop()) for _ in range(2)]
        await asyncio.sleep(0)
        assert node.stopping and not any(stop.done() for stop in stops)
        gated.release.set()
        with pytest.raises(StartAborted):
            await starting
        await asyncio.gather(*stops)
        events.append("stopped")
        assert node.stores is None and not node.running
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        with pytest.raises(StartAborted):
            await node.start_app()  # rabbitmqctl start_app after the stop began

    asyncio.run(scenario())
    assert events == ["service gave up", "service stopped", "second service stopped",
                      "stopped"]
    # the data directory was released: another node can open it
    again = Node(Config(host="127.0.0.1", port=0, data_dir=str(tmp_path / "data")))

    async def restart() -> None:
        await again.start()
        await again.stop()

    asyncio.run(restart())

"""Helpers for the durability tests (not a test module).

- ``BrokerProcess``: ``python -m broker`` as a subprocess on an ephemeral port with a given data
  directory; SIGKILL / SIGTERM it, start it again on the same directory, read its log.
- ``InProcessBroker``: a ``Node`` on its own loop thread that can be stopped and started again
  on the same data directory (vhosts and policies can only be set through the server object).
- ``BrokerPool``: the ``brokers`` fixture's factory; ``saved_definitions`` / ``wait_saved``
  read and wait for the definitions a broker saved in its data directory.
The clients that load those brokers (numbered messages, pipelined publisher, acking consumer)
are in ``durability_clients``.

Every wait has a deadline; nothing here can hang a test run.
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
from dataclasses import replace
from pathlib import Path

import pika
from loop_call import call_on_loop

from broker.node.config import Config
from broker.ops.launch import make_node

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except FileNotFoundError:
                pass
    return total


FAULTS_MAIN = """
import os, sys, time
delay, offset, defs_delay = (float(a) for a in sys.argv[1].split(","))
real_fsync, real_time = os.fsync, time.time
def slow_fsync(fd):
    time.sleep(delay)
    return real_fsync(fd)
if delay:
    os.fsync = slow_fsync
if offset:
    time.time = lambda: real_time() + offset
if defs_delay:
    from storage import definitions_file
    real_save = definitions_file.save
    def slow_save(*args, **kwargs):
        time.sleep(defs_delay)
        return real_save(*args, **kwargs)
    definitions_file.save = slow_save
from broker.__main__ import main
sys.exit(main(sys.argv[2:]))
"""


# ---- broker subprocess ---------------------------------------------------------------------
class BrokerProcess:
    """``python -m broker`` on a fresh ephemeral port each time it is started."""

    def __init__(self, data_dir: Path, log_dir: Path, *extra: str,
                 slow_fsync: float = 0.0, slow_definitions: float = 0.0) -> None:
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.extra = list(extra)
        self.slow_fsync = slow_fsync  # fault injection: every os.fsync sleeps this long first
        # fault injection: every save of the definitions document sleeps this long first
        self.slow_definitions = slow_definitions
        # seconds added to the broker's time.time() from its next start on: the wall clock
        # stored message deadlines are kept in, as if the broker had been down that long
        self.clock_offset = 0.0
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path: Path | None = None
        self._starts = 0

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def params(self, **overrides) -> pika.URLParameters:  # type: ignore[no-untyped-def]
        params = pika.URLParameters(self.url)
        params.socket_timeout = 5
        params.blocked_connection_timeout = None
        for key, value in overrides.items():
            setattr(params, key, value)
        return params

    def connect(self, **overrides) -> pika.BlockingConnection:  # type: ignore[no-untyped-def]
        return pika.BlockingConnection(self.params(**overrides))

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it to listen."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._starts += 1
        self.port = free_port()
        self.log_path = self.log_dir / f"broker-{id(self):x}-{self._starts}.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        # no HTTP listeners: RabbitMQ's fixed 15672 / 15692 would be shared by every broker
        # of the run (and a taken one stops the start)
        args = ["--host", "127.0.0.1", "--port", str(self.port), "--data-dir",
                str(self.data_dir), "--management-port", "0", "--prometheus-port", "0",
                *self.extra]
        if self.slow_fsync or self.clock_offset or self.slow_definitions:
            faults = f"{self.slow_fsync},{self.clock_offset},{self.slow_definitions}"
            command = [sys.executable, "-c", FAULTS_MAIN, faults, *args]
        else:
            command = [sys.executable, "-m", "broker", *args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self.proc

    def start(self, timeout: float = 15.0) -> BrokerProcess:
        proc = self.spawn()
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"broker exited with {proc.returncode} while starting:\n"
                                     f"{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"broker not listening after {timeout} s:\n{self.log()}")
            time.sleep(0.02)

    def wait_exit(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"broker still running after {timeout} s:\n{self.log()[-4000:]}") from None

    def kill(self) -> None:
        """SIGKILL (idempotent)."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> None:
        """SIGTERM, a clean stop: must exit 0 within ``timeout``."""
        assert self.proc is not None and self.proc.poll() is None, "not running"
        self.proc.send_signal(signal.SIGTERM)
        code = self.wait_exit(timeout)
        assert code == 0, f"broker exited with {code} on SIGTERM:\n{self.log()}"

    def restart(self, how: str = "term") -> BrokerProcess:
        if how == "kill":
            self.kill()
        else:
            self.terminate()
        return self.start()

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def queue_dir(self, name: str, vhost: str = "/") -> Path:
        from storage.datadir import queue_dir_name
        return self.data_dir / "queues" / queue_dir_name(vhost, name)


class BrokerPool:
    """Brokers started by one test; ``close`` SIGKILLs whatever still runs."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[BrokerProcess] = []

    def __call__(self, *extra: str, data_dir: Path | None = None, start: bool = True,
                 slow_fsync: float = 0.0, slow_definitions: float = 0.0) -> BrokerProcess:
        data = data_dir if data_dir is not None else self.tmp_path / "data"
        if "--disk-free-limit" not in extra:
            extra = (*extra, "--disk-free-limit", "0")
        broker = BrokerProcess(data, self.tmp_path, *extra, slow_fsync=slow_fsync,
                               slow_definitions=slow_definitions)
        self.started.append(broker)
        return broker.start() if start else broker

    def close(self) -> None:
        for broker in self.started:
            try:
                broker.kill()
            except Exception:  # noqa: BLE001 - finalizer: kill the rest anyway
                pass


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def saved_definitions(data_dir: Path) -> dict:
    """The definitions document on disk ({} when absent or unreadable). Read without side
    effects: ``definitions_file.load`` removes a save's temporary file (racing a save in flight)."""
    from storage import definitions_file
    try:
        return definitions_file.decode((data_dir / "definitions.bin").read_bytes())
    except (OSError, definitions_file.DefinitionsError):
        return {}


def wait_saved(data_dir: Path, *, exchanges: tuple[str, ...] = (),
               queues: tuple[str, ...] = (), bindings: int = 0, timeout: float = 3.0) -> None:
    """Wait until the definitions file holds these exchanges, queues and that many bindings.

    The restart tests call it before SIGTERM so that they check what a restart restores, not
    whether a stop right after a declaration loses it (that race has its own test)."""
    deadline = time.monotonic() + timeout
    while True:
        doc = saved_definitions(data_dir)
        have_x = {x["name"] for x in doc.get("exchanges", [])}
        have_q = {q["name"] for q in doc.get("queues", [])}
        if set(exchanges) <= have_x and set(queues) <= have_q and \
                len(doc.get("bindings", [])) >= bindings:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"definitions not saved within {timeout} s: missing exchanges "
                f"{sorted(set(exchanges) - have_x)}, queues {sorted(set(queues) - have_q)}, "
                f"{len(doc.get('bindings', []))} of {bindings} bindings")
        time.sleep(0.02)


# ---- broker in this process ----------------------------------------------------------------
class InProcessBroker:
    """A Node on a loop thread; ``stop`` then a new instance reopens the same data dir."""

    def __init__(self, data_dir: Path, **overrides) -> None:  # type: ignore[no-untyped-def]
        cfg = replace(Config(host="127.0.0.1", port=0, data_dir=str(data_dir),
                             disk_free_limit=0), **overrides)
        self.node = make_node(cfg)
        self.server = self.node.server
        self.loop = asyncio.new_event_loop()
        self.stopped = False
        ready = threading.Event()
        box: dict = {}

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                box["port"] = self.loop.run_until_complete(self.node.start())
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                box["error"] = exc
                ready.set()
                self.loop.close()
                return
            ready.set()
            self.loop.run_forever()
            self.loop.close()

        self.thread = threading.Thread(target=run, name="broker", daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("broker did not start")
        if "error" in box:
            self.stopped = True
            raise box["error"]
        self.port = box["port"]

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def connect(self, vhost: str = "/") -> pika.BlockingConnection:
        params = pika.ConnectionParameters("127.0.0.1", self.port, vhost,
                                           pika.PlainCredentials("guest", "guest"),
                                           socket_timeout=5)
        return pika.BlockingConnection(params)

    def call(self, fn, *args):  # type: ignore[no-untyped-def]
        """Run fn(*args) on the broker's loop; its result (or its exception)."""
        return call_on_loop(self.loop, fn, *args)

    def stop(self) -> None:
        """Stop once the group commit is idle: ``Node.stop`` raises "a batch is in flight"
        when an fsync batch is running (covered by test_sigterm_under_load_...; waiting here
        keeps the vhost / policy tests about vhosts and policies)."""
        if self.stopped:
            return
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not self.call(
                lambda: self.node.stores is None or self.node.stores.group is None
                or self.node.stores.group.idle):
            time.sleep(0.02)
        self.stopped = True
        fut = asyncio.run_coroutine_threadsafe(self.node.stop(), self.loop)
        fut.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

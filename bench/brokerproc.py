"""Broker process management: spawn our broker, time its cold start, read its RSS.

``SpawnedBroker`` starts ``<python> -m broker --host H --port P --data-dir D``
(or a ``--broker-cmd`` template) in its own process group on a free loopback
port with a fresh temporary data directory (or a given one, kept), polls full
AMQP handshakes until one succeeds, can be stopped by a chosen signal and
started again on the same port and data dir (``terminate`` + ``start``), and
tears everything down afterwards. Memory is read from
``/proc/<pid>/status`` (VmRSS), summed over the broker's process tree;
``listener_pid`` finds which local process listens on a port, so an external
broker given by URL can be measured too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

from bench.amqp import AMQPUrl, Connection

DEFAULT_CMD = (
    "{python} -m broker --host {host} --port {port} --data-dir {data_dir} "
    "--management-port 0 --prometheus-port 0"
)
POLL_INTERVAL = 0.005


def _die_with_parent() -> None:
    """preexec hook: SIGTERM the broker if the bench process dies (Linux prctl)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class BrokerError(RuntimeError):
    """The broker could not be started or did not become ready."""


def project_root() -> Path:
    """Directory holding ``bench/`` (and ``broker/``), used as the broker's cwd."""
    return Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a currently free TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def try_handshake(url: AMQPUrl, timeout: float = 2.0) -> bool:
    """True when a full handshake (up to connection.open-ok) succeeds; closes it again."""
    try:
        conn = Connection(url, timeout=timeout, product="bench-probe")
    except Exception:  # refused, reset, half-started broker, garbage...
        return False
    conn.close(timeout=timeout)
    return True


class LocalBroker:
    """What a broker process the bench spawned offers: its URL and PID, waiting until it
    answers handshakes, ``with`` stopping it. Subclasses set ``proc``, ``t_spawn`` (when
    it was spawned, perf_counter), ``host``/``port`` and define ``log_tail`` and ``stop``."""

    name = "broker"  # in error texts
    ready_poll = POLL_INTERVAL  # seconds between two handshake attempts
    host: str
    port: int
    proc: subprocess.Popen[bytes] | None
    t_spawn: float

    @property
    def url(self) -> AMQPUrl:
        return AMQPUrl(host=self.host, port=self.port)

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BrokerError(f"{self.name} not started")
        return self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        raise NotImplementedError

    def stop(self, grace: float = 5.0) -> None:
        raise NotImplementedError

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Poll handshakes until one succeeds; return seconds since the spawn."""
        assert self.proc is not None
        deadline = self.t_spawn + timeout
        url = self.url
        while True:
            if self.proc.poll() is not None:
                raise BrokerError(
                    f"{self.name} exited with code {self.proc.returncode} before accepting "
                    f"connections; log tail:\n{self.log_tail()}"
                )
            if try_handshake(url, timeout=max(0.5, min(5.0, deadline - time.perf_counter()))):
                return time.perf_counter() - self.t_spawn
            if time.perf_counter() > deadline:
                raise BrokerError(
                    f"{self.name} not ready after {timeout:.0f}s on port {self.port}; "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(self.ready_poll)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SpawnedBroker(LocalBroker):
    """One broker process with its data dir (temporary unless given) and log file."""

    def __init__(
        self, cmd_template: str = DEFAULT_CMD, host: str = "127.0.0.1", data_dir: Path | None = None
    ) -> None:
        """``data_dir`` None: a fresh temporary one, removed by ``stop``; else reused and kept."""
        self.cmd_template = cmd_template
        self.host = host
        self.port = free_port(host)
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-broker-"))
        self.data_dir = self.workdir / "data" if data_dir is None else Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "broker.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.t_spawn = 0.0

    def command(self) -> list[str]:
        text = self.cmd_template.format(
            python=shlex.quote(sys.executable),
            host=self.host,
            port=self.port,
            data_dir=shlex.quote(str(self.data_dir)),
        )
        return shlex.split(text)

    def start(self) -> None:
        """Spawn the broker (again, after ``terminate``: same port and data dir, log appended)."""
        with open(self.log_path, "ab") as log:
            self.t_spawn = time.perf_counter()
            # The HTTP side stays on, on free ports: RabbitMQ's fixed 15672 / 15692 may be taken
            # (a `make run`), and a taken one stops the broker's start.
            env = {**os.environ, "RABBITMQ_MANAGEMENT_PORT": str(free_port()),
                   "RABBITMQ_PROMETHEUS_PORT": str(free_port())}
            self.proc = subprocess.Popen(
                self.command(),
                cwd=project_root(),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def terminate(self, sig: int = signal.SIGTERM, grace: float = 5.0) -> tuple[float, bool]:
        """Send ``sig`` to the broker's process group and wait until it exits; keep the data.

        Returns (seconds from the signal until exit, whether it had to be SIGKILLed because
        it was still running ``grace`` seconds after ``sig``).
        """
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return 0.0, False
        t0 = time.perf_counter()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(grace)
            return time.perf_counter() - t0, False
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(grace)
            return time.perf_counter() - t0, True

    def stop(self, grace: float = 5.0) -> None:
        """Stop the broker (SIGTERM, SIGKILL after ``grace``) and remove the temporary dirs."""
        self.terminate(signal.SIGTERM, grace)
        shutil.rmtree(self.workdir, ignore_errors=True)


def cold_start_times(cmd_template: str, runs: int, timeout: float) -> list[float]:
    """Spawn ``runs`` fresh brokers one after the other; seconds until first open-ok each."""
    times = []
    for _ in range(runs):
        with SpawnedBroker(cmd_template) as broker:
            broker.start()
            times.append(broker.wait_ready(timeout))
    return times


# -- memory -----------------------------------------------------------------------------


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """VmRSS (or another /proc status field, e.g. VmHWM = peak RSS) of one process, in KiB.

    0 when the process has none, e.g. a zombie.
    """
    prefix = f"{field}:"
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(prefix):
                return int(line.split()[1])
    return 0


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (via /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    todo.extend(int(child) for child in fh.read().split())
    return out


def tree_rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Summed VmRSS (or ``field``, e.g. "VmHWM") of ``pid`` and its descendants, in MiB."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            total += rss_kb(member, field)
    return total / 1024.0


def listener_pid(port: int) -> int | None:
    """PID of the local process with a listening TCP socket on ``port``, if visible."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            next(fh, None)
            for line in fh:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}") in inodes:
                    return int(entry)
    return None


# -- CPU --------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of one process (/proc/<pid>/stat), in seconds.

    The reaped children's times (cutime, cstime) count too, so a helper process that
    exits during a measuring window is not lost.
    """
    with open(f"/proc/{pid}/stat") as fh:
        text = fh.read()
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return sum(int(v) for v in fields[11:15]) / CLK_TCK  # fields 14-17 of proc(5)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and its descendants (and their reaped children)."""
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, ValueError):
            total += cpu_seconds(member)
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine spent busy (not idle/iowait), from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / CLK_TCK

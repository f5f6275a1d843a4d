"""A RabbitMQ node of the bench's own, to compare against in the same run.

``SpawnedRabbit`` runs the Debian package's ``rabbitmq-server`` script (3.10.8:
``/usr/lib/rabbitmq/bin/rabbitmq-server``, the one that does not ``su`` to the rabbitmq
user) with everything under a temporary directory, so it shares nothing with a system
node or another helper's: RABBITMQ_MNESIA_BASE, RABBITMQ_LOG_BASE, RABBITMQ_CONFIG_FILE
(listener on 127.0.0.1:<free port>, ``loopback_users = none``), an empty
RABBITMQ_ENABLED_PLUGINS_FILE (no management plugin: no 15672), an empty
RABBITMQ_CONF_ENV_FILE (so /etc/rabbitmq/rabbitmq-env.conf is not read), HOME (its own
Erlang cookie), RABBITMQ_NODENAME ``bench<pid>-<n>@localhost``, RABBITMQ_DIST_PORT and
ERL_EPMD_PORT on free ports. The bench starts that epmd itself (``epmd -port P`` in the
foreground, its child) so it knows the PID; ``stop`` SIGTERMs the node's process group
(the script and beam.smp; beam stops gracefully on SIGTERM), SIGKILLs it after a grace
period, then stops the epmd by its PID and removes the directory. Nothing else is touched.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench.brokerproc import POLL_INTERVAL, BrokerError, LocalBroker, _die_with_parent, free_port

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
_serial = itertools.count(1)


def _stop_group(proc: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM ``proc``'s process group (its own session), SIGKILL after ``grace`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


class SpawnedRabbit(LocalBroker):
    """One RabbitMQ node (and the epmd it registers with) under a temporary directory."""

    name = "RabbitMQ"
    ready_poll = 0.1

    def __init__(self, server: str = RABBITMQ_SERVER, host: str = "127.0.0.1") -> None:
        if not os.access(server, os.X_OK):
            raise BrokerError(f"{server} not found (apt-get install rabbitmq-server)")
        self.server = server
        self.host = host
        self.port = free_port(host)
        self.dist_port = free_port(host)
        self.epmd_port = free_port(host)
        self.nodename = f"bench{os.getpid()}-{next(_serial)}@localhost"
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-rabbitmq-"))
        self.log_path = self.workdir / "stdout.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.epmd: subprocess.Popen[bytes] | None = None
        self.t_spawn = 0.0

    def _files(self) -> dict[str, str]:
        w = self.workdir
        for sub in ("mnesia", "log", "home"):
            (w / sub).mkdir(exist_ok=True)
        (w / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {self.host}:{self.port}\n"
            "loopback_users = none\n"
        )
        (w / "enabled_plugins").write_text("[].\n")
        (w / "rabbitmq-env.conf").write_text("")
        return {
            "HOME": str(w / "home"),
            "RABBITMQ_MNESIA_BASE": str(w / "mnesia"),
            "RABBITMQ_LOG_BASE": str(w / "log"),
            "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq"),  # the script adds .conf
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(w / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(w / "rabbitmq.pid"),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
        }

    def _popen(self, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                cmd, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent,
            )

    def start(self) -> None:
        env = {**os.environ, **self._files()}
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        self.epmd = self._popen([epmd, "-port", str(self.epmd_port)], env)
        deadline = time.monotonic() + 10.0
        while not _listening(self.epmd_port):
            if self.epmd.poll() is not None or time.monotonic() > deadline:
                raise BrokerError(f"epmd did not start on port {self.epmd_port}")
            time.sleep(POLL_INTERVAL)
        self.t_spawn = time.perf_counter()
        self.proc = self._popen([self.server], env)

    def log_tail(self, lines: int = 20) -> str:
        texts = []
        for path in [self.log_path, *sorted((self.workdir / "log").glob("*.log"))]:
            with contextlib.suppress(OSError):
                texts.append(path.read_text(errors="replace"))
        return "\n".join("\n".join(texts).splitlines()[-lines:])

    def wait_ready(self, timeout: float = 60.0) -> float:
        return super().wait_ready(timeout)

    def stop(self, grace: float = 30.0) -> None:
        """Stop the node, then its epmd, by PID; remove the temporary directory."""
        _stop_group(self.proc, grace)
        _stop_group(self.epmd, 5.0)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0

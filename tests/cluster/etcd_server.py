"""Starting and stopping real etcd processes for tests: free loopback ports, a temp data dir,
``--unsafe-no-fsync`` (tests only), ready when ``GET /health`` says so, stopped by PID."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ETCD = shutil.which("etcd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self, initial_cluster: str, token: str, state: str = "new") -> None:
        assert ETCD is not None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [ETCD, "--name", self.name, "--data-dir", str(self.data_dir),
                 "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                 "--listen-peer-urls", self.peer_url,
                 "--initial-advertise-peer-urls", self.peer_url,
                 "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
                 "--initial-cluster-token", token,
                 # fast raft ticks: leases may be 1 s and an etcd leader is re-elected quickly
                 "--heartbeat-interval", "20", "--election-timeout", "200",
                 "--unsafe-no-fsync", "--log-level", "warn", "--logger", "zap"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=0.5) as answer:
                return json.loads(answer.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, sig)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class EtcdCluster:
    """``size`` etcd members on loopback; ``endpoints`` for a client."""

    def __init__(self, root: Path, size: int = 1) -> None:
        self.root = root
        self.members = [
            EtcdMember(f"m{i}", free_port(), free_port(), root / f"m{i}", root / f"m{i}.log")
            for i in range(size)]

    @property
    def endpoints(self) -> list[str]:
        return [m.url for m in self.members]

    @property
    def url(self) -> str:
        return self.members[0].url

    def start(self, timeout: float = 15.0) -> None:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        token = f"burrowmq-test-{self.members[0].peer_port}"  # one per cluster, same for all
        for member in self.members:
            member.start(initial, token)
        deadline = time.monotonic() + timeout
        while not all(m.healthy() for m in self.members):
            for member in self.members:
                if not member.running:
                    log = member.log_path.read_text(errors="replace")[-2000:]
                    self.stop()
                    raise RuntimeError(f"etcd {member.name} exited:\n{log}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("etcd did not become healthy")
            time.sleep(0.05)

    def stop(self) -> None:
        for member in self.members:
            member.stop()


def start_cluster(root: Path, size: int = 1) -> EtcdCluster:
    """Start ``size`` members; retry with new ports if one was taken meanwhile."""
    for attempt in range(3):
        cluster = EtcdCluster(root / f"try{attempt}", size)
        try:
            cluster.start()
            return cluster
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")

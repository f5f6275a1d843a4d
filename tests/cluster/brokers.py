"""Real burrowmq nodes in cluster mode for tests: ``python -m broker`` processes on loopback,
each with its own data directory and free ports, all on one etcd; stopped by PID.

``BrokerCluster(root, etcd_endpoints, size=3)`` makes the nodes ``rabbit@node1`` ... with a
2 s lease, a 1 s replica ack timeout and a 4 s confirm timeout (tests' values); ``start()``
starts them and waits until one leads and the others follow. A node can be killed, paused,
resumed and started again on the same ports and data directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etcd_server import free_port

AUTH = "Basic " + b64encode(b"guest:guest").decode()
REPO = Path(__file__).resolve().parents[2]


@dataclass
class BrokerNode:
    name: str
    data_dir: Path
    log_path: Path
    amqp_port: int = 0  # bound at 0 by the node (AMQP) or chosen free at each start (HTTP: 0
    http_port: int = 0  # turns it off), read from the node's log
    proc: subprocess.Popen[bytes] | None = None
    log_offset: int = 0
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait: bool = True) -> None:
        """Start the process; with ``wait``, until its log names its ports."""
        assert not self.running, f"{self.name} already runs"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.amqp_port = self.http_port = 0
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.env}
        for var in ("BURROWMQ_DATA_DIR", "RABBITMQ_CONFIG_FILE", "RABBITMQ_NODENAME"):
            env.pop(var, None)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "broker", "--host", "127.0.0.1", "--port", "0",
                 "--management-port", str(free_port()), "--prometheus-port", "0",
                 "--data-dir", str(self.data_dir), "--node-name", self.name,
                 "--replication-port", "0", "--log-level", "info", *self.args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=str(REPO))
        finally:
            log.close()
        if wait:
            self.wait_ports()

    def wait_ports(self, timeout: float = 20.0) -> None:
        """Until the node's log names the ports it bound."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()[self.log_offset:]
            amqp = re.search(r"started TCP listener on [^ ]+:(\d+)", text)
            http = re.search(r"Management plugin: HTTP \(non-TLS\) listener started on port "
                             r"(\d+)", text)
            if amqp and http:
                self.amqp_port, self.http_port = int(amqp.group(1)), int(http.group(1))
                return
            if not self.running:
                raise AssertionError(f"{self.name} exited:\n{text[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not start:\n{self.log_text()[-3000:]}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.running:
            self.signal(signal.SIGKILL)
            assert self.proc is not None
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)  # a paused node must be able to stop
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def get(self, path: str, timeout: float = 3.0) -> tuple[int, Any]:
        request = urllib.request.Request(self.http + path, headers={"Authorization": AUTH})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body or b"null")
            except ValueError:
                return exc.code, body.decode(errors="replace")

    def is_leader(self) -> bool:
        try:
            return self.get("/api/health/checks/leader", 1.0)[0] == 200
        except OSError:
            return False

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class BrokerCluster:
    def __init__(self, root: Path, etcd_endpoints: list[str], size: int = 3,
                 cluster: str = "test", args: list[str] | None = None) -> None:
        self.root = root
        self.etcd_endpoints = etcd_endpoints
        self.cluster = cluster
        common = ["--etcd", ",".join(etcd_endpoints), "--cluster-name", cluster,
                  "--lease-ttl", "2", "--replica-ack-timeout", "1", "--confirm-timeout", "4"]
        self.nodes = [BrokerNode(f"rabbit@node{i}", root / f"node{i}", root / f"node{i}.log",
                                 args=[*common, *(args or [])])
                      for i in range(1, size + 1)]

    def __getitem__(self, index: int) -> BrokerNode:
        return self.nodes[index]

    def start(self, timeout: float = 30.0, followers: int | None = None) -> BrokerNode:
        """Start the nodes one after the other (the first leads); wait until a leader
        serves and ``followers`` (default: all others) are in its in-sync replicas."""
        for node in self.nodes:
            if not node.running:
                node.start()
                if node is self.nodes[0]:
                    self.wait_leader(timeout)
        return self.wait_stable(timeout, followers)

    def leader(self) -> BrokerNode | None:
        found = [n for n in self.nodes if n.running and n.is_leader()]
        return found[0] if len(found) == 1 else None

    def wait_leader(self, timeout: float = 30.0, not_: BrokerNode | None = None) -> BrokerNode:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader is not not_:
                return leader
            for node in self.nodes:
                if node.proc is not None and node.proc.poll() not in (None, -9, -15):
                    raise AssertionError(f"{node.name} exited with {node.proc.returncode}:\n"
                                         + node.log_text()[-3000:])
            time.sleep(0.1)
        raise AssertionError("no leader in time:\n" + self.logs())

    def status(self, via: BrokerNode | None = None) -> dict[str, Any]:
        node = via or next(n for n in self.nodes if n.running)
        code, body = node.get("/api/burrowmq/cluster")
        assert code == 200, body
        return body  # type: ignore[no-any-return]

    def wait_stable(self, timeout: float = 30.0, followers: int | None = None) -> BrokerNode:
        """A leader, with ``followers`` others in the ISR (default: every running node)."""
        deadline = time.monotonic() + timeout
        want = followers if followers is not None else \
            sum(1 for n in self.nodes if n.running) - 1
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                with contextlib.suppress(OSError, AssertionError):
                    isr = self.status(leader)["isr"]
                    if len(isr) >= want + 1 and leader.name in isr:
                        return leader
            time.sleep(0.1)
        raise AssertionError("the cluster did not settle:\n" + self.logs())

    def logs(self, tail: int = 2500) -> str:
        return "\n".join(f"---- {n.name} (pid {n.proc.pid if n.proc else '-'}):\n"
                         f"{n.log_text()[-tail:]}" for n in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

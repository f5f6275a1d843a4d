"""The ``cluster`` scenario: three nodes on one etcd against one node, in the same run.

1. Starts an etcd of the bench's own (``etcd`` on PATH: Debian's ``etcd-server``; temporary
   data dir, free loopback ports) and three of our nodes in cluster mode with the *default*
   lease TTL, min_insync and timeouts (``python -m broker --etcd ...``, each with its own data
   dir and ports); waits until one leads with both others in sync.
2. Confirmed throughput: the ``confirms-only`` and ``confirms-consumer`` floods, alternating
   rounds between the single node (the run's ``ours``) and the cluster's leader (clients
   connect to the leader: the figure is the replication's cost, not a follower's splice's).
   Confirmed msg/s and confirm p50 / p99; target: three nodes ≥ 50 % of one.
3. Failover: a publisher publishes persistent messages one at a time with confirms, to each
   node in turn, reconnecting on any error; the leader is SIGKILLed ``CLUSTER_KILLS`` times
   (3), each time restarted once the cluster has a new leader; failover = kill → the first
   confirm on a connection opened after the kill. Target ≤ 5 s with the default lease (3 s).
   Then every confirmed message must be in the queue: drained and counted (target: 0 lost).
Stops every process it started by PID (process groups) and removes its directories.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.brokerproc import BrokerError, SpawnedBroker, free_port
from bench.common import Log, Options
from bench.rounds import FLOODS, BrokerRef, RoundResult, run_round, wait_quiet

ETCD = shutil.which("etcd")
SPECS = tuple(s for s in FLOODS if s.name in ("confirms-only", "confirms-consumer"))
KILLS = int(os.environ.get("CLUSTER_KILLS", "3"))
AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()


class Etcd:
    """One etcd member for the run (fsync on, as in production)."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-etcd-"))
        self.port, self.peer = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        assert ETCD is not None
        url, peer = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.peer}"
        with open(self.workdir / "etcd.log", "wb") as log:
            self.proc = subprocess.Popen(
                [ETCD, "--name", "bench", "--data-dir", str(self.workdir / "data"),
                 "--listen-client-urls", url, "--advertise-client-urls", url,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", f"bench={peer}", "--log-level", "warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(url + "/health", timeout=0.5) as answer:
                    if json.loads(answer.read()).get("health") == "true":
                        return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BrokerError("etcd did not start: "
                                  + (self.workdir / "etcd.log").read_text()[-1000:])
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)


class ClusterNode(SpawnedBroker):
    """One of our nodes in cluster mode, with its management port known (leader checks)."""

    def __init__(self, index: int, etcd: str, cluster: str) -> None:
        super().__init__()
        self.name = f"rabbit@bench{index}"
        self.etcd = etcd
        self.cluster = cluster
        self.http_port = free_port()

    def command(self) -> list[str]:
        return [sys.executable, "-m", "broker", "--host", self.host, "--port", str(self.port),
                "--data-dir", str(self.data_dir), "--management-port", str(self.http_port),
                "--prometheus-port", "0", "--etcd", self.etcd, "--node-name", self.name,
                "--cluster-name", self.cluster, "--replication-port", "0"]

    def get(self, path: str) -> tuple[int, Any]:
        request = urllib.request.Request(f"http://{self.host}:{self.http_port}{path}",
                                         headers={"Authorization": AUTH})
        try:
            with urllib.request.urlopen(request, timeout=2) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except (OSError, ValueError):
            return 0, None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class ClusterResult:
    rounds: dict[str, dict[str, list[RoundResult]]] = field(default_factory=dict)
    failovers: list[float] = field(default_factory=list)
    confirmed: int = 0
    lost: int | None = None
    notes: list[str] = field(default_factory=list)

    def median(self, scenario: str, target: str, figure: str) -> float | None:
        vals = [r.values.get(figure) for r in self.rounds.get(scenario, {}).get(target, [])]
        present = [v for v in vals if v is not None]
        return statistics.median(present) if present else None


def leader_of(nodes: list[ClusterNode]) -> ClusterNode | None:
    found = [n for n in nodes if n.alive and n.get("/api/health/checks/leader")[0] == 200]
    return found[0] if len(found) == 1 else None


def wait_stable(nodes: list[ClusterNode], timeout: float = 60.0) -> ClusterNode:
    """Until one node leads with every running node in its in-sync replicas."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader = leader_of(nodes)
        if leader is not None:
            code, status = leader.get("/api/burrowmq/cluster")
            if code == 200 and len(status["isr"]) == sum(1 for n in nodes if n.alive):
                return leader
        time.sleep(0.1)
    raise BrokerError("the cluster did not settle; leader log tail:\n"
                      + "\n".join(n.log_tail(10) for n in nodes))


def run_cluster(single: BrokerRef | None, opts: Options, log: Log) -> ClusterResult:
    out = ClusterResult()
    if ETCD is None:
        out.notes.append("cluster: skipped, etcd is not installed (apt-get install etcd-server)")
        return out
    with contextlib.ExitStack() as stack:
        if single is None:
            ours = stack.enter_context(SpawnedBroker(opts.broker_cmd))
            ours.start()
            ours.wait_ready(opts.ready_timeout)
            single = BrokerRef("ours", ours.url, ours.pid, "ours", ours)
        etcd = Etcd()
        stack.callback(etcd.stop)
        etcd.start()
        cluster = f"bench{os.getpid()}"
        nodes = [ClusterNode(i, etcd.endpoint, cluster) for i in (1, 2, 3)]
        for node in nodes:
            stack.callback(node.stop)
        for node in nodes:
            node.start()
            node.wait_ready(opts.ready_timeout)  # a follower handshakes through to the leader
        leader = wait_stable(nodes)
        log(f"[cluster] etcd pid {etcd.proc.pid if etcd.proc else '?'}; nodes "
            + ", ".join(f"{n.name} pid {n.pid} port {n.port}" for n in nodes)
            + f"; leader {leader.name}")
        _rounds(single, nodes, opts, log, out)
        _failovers(nodes, log, out)
    return out


def _rounds(single: BrokerRef, nodes: list[ClusterNode], opts: Options, log: Log,
            out: ClusterResult) -> None:
    for spec in SPECS:
        per = out.rounds.setdefault(spec.name, {"1 node": [], "3 nodes": []})
        for rnd in range(1, opts.rounds + 1):
            leader = wait_stable(nodes)
            targets = {"1 node": single,
                       "3 nodes": BrokerRef("3 nodes", leader.url, leader.pid, "cluster")}
            for name, ref in targets.items():
                wait_quiet([single, *(BrokerRef(n.name, n.url, n.pid, "cluster")
                                      for n in nodes)])
                try:
                    res = run_round(ref, spec, opts, log)
                except (OSError, BrokerError, TimeoutError) as exc:
                    res = RoundResult(notes=[f"round failed: {type(exc).__name__}: {exc}"])
                per[name].append(res)
                out.notes.extend(f"cluster {spec.name} round {rnd} on {name}: {n}"
                                 for n in res.notes)
                v = res.values
                log(f"  cluster {spec.name} #{rnd} {name}: confirmed "
                    f"{(v.get('in') or 0) / 1000:.1f}k/s p50/p99 {v.get('p50') or 0:.1f}/"
                    f"{v.get('p99') or 0:.1f} ms")


class _Publisher(threading.Thread):
    """Confirmed publishes, one at a time, to each node in turn; records when each connection
    opened and when each confirm came."""

    def __init__(self, nodes: list[ClusterNode], queue: str) -> None:
        super().__init__(daemon=True)
        self.nodes = nodes
        self.queue = queue
        self.stop_event = threading.Event()
        self.confirms: list[tuple[float, float, str]] = []  # (connected at, confirmed at, id)
        self.lock = threading.Lock()

    def run(self) -> None:
        import pika  # type: ignore[import-untyped]  # the test extra; no stubs

        seq, turn = 0, 0
        while not self.stop_event.is_set():
            node = self.nodes[turn % len(self.nodes)]
            turn += 1
            try:
                conn = pika.BlockingConnection(pika.URLParameters(
                    f"amqp://guest:guest@{node.host}:{node.port}/%2F?connection_attempts=1"
                    "&socket_timeout=2&blocked_connection_timeout=5"))
                opened = time.monotonic()
                channel = conn.channel()
                channel.queue_declare(self.queue, durable=True)
                channel.confirm_delivery()
                while not self.stop_event.is_set():
                    seq += 1
                    channel.basic_publish("", self.queue, str(seq).encode(),
                                          pika.BasicProperties(delivery_mode=2))
                    with self.lock:
                        self.confirms.append((opened, time.monotonic(), str(seq)))
                conn.close()
            except Exception:  # any failure: the next node
                time.sleep(0.05)

    def first_confirm_after(self, t0: float) -> float | None:
        with self.lock:
            found = [c for o, c, _ in self.confirms if o > t0 and c > t0]
        return min(found) if found else None


def _failovers(nodes: list[ClusterNode], log: Log, out: ClusterResult) -> None:
    queue = f"bench.failover.{os.getpid()}"
    publisher = _Publisher(nodes, queue)
    publisher.start()
    try:
        for kill in range(1, KILLS + 1):
            leader = wait_stable(nodes)
            time.sleep(1.0)  # some confirms through this leader first
            t0 = time.monotonic()
            leader.terminate(signal.SIGKILL)
            deadline = t0 + 60
            while (first := publisher.first_confirm_after(t0)) is None:
                if time.monotonic() > deadline:
                    out.notes.append(f"cluster failover {kill}: no confirm 60 s after the kill")
                    break
                time.sleep(0.01)
            if first is not None:
                out.failovers.append(first - t0)
                log(f"  cluster failover {kill}: {leader.name} killed, first confirm through "
                    f"the new leader after {first - t0:.2f} s")
            leader.start()
            leader.wait_ready(60)
        wait_stable(nodes)
    finally:
        publisher.stop_event.set()
        publisher.join(30)
    with publisher.lock:
        confirmed = {c[2] for c in publisher.confirms}
    out.confirmed = len(confirmed)
    try:
        out.lost = len(confirmed - _drain(wait_stable(nodes), queue))
    except Exception as exc:  # a drain that fails says nothing about losses
        out.notes.append(f"cluster drain failed: {type(exc).__name__}: {exc}")
    log(f"  cluster: {out.confirmed} messages confirmed across {KILLS} kills, "
        f"{out.lost} lost")


def _drain(leader: ClusterNode, queue: str) -> set[str]:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(
        f"amqp://guest:guest@{leader.host}:{leader.port}/%2F"))
    channel = conn.channel()
    channel.basic_qos(prefetch_count=1000)
    seen: set[str] = set()
    for method, _props, body in channel.consume(queue, inactivity_timeout=2.0):
        if method is None:
            break
        seen.add(body.decode())
        channel.basic_ack(method.delivery_tag)
    channel.cancel()
    channel.queue_delete(queue)
    conn.close()
    return seen

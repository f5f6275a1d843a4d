"""The benchmark's own pieces: window bookkeeping, confirm accounting, /proc readers, profile
summaries, the report, one short flood round against a spawned broker, and the bench's own
RabbitMQ started and stopped by PID. Nothing here asserts a speed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from outside import missing

from bench.amqp import Connection
from bench.brokerproc import SpawnedBroker, cpu_seconds, machine_busy_seconds, tree_cpu_seconds
from bench.common import Options
from bench.counting import Confirms, Deliveries
from bench.flood import FloodJob, Window
from bench.profile import classify, parse_raw, summarize
from bench.rabbit import RABBITMQ_SERVER, SpawnedRabbit
from bench.report import render
from bench.rounds import FLOODS, BrokerRef, RoundResult, run_round
from bench.scenarios import RunResult


def test_window_counts_between_its_edges() -> None:
    win = Window(100.0, FloodJob(url="amqp://x/", role="consumer", queue="q", warmup=2.0,
                                 duration=8.0))
    assert not win.tick(101.0, 50)  # before the window: nothing recorded
    assert not win.tick(102.5, 200)  # opens: (102.5, 200)
    assert not win.tick(105.0, 500)
    assert win.tick(108.5, 800)  # closes: (108.5, 800)
    assert win.result() == {"window_s": 6.0, "in_window": 600, "rate": 100.0}


def test_confirms_single_multiple_and_nack_are_each_counted_once() -> None:
    conf = Confirms()
    conf.sent(1, 10, 1.0)
    conf.settle(3, False, False, 1.5, True)  # single, out of order
    conf.settle(2, True, False, 2.0, True)  # multiple up to 2: tags 1, 2
    conf.settle(3, True, False, 2.0, True)  # already resolved: nothing new
    conf.settle(5, True, True, 3.0, False)  # nack 4, 5; not recorded
    conf.settle(5, False, False, 3.0, True)  # duplicate
    assert conf.resolved == 5
    assert conf.nacked == 2
    assert conf.watermark == 5
    assert sorted(conf.latencies) == [0.5, 1.0, 1.0]
    conf.sent(70000, 3, 4.0)  # beyond the first allocation: the array grows
    assert conf.send_ts[70002] == 4.0


def test_proc_cpu_readers() -> None:
    sum(i * i for i in range(200_000))  # burn a little CPU
    assert cpu_seconds(os.getpid()) > 0
    assert tree_cpu_seconds(os.getpid()) >= cpu_seconds(os.getpid())
    assert machine_busy_seconds() > 0


def test_profile_summary_charges_the_innermost_path(tmp_path: Path) -> None:
    raw = tmp_path / "p.txt"
    raw.write_text(
        "thread (1): MainThread;Runner.run (asyncio/runners.py:118);"
        "Session.data_received (broker/session.py:76);Channel.on_publish (broker/channel.py:3);"
        "Queue.publish (broker/queue.py:9);Queue.dispatch (broker/queue.py:5);"
        "Channel.deliver (broker/channel.py:7) 3\n"
        "thread (1): MainThread;Runner.run (asyncio/runners.py:118);"
        "Session.data_received (broker/session.py:76);Channel.on_publish (broker/channel.py:3) 1\n"
        "thread (2): uvloop_0;_worker (concurrent/futures/thread.py:81) 50\n"
    )
    stacks = parse_raw(raw)
    assert len(stacks) == 2  # the executor thread is left out
    assert classify(stacks[0][0]) == "deliver: dispatch + encode"
    assert classify(stacks[1][0]) == "publish: route + enqueue"
    text = summarize(stacks, {"in": 1000.0, "out": 1000.0, "cpu": 1.0, "window_s": 1.0})
    assert any(line.split()[-2:] == ["75.0%", "750.00"] and "deliver" in line
               for line in text.splitlines())
    assert "Channel.deliver (broker/channel.py)" in text


def test_report_renders_the_issue_table() -> None:
    spec = next(s for s in FLOODS if s.name == "no-ack")
    run = RunResult(brokers=[BrokerRef("ours", None, None, "ours"),  # type: ignore[arg-type]
                             BrokerRef("rabbitmq", None, None, "rabbitmq")])  # type: ignore[arg-type]
    run.rounds[spec.name] = {
        "ours": [RoundResult(values={"in": 100_000.0, "out": 60_000.0}),
                 RoundResult(values={"in": 110_000.0, "out": 66_000.0}),
                 RoundResult(values={"in": 90_000.0, "out": 70_000.0})],
        "rabbitmq": [RoundResult(values={"in": 117_000.0, "out": 115_000.0})],
    }
    text = render(run, Options(), [spec.name])
    row = next(line for line in text.splitlines() if line.startswith("| transient, no-ack"))
    assert [c.strip() for c in row.strip("|").split("|")] == [
        "transient, no-ack", "117k / 115k", "100k / 66k", "0.57"]


def test_a_short_flood_round_against_our_broker() -> None:
    spec = next(s for s in FLOODS if s.name == "manual-ack")
    opts = Options(duration=2.0, warmup=0.5, timeout=30.0)
    with SpawnedBroker() as broker:
        broker.start()
        broker.wait_ready(30.0)
        res = run_round(BrokerRef("ours", broker.url, broker.pid, "ours", broker), spec, opts,
                        lambda _m: None)
    assert res.notes == []
    v = res.values
    assert v["in"] and v["in"] > 0
    assert v["out"] and v["out"] > 0
    assert v["cpu"] is not None and v["cpu"] > 0
    assert v["backlog"] is not None and v["rss"] is not None
    consumer = res.workers["consumer0"]
    assert consumer["acks_sent"] == consumer["messages"]  # every delivery acked on its own
    assert consumer["body_bytes"] == consumer["messages"] * opts.size


def test_own_rabbitmq_starts_on_free_ports_and_stops_by_pid() -> None:
    if not os.access(RABBITMQ_SERVER, os.X_OK):
        missing(f"{RABBITMQ_SERVER} is not installed (apt-get install rabbitmq-server)")
    rabbit = SpawnedRabbit()
    try:
        rabbit.start()
        rabbit.wait_ready(60.0)
        with Connection(rabbit.url) as conn:
            assert conn.server_properties["product"] == "RabbitMQ"
        assert rabbit.port != 5672
    finally:
        rabbit.stop()
    assert rabbit.proc is not None and rabbit.proc.poll() is not None
    assert rabbit.epmd is not None and rabbit.epmd.poll() is not None
    assert not Path(rabbit.workdir).exists()
    assert shutil.which("epmd")


def test_report_renders_the_cluster_table() -> None:
    from bench.cluster import ClusterResult

    cluster = ClusterResult(failovers=[3.1, 3.4, 2.9], confirmed=1282, lost=0)
    for name in ("confirms-only", "confirms-consumer"):
        cluster.rounds[name] = {
            "1 node": [RoundResult(values={"in": 20_000.0, "p50": 10.0, "p99": 40.0})],
            "3 nodes": [RoundResult(values={"in": 12_000.0, "p50": 18.0, "p99": 70.0})]}
    run = RunResult(brokers=[BrokerRef("ours", None, None, "ours")],  # type: ignore[arg-type]
                    cluster=cluster)
    text = render(run, Options(), ["cluster"])
    row = next(line for line in text.splitlines()
               if line.startswith("| confirms-only") and "3 nodes" in line)
    assert [c.strip() for c in row.strip("|").split("|")] == [
        "confirms-only", "3 nodes", "12,000", "18.0 / 70.0", "0.60"]
    assert "3 kills, median 3.10 s, max 3.40 s (target ≤ 5 s); 1,282 confirmed, 0 lost" in text


def test_deliveries_count_whole_frames_and_keep_the_tail() -> None:
    from pamqp import body, commands, frame, header

    def message(tag: int, priority: int) -> bytes:
        props = commands.Basic.Properties(priority=priority)
        return (frame.marshal(commands.Basic.Deliver("c", tag, False, "", "q"), 1)
                + frame.marshal(header.ContentHeader(0, 3, props), 1)
                + frame.marshal(body.ContentBody(b"abc"), 1))

    data = message(1, 4) + message(2, 7)
    got = Deliveries(ack=True, priorities=True)
    off, tags = got.feed(data[:-3])  # the last body frame is cut short
    assert (got.count, tags, got.body_bytes, got.expected_bytes) == (2, [1, 2], 3, 6)
    off2, tags2 = got.feed(data[off:])
    assert (off + off2, tags2, got.body_bytes) == (len(data), [], 6)
    assert list(got.prios) == [4, 7]
    assert Deliveries(ack=False).feed(data)[1] == []

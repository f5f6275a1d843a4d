"""Command line entry point: ``python -m bench [options]`` (``make bench BENCH_ARGS=...``).

By default spawns our broker on a free loopback port with a temporary data dir and runs the
default scenarios (the six flood scenarios, backlog-rss, idle-rss). ``--rabbitmq`` also
starts a RabbitMQ of the bench's own (``bench.rabbit``), ``--compare-url`` adds an already
running broker; flood rounds alternate between all of them and the tables compare them.
Progress goes to stderr, the tables (or ``--json``) to stdout.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from bench.brokerproc import DEFAULT_CMD
from bench.common import Options
from bench.rabbit import RABBITMQ_SERVER
from bench.report import render, to_json
from bench.scenarios import ALL_SCENARIOS, DEFAULT_SCENARIOS, Plan, run_all


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="AMQP 0-9-1 broker benchmark: PerfTest-style floods from raw-socket "
        "clients in separate processes, compared against other brokers in the same run.",
    )
    p.add_argument("--url", action="append", default=[],
                   help="benchmark this running broker instead of spawning ours (repeatable)")
    p.add_argument("--compare-url", action="append", default=[],
                   help="also benchmark this running broker (repeatable)")
    p.add_argument("--rabbitmq", action="store_true",
                   help="also start a RabbitMQ of our own (temp dir, free ports) to compare")
    p.add_argument("--rabbitmq-server", default=RABBITMQ_SERVER,
                   help="rabbitmq-server script for --rabbitmq (default %(default)s)")
    p.add_argument("--with-asyncio", action="store_true",
                   help="also run ours on asyncio's event loop instead of uvloop (ours-asyncio)")
    p.add_argument("--scenario", action="append", choices=[*ALL_SCENARIOS, "all", "default"],
                   help=f"repeatable; default: {' '.join(DEFAULT_SCENARIOS)}")
    p.add_argument("--rounds", type=int, default=3, help="rounds per flood scenario and broker")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per round")
    p.add_argument("--warmup", type=float, default=2.0,
                   help="seconds at the start of each round left out of the rates")
    p.add_argument("--size", type=int, default=1024, help="body size in bytes")
    p.add_argument("--batch", type=int, default=500, help="messages per pre-encoded batch")
    p.add_argument("--prefetch", type=int, default=100, help="manual-ack consumers' prefetch")
    p.add_argument("--confirm-window", type=int, default=500)
    p.add_argument("--backlog-messages", type=int, default=1_000_000,
                   help="messages per queue for backlog-rss, lazy-backlog, stream, delayed")
    p.add_argument("--backlog-kind", action="append",
                   choices=["durable", "transient", "priority"],
                   help="backlog-rss queue kinds (repeatable; default all three)")
    p.add_argument("--cold-starts", type=int, default=5)
    p.add_argument("--timeout", type=float, default=300.0, help="socket timeout, seconds")
    p.add_argument("--ready-timeout", type=float, default=30.0,
                   help="broker start / worker ready timeout, seconds")
    p.add_argument("--broker-cmd", default=DEFAULT_CMD,
                   help="command template for our broker (placeholders {python} {host} "
                   "{port} {data_dir}); default: %(default)s")
    p.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    p.add_argument("--json-out", metavar="FILE", help="also write the JSON document to FILE")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.duration <= args.warmup or args.warmup < 0:
        p.error("--rounds must be >= 1 and --duration > --warmup >= 0")
    if args.size < 0 or args.batch < 1 or args.prefetch < 0 or args.backlog_messages < 1:
        p.error("--size/--prefetch must be >= 0, --batch/--backlog-messages >= 1")
    return args


def select_scenarios(chosen: list[str] | None) -> list[str]:
    wanted = set(chosen or DEFAULT_SCENARIOS)
    if "all" in wanted:
        wanted |= set(ALL_SCENARIOS)
    if "default" in wanted:
        wanted |= set(DEFAULT_SCENARIOS)
    return [s for s in ALL_SCENARIOS if s in wanted]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the ExitStack: every started broker is stopped


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args(argv)
    scenarios = select_scenarios(args.scenario)
    opts = Options(
        size=args.size, batch=args.batch, prefetch=args.prefetch,
        confirm_window=args.confirm_window, cold_starts=args.cold_starts, timeout=args.timeout,
        ready_timeout=args.ready_timeout, broker_cmd=args.broker_cmd,
        backlog_messages=args.backlog_messages, rounds=args.rounds, duration=args.duration,
        warmup=args.warmup,
        backlog_kinds=tuple(args.backlog_kind or ("durable", "transient", "priority")),
    )
    plan = Plan(urls=args.url, compare_urls=args.compare_url, rabbitmq=args.rabbitmq,
                rabbitmq_server=args.rabbitmq_server, with_asyncio=args.with_asyncio)
    try:
        run = run_all(plan, scenarios, opts, log)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(to_json(run, opts, scenarios), fh, indent=2)
    if args.json:
        print(json.dumps(to_json(run, opts, scenarios), indent=2))
    else:
        print(render(run, opts, scenarios))
    return 1 if run.failed() else 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line entry point: ``python -m bench [options]``.

By default spawns our broker (``<python> -m broker``) on a free loopback port
with a temporary data dir, runs the default scenarios (no-ack, manual-ack,
cold-start, idle-rss), prints a table and stops the broker (``lazy-backlog``
spawns a broker of its own, which it restarts on the same data dir). ``--url`` targets
an already running broker instead; ``--compare-url`` adds brokers to compare
against, with a ratio column first-target/other for every figure.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from bench.amqp import AMQPUrl
from bench.report import render_table, to_json
from bench.scenarios import (
    ALL_SCENARIOS,
    DEFAULT_CMD,
    DEFAULT_SCENARIOS,
    Options,
    Target,
    TargetResult,
    run_target,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="AMQP 0-9-1 broker benchmark (raw-socket client, separate processes).",
    )
    parser.add_argument(
        "--url",
        action="append",
        default=[],
        help="benchmark this already-running broker instead of spawning ours (repeatable)",
    )
    parser.add_argument(
        "--compare-url",
        action="append",
        default=[],
        help="also benchmark this broker and print ratios against the first target (repeatable)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[*ALL_SCENARIOS, "all", "default"],
        help=f"scenario to run (repeatable); default: {', '.join(DEFAULT_SCENARIOS)}",
    )
    parser.add_argument(
        "-n",
        "--messages",
        type=int,
        help="messages per throughput scenario (default 200000; lazy-backlog, stream: "
        "1000000)",
    )
    parser.add_argument("--size", type=int, default=1024, help="body size in bytes")
    parser.add_argument("--batch", type=int, default=500, help="messages per sendall")
    parser.add_argument(
        "--prefetch", type=int, help="consumer prefetch (default 100; lazy-backlog drain: 1000)"
    )
    parser.add_argument("--confirm-window", type=int, default=500)
    parser.add_argument("--cold-starts", type=int, default=5)
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="per-worker socket timeout, seconds"
    )
    parser.add_argument(
        "--ready-timeout", type=float, default=30.0, help="broker start / consumer ready timeout"
    )
    parser.add_argument(
        "--broker-cmd",
        default=DEFAULT_CMD,
        help="command template for spawning our broker (placeholders {python} {host} "
        "{port} {data_dir}); default: %(default)s",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if (args.messages or 1) < 1 or args.size < 0 or args.batch < 1 or (args.prefetch or 0) < 0:
        parser.error("--messages/--batch must be >= 1, --size/--prefetch >= 0")
    return args


def select_scenarios(chosen: list[str] | None) -> list[str]:
    wanted = set(chosen or DEFAULT_SCENARIOS)
    if "all" in wanted:
        wanted |= set(ALL_SCENARIOS)
    if "default" in wanted:
        wanted |= set(DEFAULT_SCENARIOS)
    return [s for s in ALL_SCENARIOS if s in wanted]


def build_targets(urls: list[str], compare: list[str]) -> list[Target]:
    targets = [Target("ours")] if not urls else []
    seen: set[str] = {t.name for t in targets}
    for raw in [*urls, *compare]:
        url = AMQPUrl.parse(raw)
        name = f"{url.host}:{url.port}"
        suffix = 2
        while name in seen:
            name, suffix = f"{url.host}:{url.port}#{suffix}", suffix + 1
        seen.add(name)
        targets.append(Target(name, url))
    return targets


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the `with SpawnedBroker` blocks: broker stopped


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args(argv)
    scenarios = select_scenarios(args.scenario)
    defaults = Options()
    opts = Options(
        messages=args.messages or defaults.messages,
        backlog_messages=args.messages or defaults.backlog_messages,
        size=args.size,
        batch=args.batch,
        prefetch=defaults.prefetch if args.prefetch is None else args.prefetch,
        backlog_prefetch=defaults.backlog_prefetch if args.prefetch is None else args.prefetch,
        confirm_window=args.confirm_window,
        cold_starts=args.cold_starts,
        timeout=args.timeout,
        ready_timeout=args.ready_timeout,
        broker_cmd=args.broker_cmd,
    )
    targets = build_targets(args.url, args.compare_url)
    results: list[TargetResult] = []
    for target in targets:
        try:
            results.append(run_target(target, scenarios, opts, log))
        except KeyboardInterrupt:
            log("interrupted")
            return 130
    if args.json:
        print(json.dumps(to_json(targets, results, opts, scenarios), indent=2))
    else:
        print(render_table(targets, results, opts, scenarios))
    bad_words = ("error", "failed", "died")
    failed = any(word in note for r in results for note in r.notes for word in bad_words)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

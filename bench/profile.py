"""Profile our broker under a flood: ``python -m bench.profile [options]``.

For each chosen flood scenario a fresh broker of ours is spawned and one round is run
(``bench.rounds``); while the measuring window is open the broker is sampled by py-spy
(``py-spy record --pid <broker> --format raw``, main thread only), or, with ``--cprofile``,
the broker runs under ``python -m cProfile`` for its whole life (it exits cleanly on SIGTERM,
which writes the stats). The raw data goes to ``--out`` (default ``./profiles``, ignored by
git); the summary printed (and written next to it as ``<scenario>.summary.txt``) has:

- the round's figures (in/out msg/s, broker CPU cores) so shares turn into per-message costs;
- the CPU split by path: each sample is charged to the innermost frame that names a path
  (deliver, ack, publish, frame parsing, socket write...), see ``PATHS``;
- per-message cost of each path in µs: share x broker CPU seconds in the window ÷ messages
  (published messages for publish/parse, delivered for deliver/ack/write);
- the top functions by self time (the leaf of a sample) and total time (anywhere in it).

``python -m bench.profile --summarize FILE.txt`` summarizes an existing raw file again.
"""

from __future__ import annotations

import argparse
import collections
import json
import pstats
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.brokerproc import DEFAULT_CMD, SpawnedBroker
from bench.common import Options
from bench.rounds import FLOOD_NAMES, FLOODS, BrokerRef, RoundResult, run_round

# (path name, which count it is per, frame names: "Class.method" or "function" as py-spy
# prints them). A sample goes to the first path, walking from its leaf to its root, that
# one of its frames belongs to.
PATHS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("deliver: dispatch + encode", "out", (
        "Queue.dispatch", "Queue._dispatch_by_priority", "Channel.deliver",
        "Queue.run_scheduled")),
    ("ack: settle", "out", ("Channel.on_basic_ack", "Channel._settle", "Channel._settle_now")),
    ("publish: route + enqueue", "in", (
        "Channel.on_publish", "Channel._route", "Queue.publish", "VirtualHost.route")),
    ("confirms", "in", ("Session.flush_confirms", "Channel.flush_confirms")),
    ("frame parsing + session", "in", (
        "ConnectionMachine.receive_data", "ConnectionMachine.events", "Session.data_received",
        "AMQPProtocol.data_received")),
    ("socket write (flush)", "out", ("AMQPProtocol._flush",)),
    ("storage (sync, paging)", "in", ()),  # frames under storage/ not claimed above
)
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse_raw(path: Path) -> list[tuple[list[str], int]]:
    """py-spy raw (collapsed) stacks of the main thread: [(frames root->leaf, count)].

    With ``--threads`` each stack starts with ``thread (<tid>): <name>``; other threads
    (the default executor's, idle) are left out.
    """
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames[0].startswith("thread "):
            if not frames[0].endswith("MainThread"):
                continue
            frames = frames[1:]
        stacks.append(([_func(f) for f in frames], int(count)))
    return stacks


def _func(frame: str) -> str:
    """``Class.method (broker/queue.py:123)`` -> ``Class.method (broker/queue.py)``."""
    m = FRAME.match(frame)
    if m is None:
        return frame
    file = m["file"]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{m['func']} ({file})"


def _name(func: str) -> str:
    return func.split(" (", 1)[0]


def classify(frames: list[str]) -> str:
    for frame in reversed(frames):
        name = _name(frame)
        for path, _per, names in PATHS:
            if name in names:
                return path
    if any("storage/" in f for f in frames):
        return "storage (sync, paging)"
    return "event loop + other"


def summarize(stacks: list[tuple[list[str], int]], figures: dict[str, Any] | None,
              top: int = 25) -> str:
    total = sum(c for _, c in stacks) or 1
    self_t: collections.Counter[str] = collections.Counter()
    total_t: collections.Counter[str] = collections.Counter()
    paths: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        if frames:
            self_t[frames[-1]] += count
        for f in set(frames):
            total_t[f] += count
        paths[classify(frames)] += count
    lines = [f"samples: {total}"]
    cpu_s = msgs_in = msgs_out = None
    if figures:
        v = figures
        window = v.get("window_s") or 0.0
        cpu_s = (v.get("cpu") or 0.0) * window
        msgs_in = (v.get("in") or 0.0) * window
        msgs_out = (v.get("out") or 0.0) * window
        lines.append(f"round: in {v.get('in') or 0:,.0f} msg/s, out {v.get('out') or 0:,.0f} "
                     f"msg/s, broker {v.get('cpu') or 0:.2f} cores over {window:.1f} s")
    per = {p: per_ for p, per_, _ in PATHS}
    lines += ["", "CPU by path (innermost frame naming a path wins):",
              f"  {'path':34} {'share':>6}  {'µs/msg':>7}"]
    for path, count in paths.most_common():
        share = count / total
        cost = ""
        n = msgs_out if per.get(path) == "out" else msgs_in
        if cpu_s and n:
            cost = f"{share * cpu_s / n * 1e6:7.2f}"
        lines.append(f"  {path:34} {share:6.1%}  {cost:>7}")
    if cpu_s and (msgs_in or msgs_out):
        lines.append(f"  (all paths: {cpu_s / max(msgs_in or 0, msgs_out or 0, 1) * 1e6:.2f} "
                     "µs per message of the larger of in/out)")
    per_in = cpu_s / msgs_in * 1e6 if cpu_s and msgs_in else None
    per_out = cpu_s / msgs_out * 1e6 if cpu_s and msgs_out else None
    for title, counter in (("self", self_t), ("total", total_t)):
        lines += ["", f"top {top} by {title} time (µs per published / delivered message):"]
        for func, count in counter.most_common(top):
            share = count / total
            cost_in = f"{share * per_in:6.2f}" if per_in else "   n/a"
            cost_out = f"{share * per_out:6.2f}" if per_out else "   n/a"
            lines.append(f"  {share:6.1%} {cost_in} {cost_out}  {func}")
    return "\n".join(lines)


def summarize_cprofile(path: Path, top: int = 30) -> str:
    """Top functions by own time, per publish and per delivery (cProfile counts every call).

    The broker's own counts are the denominators: calls of ``Channel.on_publish`` (messages
    published) and of ``Channel.deliver`` (deliveries), over the broker's whole life.
    """
    stats = pstats.Stats(str(path))
    rows = []
    n_pub = n_del = 0
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (file, line, func), (_cc, ncalls, tt, ct, _callers) in raw.items():
        name = f"{func} ({_short(file)}:{line})"
        if func == "on_publish" and file.endswith("channel.py"):
            n_pub = ncalls
        if func == "deliver" and file.endswith("channel.py"):
            n_del = ncalls
        rows.append((tt, ct, ncalls, name))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows)
    p, d = max(n_pub, 1), max(n_del, 1)
    out = [f"cProfile, whole broker life ({total:.1f} s own time; the profiler roughly doubles "
           f"every cost): {n_pub:,} publishes, {n_del:,} deliveries",
           f"  {'own s':>6} {'share':>6} {'calls/pub':>9} {'µs/pub':>7} {'calls/del':>9} "
           f"{'µs/del':>7}  function"]
    for tt, _ct, ncalls, name in rows[:top]:
        out.append(f"  {tt:6.2f} {tt / total:6.1%} {ncalls / p:9.2f} {tt / p * 1e6:7.2f} "
                   f"{ncalls / d:9.2f} {tt / d * 1e6:7.2f}  {name}")
    return "\n".join(out)


def _short(file: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", "wt-bench/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def _figures(res: RoundResult, opts: Options) -> dict[str, Any]:
    return {**res.values, "window_s": opts.duration - opts.warmup, "notes": res.notes}


def profile_scenario(name: str, opts: Options, out: Path, args: argparse.Namespace) -> str:
    spec = next(s for s in FLOODS if s.name == name)
    raw = out / f"{name}.txt"
    cmd = opts.broker_cmd
    if args.cprofile:
        prof = out / f"{name}.prof"
        cmd = cmd.replace("{python} -m broker", f"{{python}} -m cProfile -o {prof} -m broker")
    spy: list[subprocess.Popen[bytes]] = []
    with SpawnedBroker(cmd) as broker:
        broker.start()
        broker.wait_ready(opts.ready_timeout)
        ref = BrokerRef("ours", broker.url, broker.pid, "ours", broker)

        def start_spy(seconds: float) -> None:
            if args.cprofile:
                return
            spy.append(subprocess.Popen(
                [args.py_spy, "record", "--pid", str(broker.pid), "--rate", str(args.rate),
                 "--duration", str(max(1, int(seconds))), "--format", "raw", "--threads",
                 "--output", str(raw), *(["--native"] if args.native else [])],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))

        res = run_round(ref, spec, opts, print, on_window=start_spy)
        for proc in spy:
            _, err = proc.communicate(timeout=opts.duration + 60)
            if proc.returncode:
                print(f"py-spy failed: {err.decode(errors='replace')}", file=sys.stderr)
    figures = _figures(res, opts)
    (out / f"{name}.json").write_text(json.dumps(figures, indent=2))
    if args.cprofile:
        text = summarize_cprofile(out / f"{name}.prof", args.top)
    else:
        text = summarize(parse_raw(raw), figures, args.top)
    text = f"== {name} ({spec.title})\n{text}"
    (out / f"{name}.summary{'.cprofile' if args.cprofile else ''}.txt").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    p.add_argument("--scenario", action="append", choices=FLOOD_NAMES,
                   help="repeatable; default: manual-ack and no-ack")
    p.add_argument("--duration", type=float, default=12.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    p.add_argument("--cprofile", action="store_true", help="cProfile instead of py-spy")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", default="profiles", help="directory for the raw data")
    p.add_argument("--py-spy", default=shutil.which("py-spy") or str(Path(sys.executable).parent
                                                                   / "py-spy"))
    p.add_argument("--broker-cmd", default=DEFAULT_CMD)
    p.add_argument("--summarize", metavar="FILE",
                   help="only summarize this py-spy raw file (.txt) or cProfile file (.prof)")
    args = p.parse_args(argv)
    if args.summarize:
        raw = Path(args.summarize)
        if raw.suffix == ".prof":
            print(summarize_cprofile(raw, args.top))
            return 0
        fig_path = raw.with_suffix(".json")
        figures = json.loads(fig_path.read_text()) if fig_path.exists() else None
        print(summarize(parse_raw(raw), figures, args.top))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    opts = replace(Options(), duration=args.duration, warmup=args.warmup,
                   broker_cmd=args.broker_cmd, timeout=120.0)
    for name in args.scenario or ["manual-ack", "no-ack"]:
        print(profile_scenario(name, opts, out, args), flush=True)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Result formatting: Markdown tables (flood summary and details, backlog RSS, extras) and JSON.

The first broker (ours, or the first ``--url``) is the reference: the summary's ratio column
is reference ÷ other broker for the scenario's headline figure (msg/s consumed, or confirmed
msg/s when there is no consumer), so > 1 means the reference is faster.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any

from bench.backlog import BACKLOG_METRICS
from bench.backlogrss import TARGET_MB, TITLES
from bench.cluster import SPECS as CLUSTER_SPECS
from bench.cluster import ClusterResult
from bench.common import Metric, Options
from bench.delayed import DELAYED_METRICS
from bench.rounds import FLOODS, FloodSpec
from bench.scenarios import FIGURES, RunResult
from bench.stream import STREAM_METRICS

EXTRA_METRICS = (
    Metric("cold-start.median", "cold start to open-ok (median)", "s", False),
    Metric("idle-rss.mb", "idle RSS", "MB", False),
    *BACKLOG_METRICS,
    *STREAM_METRICS,
    *DELAYED_METRICS,
)


def _k(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}"


def _f(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def _table(header: list[str], rows: list[list[str]], right_from: int = 1) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(
            c.rjust(widths[i]) if i >= right_from else c.ljust(widths[i])
            for i, c in enumerate(cells)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if i >= right_from else "-")
                          for i, w in enumerate(widths)) + "|"
    return [line(header), rule, *(line(r) for r in rows)]


def _in_out(run: RunResult, spec: FloodSpec, broker: str) -> str:
    i, o = run.median(spec.name, broker, "in"), run.median(spec.name, broker, "out")
    if not spec.consumers:
        return f"{_k(i)} confirmed/s"
    return f"{_k(i)} / {_k(o)}"


def flood_summary(run: RunResult) -> list[str]:
    """The issue's table: in / out per broker, and reference ÷ other for the headline."""
    names = [b.name for b in run.brokers]
    ref, others = names[0], names[1:]
    specs = [s for s in FLOODS if s.name in run.rounds]
    header = ["scenario", *(f"{n} in / out" for n in [*others, ref]),
              *(f"{ref} ÷ {n} (out)" for n in others)]
    rows = []
    for spec in specs:
        h = spec.headline
        row = [spec.title, *(_in_out(run, spec, n) for n in [*others, ref])]
        row += [_ratio(run.median(spec.name, ref, h), run.median(spec.name, n, h))
                for n in others]
        rows.append(row)
    return _table(header, rows)


def flood_details(run: RunResult) -> list[str]:
    header = ["scenario", "broker", "in msg/s", "out msg/s", "out per round", "backlog at end",
              "broker CPU cores", "machine busy cores", "bench clients cores", "RSS MB",
              "confirm p50 / p99 ms"]
    rows = []
    for spec in (s for s in FLOODS if s.name in run.rounds):
        for b in run.brokers:
            m = {f: run.median(spec.name, b.name, f) for f in FIGURES}
            per_round = [r.values.get(spec.headline) for r in run.rounds[spec.name][b.name]]
            lat = (f"{_f(m['p50'], '.1f')} / {_f(m['p99'], '.1f')}" if spec.confirms else "")
            rows.append([spec.name, b.name, _f(m["in"], ",.0f"), _f(m["out"], ",.0f"),
                         " ".join(_k(x) for x in per_round), _f(m["backlog"], ",.0f"),
                         _f(m["cpu"], ".2f"), _f(m["machine"], ".2f"), _f(m["clients"], ".2f"),
                         _f(m["rss"], ".0f"), lat])
    return _table(header, rows, right_from=2)


def backlog_table(run: RunResult) -> list[str]:
    header = ["queue kind", "broker", "messages", "fill msg/s", "RSS before MB", "RSS after MB",
              "growth MB", "peak growth MB", f"≤ {TARGET_MB:.0f} MB"]
    rows = []
    kinds = list(dict.fromkeys(k for per in run.backlog.values() for k in per))
    for kind in kinds:
        for b in run.brokers:
            r = run.backlog.get(b.name, {}).get(kind)
            if r is None:
                continue
            growth = r.get("growth")
            ok = "n/a" if growth is None else ("yes" if growth <= TARGET_MB else "no")
            rows.append([TITLES[kind], b.name, _f(r.get("depth"), ",.0f"),
                         _f(r.get("fill_rate"), ",.0f"), _f(r.get("rss_before"), ".0f"),
                         _f(r.get("rss_after"), ".0f"), _f(growth, ".0f"),
                         _f(r.get("peak_growth"), ".0f"), ok])
    return _table(header, rows, right_from=2)


def extras_table(run: RunResult) -> list[str]:
    names = [b.name for b in run.brokers]
    results = [run.extras.get(n) for n in names]
    present = [m for m in EXTRA_METRICS if any(r and m.key in r.values for r in results)]
    if not present:
        return []
    header = ["figure", "unit", *names]
    rows = []
    for m in present:
        vals = [r.values.get(m.key) if r else None for r in results]
        fmt = {"msg/s": ",.0f", "count": ",.0f", "s": ".3f", "ms": ".2f"}.get(m.unit, ".1f")
        rows.append([m.label + ("" if m.higher_is_better else " (lower is better)"), m.unit,
                     *(_f(v, fmt) for v in vals)])
    return _table(header, rows, right_from=2)


def cluster_table(result: ClusterResult) -> list[str]:
    """Rows for the report: per scenario, one node against three."""
    rows = []
    for spec in CLUSTER_SPECS:
        one = result.median(spec.name, "1 node", "in")
        three = result.median(spec.name, "3 nodes", "in")
        ratio = "n/a" if one is None or three is None or one == 0 else f"{three / one:.2f}"
        for name in ("1 node", "3 nodes"):
            p50 = result.median(spec.name, name, "p50")
            p99 = result.median(spec.name, name, "p99")
            rows.append([spec.name, name, _f(result.median(spec.name, name, "in"), ",.0f"),
                         f"{_f(p50, '.1f')} / {_f(p99, '.1f')}",
                         ratio if name == "3 nodes" else ""])
    lines = _table(["scenario", "nodes", "confirmed msg/s", "confirm p50 / p99 ms",
                    "3 ÷ 1 (≥ 0.50)"], rows, right_from=2)
    if result.failovers:
        lines += ["", f"failover (leader SIGKILL → first confirm through the new leader, "
                  f"default 3 s lease): {len(result.failovers)} kills, median "
                  f"{statistics.median(result.failovers):.2f} s, max "
                  f"{max(result.failovers):.2f} s (target ≤ 5 s); {result.confirmed:,} "
                  f"confirmed, {result.lost if result.lost is not None else 'n/a'} lost "
                  "(target 0)"]
    return lines


def render(run: RunResult, opts: Options, scenarios: list[str]) -> str:
    lines = [
        f"bench: {opts.rounds} rounds x {opts.duration:g} s per flood scenario and broker "
        f"(rates over the last {opts.duration - opts.warmup:g} s of each round, median of the "
        f"rounds), {opts.size} B bodies, prefetch {opts.prefetch}, confirm window "
        f"{opts.confirm_window}; brokers: "
        + ", ".join(f"{b.name} ({b.url})" for b in run.brokers),
        "",
    ]
    if run.rounds:
        lines += [*flood_summary(run), "", *flood_details(run), ""]
    if run.backlog:
        lines += [f"backlog RSS: {opts.backlog_messages:,} x {opts.size} B into one queue of "
                  "each kind, no consumer, fresh broker per kind", "",
                  *backlog_table(run), ""]
    extras = extras_table(run)
    if extras:
        lines += [*extras, ""]
    if run.cluster is not None and run.cluster.rounds:
        lines += ["cluster: three nodes (etcd, default lease and min_insync 2) against one, "
                  "clients on the leader; rounds alternate", "",
                  *cluster_table(run.cluster), ""]
    notes = [*run.notes, *(f"{n}: {note}" for n, r in run.extras.items() for note in r.notes)]
    if notes:
        lines += ["notes:", *(f"  - {n}" for n in notes)]
    return "\n".join(lines).rstrip()


def to_json(run: RunResult, opts: Options, scenarios: list[str]) -> dict[str, Any]:
    """JSON document: options, medians, every round's figures and worker reports, the rest."""
    doc: dict[str, Any] = {"options": asdict(opts), "scenarios": scenarios,
                           "brokers": [{"name": b.name, "url": str(b.url), "kind": b.kind,
                                        "pid": b.pid} for b in run.brokers],
                           "floods": {}, "backlog_rss": run.backlog, "extras": {},
                           "notes": run.notes}
    for scenario, per in run.rounds.items():
        doc["floods"][scenario] = {
            name: {"median": {f: run.median(scenario, name, f) for f in FIGURES},
                   "rounds": [asdict(r) for r in rounds]}
            for name, rounds in per.items()
        }
    for name, res in run.extras.items():
        doc["extras"][name] = {"values": res.values, "notes": res.notes, "details": res.details}
    if run.cluster is not None:
        c = run.cluster
        doc["cluster"] = {
            "floods": {scenario: {name: {"median": {f: c.median(scenario, name, f)
                                                    for f in ("in", "p50", "p99")},
                                         "rounds": [asdict(r) for r in rounds]}
                                  for name, rounds in per.items()}
                       for scenario, per in c.rounds.items()},
            "failover_s": c.failovers, "confirmed": c.confirmed, "lost": c.lost}
    return doc

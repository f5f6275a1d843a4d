"""Result formatting: a plain-text comparison table and a JSON document.

The first target's column is the reference: for every other target a
``first/other`` ratio column is printed (for "lower is better" figures such as
latency, RSS and cold start a ratio below 1 favours the first target).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from bench.scenarios import METRICS, Metric, Options, Target, TargetResult


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "msg/s":
        return f"{value:,.0f}"
    if unit == "count":
        return f"{value:,.0f}"
    if unit == "s":
        return f"{value:.3f}"
    if unit == "ms":
        return f"{value:.2f}"
    return f"{value:.1f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _metrics_present(results: list[TargetResult]) -> list[Metric]:
    return [m for m in METRICS if any(m.key in r.values for r in results)]


def render_table(
    targets: list[Target], results: list[TargetResult], opts: Options, scenarios: list[str]
) -> str:
    """Aligned text table: one row per figure, one column per target, plus ratios."""
    header = ["figure", "unit", "better"] + [t.name for t in targets]
    ref = targets[0].name
    header += [f"{ref}/{t.name}" for t in targets[1:]]
    rows = [header]
    for metric in _metrics_present(results):
        vals = [r.values.get(metric.key) for r in results]
        row = [metric.label, metric.unit, "higher" if metric.higher_is_better else "lower"]
        row += [fmt_value(v, metric.unit) for v in vals]
        row += [fmt_ratio(ratio(vals[0], v)) for v in vals[1:]]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        f"bench: {opts.messages:,} messages x {opts.size} B, batch {opts.batch}, "
        f"prefetch {opts.prefetch}, confirm window {opts.confirm_window}; "
        f"scenarios: {', '.join(scenarios)}",
    ]
    if "lazy-backlog" in scenarios:
        lines.append(
            f"lazy-backlog: {opts.backlog_messages:,} persistent messages x {opts.size} B, "
            f"drain prefetch {opts.backlog_prefetch}"
        )
    if "stream" in scenarios:
        lines.append(
            f"stream: {opts.backlog_messages:,} messages x {opts.size} B, 1 publisher with "
            f"confirms, then 3 consumers from first, prefetch {opts.backlog_prefetch}"
        )
    lines.append("")
    for i, row in enumerate(rows):
        cells = [
            cell.ljust(widths[j]) if j < 3 else cell.rjust(widths[j]) for j, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    for target, res in zip(targets, results, strict=True):
        if res.notes:
            lines.append("")
            lines.append(f"notes for {target.name} ({target.url or 'spawned'}):")
            lines.extend(f"  - {note}" for note in res.notes)
    return "\n".join(lines)


def to_json(
    targets: list[Target], results: list[TargetResult], opts: Options, scenarios: list[str]
) -> dict[str, Any]:
    """JSON-serialisable document with figures, ratios, notes and raw worker details."""
    ref = results[0].values if results else {}
    doc: dict[str, Any] = {
        "options": asdict(opts),
        "scenarios": scenarios,
        "metrics": {m.key: {"label": m.label, "unit": m.unit,
                            "higher_is_better": m.higher_is_better} for m in METRICS},
        "targets": [],
    }
    for target, res in zip(targets, results, strict=True):
        doc["targets"].append(
            {
                "name": target.name,
                "url": str(target.url) if target.url else None,
                "values": res.values,
                "ratio_first_over_this": {
                    key: ratio(ref.get(key), value) for key, value in res.values.items()
                },
                "notes": res.notes,
                "details": res.details,
            }
        )
    return doc

"""burrowmqadmin's output formats, as rabbitmqadmin's ``-f``: an ASCII table (default), tsv,
raw_json and pretty_json. Columns may name nested fields with dots (``queue.name``)."""

from __future__ import annotations

import json
from typing import Any  # Any: JSON values


def field(item: dict, column: str) -> Any:
    value: Any = item  # Any: a JSON value, nested as deep as the dotted column goes
    for part in column.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def render(rows: list[dict], columns: list[str], fmt: str) -> str:
    if fmt == "raw_json":
        return json.dumps(rows)
    if fmt == "pretty_json":
        return json.dumps(rows, indent=4, sort_keys=True)
    cells = [[_text(field(r, c)) for c in columns] for r in rows]
    if fmt == "tsv":
        return "\n".join("\t".join(line) for line in [columns, *cells])
    widths = [max(len(x) for x in col) for col in zip(columns, *cells, strict=False)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    return "\n".join([rule, line(columns), rule, *(line(c) for c in cells), rule])


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return "" if value is None else str(value)

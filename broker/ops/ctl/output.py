"""rabbitmqctl's output layout: info lines (``Listing queues for vhost / ...``) unless
``--quiet``, a tab-separated table with a header row unless ``--silent`` /
``--no-table-headers``, or JSON with ``--formatter json`` (one object per line inside an array,
as rabbitmqctl prints it)."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO  # Any: JSON values, printed as they come


@dataclass
class Output:
    quiet: bool = False
    headers: bool = True
    formatter: str = "table"
    stream: TextIO | None = None  # None: whatever sys.stdout is when printing

    def info(self, text: str) -> None:
        if not self.quiet and self.formatter != "json":
            self.line(text)

    def line(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout)

    def table(self, columns: list[str], rows: list[dict]) -> None:
        if self.formatter == "json":
            body = ",\n".join(json.dumps({c: row.get(c) for c in columns},
                                         separators=(",", ":")) for row in rows)
            self.line(f"[\n{body}\n]" if rows else "[]")
            return
        if self.headers:
            self.line("\t".join(columns))
        for row in rows:
            self.line("\t".join(cell(row.get(c)) for c in columns))

    def document(self, value: Any) -> None:
        self.line(json.dumps(value, indent=2 if self.formatter != "json" else None))


def cell(value: Any) -> str:
    """Values as rabbitmqctl's table formatter prints them."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(cell(v) for v in value) + "]"
    if isinstance(value, dict):
        return "[" + ", ".join(f"{{{k}, {cell(v)}}}" for k, v in value.items()) + "]"
    return str(value)


def quiet_on_closed_pipe(main: Callable[..., int]) -> Callable[..., int]:
    """A CLI entry point whose reader may go away (``burrowctl help | head``): stop quietly
    with 0, as rabbitmqctl does, instead of a BrokenPipeError traceback. stdout is pointed at
    /dev/null so that the interpreter's final flush does not fail again (Python's advice for
    SIGPIPE-less programs)."""

    @functools.wraps(main)
    def run(*args: Any, **kwargs: Any) -> int:
        try:
            code = main(*args, **kwargs)
            sys.stdout.flush()
            return code
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return 0

    return run

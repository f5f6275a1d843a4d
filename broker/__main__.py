"""`python -m broker` / `burrowmq`: parse settings, pick uvloop when installed, serve.

A user's mistake (a flag, the config file, a port taken, a locked data directory, a TLS or
definitions file) ends the process with one line on stderr, ``burrowmq: error: <reason>``,
and sysexits' status (``broker.node.startup``); never a traceback.
"""

from __future__ import annotations

import asyncio
import gc
import sys

from storage.datadir import DataDirError, DataDirLocked

from .core.definitions_json import DefinitionsError
from .node.config import ConfigError, parse_args
from .node.startup import EX_CANTCREAT, EX_CONFIG, EX_UNAVAILABLE, StartupError, setup_logging
from .node.tls import TLSConfigError
from .ops.launch import make_node

GC_YOUNG = 20_000  # allocations between two young-generation collections (CPython: 700)


def tune_gc() -> None:
    """The message path allocates a few acyclic objects per message (event, message, entry):
    with CPython's default threshold a young collection ran every ~100 messages, 3-4 % of a
    flood. Collect young objects less often, and keep what was loaded at start-up out of
    every collection."""
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, middle, old)


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(argv)
    except ConfigError as exc:
        print(f"burrowmq: error: {exc}", file=sys.stderr)
        return exc.code
    setup_logging(cfg.log_level)
    tune_gc()
    runner = asyncio.run
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        pass
    try:
        runner(make_node(cfg).serve_forever())
    except KeyboardInterrupt:
        pass
    except (StartupError, DataDirError, TLSConfigError, DefinitionsError) as exc:
        code = getattr(exc, "code", EX_CANTCREAT)
        if isinstance(exc, DataDirLocked):
            code = EX_UNAVAILABLE
        elif isinstance(exc, TLSConfigError | DefinitionsError):
            code = EX_CONFIG
        print(f"burrowmq: error: {exc}", file=sys.stderr)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main())

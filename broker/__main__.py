"""`python -m broker` / `burrowmq`: parse settings, pick uvloop when installed, serve."""

from __future__ import annotations

import asyncio
import logging
import sys

from storage.datadir import DataDirError

from .node.config import parse_args
from .node.tls import TLSConfigError
from .ops.launch import make_node


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    logging.basicConfig(level=cfg.log_level.upper(),
                        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
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
    except (DataDirError, TLSConfigError) as exc:
        logging.getLogger("broker").error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

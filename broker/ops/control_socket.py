"""The node's end of the CLI's local control channel: the management API served on
``<data dir>/ctl.sock`` to requests carrying the node's cookie (names and helpers in
``localctl``).

Invariants:
- The socket is bound after the AMQP listener, while this process holds the data directory's
  lock, so an existing ``ctl.sock`` is stale and is replaced; ``stop`` unlinks it.
- aiohttp and the API are imported in a worker thread, as the HTTP service does, so the loop
  keeps answering AMQP meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .localctl import SOCKET_NAME, bind, ensure_cookie

if TYPE_CHECKING:
    from broker.node.node import Node

log = logging.getLogger("broker.control")


class ControlChannel:
    """The socket as a node service (``broker.node.node.Service``): started after the AMQP
    listener (the data directory is locked by then), stopped with the node. Nothing starts
    unless ``Config.control_socket`` (on in ``python -m broker`` and the pytest plugin)."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.runner: Any = None

    async def start(self, node: Node) -> None:
        if not node.config.control_socket:
            return
        await asyncio.get_running_loop().run_in_executor(
            None, importlib.import_module, "broker.ops.mgmt.app")
        if node.stopping:  # a SIGTERM while importing: nothing is written or bound
            return
        from aiohttp import web

        from .mgmt.app import build_app

        self.path = Path(node.config.data_dir).absolute() / SOCKET_NAME
        cookie = ensure_cookie(self.path.parent)
        sock = bind(self.path)
        runner = web.AppRunner(build_app(node, cookie=cookie), access_log=None,
                               handle_signals=False)
        self.runner = runner  # stop() cleans it up and unlinks the socket, whatever happens
        await runner.setup()
        if node.stopping:
            sock.close()
            await self.stop()
            return
        await web.SockSite(runner, sock).start()
        if node.stopping:  # stopped while it started: closed again, never announced
            await self.stop()
            return
        log.info("control channel for the CLI on %s", self.path)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
            if self.path is not None:
                with contextlib.suppress(OSError):
                    self.path.unlink()

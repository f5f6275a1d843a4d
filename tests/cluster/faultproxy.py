"""A fault-injecting TCP proxy for tests: put it between two nodes, then break the link.

Modes (``proxy.mode = ...``, effective at once for live connections):
- ``"pass"``: bytes flow both ways, after ``delay`` seconds each way (0 = none);
- ``"blackhole"``: connections stay open but bytes vanish both ways (a partition: neither
  side sees an error, only silence); new connections are accepted and blackholed too;
- ``"drop"``: every connection is reset now, new ones are refused (closed at once).

``FaultProxy`` runs on the caller's event loop; ``ThreadedFaultProxy`` runs one in a thread of
its own for blocking tests. Listens on an ephemeral loopback port.
"""

from __future__ import annotations

import asyncio
import threading

MODES = ("pass", "blackhole", "drop")


class FaultProxy:
    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self.host = host
        self.port = 0
        self.delay = 0.0
        self._mode = "pass"
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.connections = 0

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self._mode = mode
        if mode == "drop":
            for a, b in list(self._links):
                a.transport.abort()
                b.transport.abort()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for a, b in list(self._links):
            a.transport.abort()
            b.transport.abort()
        if self._handlers:  # they end on their own once their links are reset
            await asyncio.wait(list(self._handlers), timeout=5)
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)  # type: ignore[arg-type]
        try:
            await self._link(reader, writer)
        finally:
            self._handlers.discard(handler)  # type: ignore[arg-type]

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._mode == "drop":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        link = (writer, up_writer)
        self._links.add(link)
        loop = asyncio.get_running_loop()
        pumps = [loop.create_task(self._pump(reader, up_writer)),
                 loop.create_task(self._pump(up_reader, writer))]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            self._links.discard(link)
            writer.transport.abort()
            up_writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                data = await reader.read(65536)
            except ConnectionError:
                return
            if not data:
                return
            if self._mode == "blackhole":
                continue
            if self.delay:
                await asyncio.sleep(self.delay)
            if self._mode != "pass":
                continue
            writer.write(data)
            try:
                await writer.drain()
            except ConnectionError:
                return


class ThreadedFaultProxy:
    """The same proxy on a loop in its own thread (for tests whose nodes block)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.proxy = FaultProxy(target)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="faultproxy")

    def start(self) -> tuple[str, int]:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(5)
        return self.proxy.address

    def set_mode(self, mode: str, delay: float = 0.0) -> None:
        """Applied when this returns."""
        async def apply() -> None:
            self.proxy.delay = delay
            self.proxy.mode = mode
        asyncio.run_coroutine_threadsafe(apply(), self._loop).result(5)

    def stop(self) -> None:
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

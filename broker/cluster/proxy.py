"""Clients on any node: a follower splices client connections to the leader, prefixed with a
PROXY protocol v1 header; the leader takes the header only from cluster peers.

- ``header(src, dst)``: ``PROXY TCP4 1.2.3.4 5.6.7.8 51234 5672\\r\\n`` (``PROXY UNKNOWN`` when
  the client address is not an IP, e.g. a Unix socket); ``parse`` reads one back.
- ``Splice``: the follower's protocol for one client connection. It asks ``resolve()`` for the
  leader's address (which may wait for an election), connects, writes the header and whatever
  the client sent meanwhile, then copies bytes both ways with backpressure (a side whose peer's
  buffer is full stops being read). ``close_all`` ends every splice (leader change: clients
  reconnect and reach the new leader).
- ``Acceptor``: the leader's protocol in front of the real one (AMQP, HTTP). A connection from
  an address ``trusted`` rejects (not a cluster peer) goes to the real protocol at once,
  untouched. From a peer, the first bytes decide: a PROXY header is consumed and the real
  protocol sees the client's address as ``peername`` (``PeerTransport``); anything else goes
  through unchanged (a client on a peer's machine).

Invariants:
- The real protocol is installed with ``transport.set_protocol``: after the first bytes the
  acceptor is out of the data path.
- A header longer than 107 bytes (the v1 maximum) or malformed from a peer closes the
  connection; a header from anyone else is never parsed (it reaches the real protocol, which
  refuses it as it refuses any garbage).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

log = logging.getLogger(__name__)

Address = tuple[str, int]
MAX_HEADER = 107
SIGNATURE = b"PROXY "


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def header(src: Any, dst: Any) -> bytes:
    """The v1 header for a client at ``src`` that reached ``dst`` (peername / sockname)."""
    if isinstance(src, tuple) and isinstance(dst, tuple) and len(src) >= 2 and len(dst) >= 2:
        a, b = _ip(str(src[0])), _ip(str(dst[0]))
        if a is not None and b is not None:
            if a.version != b.version:  # one family in a header: map the other
                if a.version == 4:
                    a = ipaddress.IPv6Address(f"::ffff:{a}")
                else:
                    b = ipaddress.IPv6Address(f"::ffff:{b}") if b.version == 4 else b
            family = "TCP4" if a.version == 4 else "TCP6"
            return f"PROXY {family} {a} {b} {int(src[1])} {int(dst[1])}\r\n".encode()
    return b"PROXY UNKNOWN\r\n"


def parse(data: bytes) -> tuple[Address | None, int] | None:
    """``((client host, port) or None for UNKNOWN, header length)``; None while incomplete;
    ValueError when it is not a valid v1 header."""
    end = data.find(b"\r\n", 0, MAX_HEADER + 1)
    if end < 0:
        if len(data) >= MAX_HEADER:
            raise ValueError("PROXY header too long")
        return None
    parts = data[:end].decode("ascii", "replace").split(" ")
    if parts[0] != "PROXY" or len(parts) < 2:
        raise ValueError("not a PROXY header")
    if parts[1] == "UNKNOWN":
        return None, end + 2
    if parts[1] not in ("TCP4", "TCP6") or len(parts) != 6:
        raise ValueError(f"bad PROXY header {data[:end]!r}")
    src = _ip(parts[2])
    if src is None or _ip(parts[3]) is None or (src.version == 4) != (parts[1] == "TCP4"):
        raise ValueError(f"bad PROXY header {data[:end]!r}")
    port = int(parts[4])
    if not 0 <= port <= 65535 or not 0 <= int(parts[5]) <= 65535:
        raise ValueError(f"bad PROXY header {data[:end]!r}")
    return (str(src), port), end + 2


class PeerTransport(asyncio.Transport):
    """The real transport, except that ``peername`` is the client's (from the header)."""

    def __init__(self, transport: asyncio.Transport, peername: Address | None) -> None:
        super().__init__()
        self._t = transport
        self._peer = peername

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername" and self._peer is not None:
            return self._peer
        return self._t.get_extra_info(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._t.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._t.writelines(list_of_data)

    def write_eof(self) -> None:
        self._t.write_eof()

    def can_write_eof(self) -> bool:
        return self._t.can_write_eof()

    def close(self) -> None:
        self._t.close()

    def abort(self) -> None:
        self._t.abort()

    def is_closing(self) -> bool:
        return self._t.is_closing()

    def pause_reading(self) -> None:
        self._t.pause_reading()

    def resume_reading(self) -> None:
        self._t.resume_reading()

    def is_reading(self) -> bool:
        return self._t.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._t.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._t.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._t.get_write_buffer_limits()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._t.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._t.get_protocol()


class Acceptor(asyncio.Protocol):
    """Stands in front of ``factory()``'s protocol until the first bytes from a peer."""

    __slots__ = ("factory", "trusted", "timeout", "transport", "buffer", "timer")

    def __init__(self, factory: Callable[[], asyncio.Protocol],
                 trusted: Callable[[str], bool], timeout: float = 10.0) -> None:
        self.factory = factory
        self.trusted = trusted
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) and peer else ""
        if not host or not self.trusted(str(host)):
            self._hand_over(transport, None, b"")
            return
        self.transport = transport
        self.timer = asyncio.get_running_loop().call_later(self.timeout, transport.abort)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        self.buffer += data
        buf = self.buffer
        if not buf.startswith(SIGNATURE[:len(buf)]):
            self._hand_over(transport, None, buf)  # a client on a peer's machine
            return
        if len(buf) < len(SIGNATURE):
            return
        try:
            parsed = parse(buf)
        except ValueError as exc:
            log.warning("closing a connection from %s: %s",
                        transport.get_extra_info("peername"), exc)
            self._cancel()
            transport.abort()
            return
        if parsed is None:
            return
        client, used = parsed  # UNKNOWN (None): the connection's own address stands
        self._hand_over(transport, client, buf[used:])

    def _cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.transport = None
        self.buffer = b""

    def _hand_over(self, transport: asyncio.Transport, client: Address | None,
                   rest: bytes) -> None:
        self._cancel()
        protocol = self.factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport if client is None else
                                 PeerTransport(transport, client))
        if rest and not transport.is_closing():
            protocol.data_received(rest)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()


class _Upstream(asyncio.Protocol):
    def __init__(self, splice: Splice) -> None:
        self.splice = splice

    def data_received(self, data: bytes) -> None:
        downstream = self.splice.transport
        if downstream is not None:
            downstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.splice.close()

    def pause_writing(self) -> None:  # the leader reads slower than the client writes
        if self.splice.transport is not None:
            self.splice.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.splice.transport is not None:
            self.splice.transport.resume_reading()


class Splice(asyncio.Protocol):
    """One client connection on a follower, copied to the leader."""

    HELD = 256 * 1024  # what a client may send before the leader is reached

    def __init__(self, resolve: Callable[[], Awaitable[Address | None]],
                 registry: set[Splice], what: str = "AMQP") -> None:
        self.resolve = resolve
        self.registry = registry
        self.what = what
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.held: list[bytes] = []
        self.held_bytes = 0
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.registry.add(self)
        self.task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        transport = self.transport
        try:
            target = await self.resolve()
            if target is None or self.transport is None:
                raise ConnectionError("no leader")
            upstream, _ = await asyncio.wait_for(asyncio.get_running_loop().create_connection(
                lambda: _Upstream(self), target[0], target[1]), 5.0)
        except (OSError, TimeoutError, ConnectionError) as exc:
            if transport is not None:
                log.info("%s client %s: cannot reach the leader: %s", self.what,
                         transport.get_extra_info("peername"), exc or type(exc).__name__)
            self.close()
            return
        if self.transport is None:
            upstream.close()
            return
        self.upstream = upstream
        self.upstream.write(header(self.transport.get_extra_info("peername"),
                                   self.transport.get_extra_info("sockname")))
        if self.held:
            self.upstream.writelines(self.held)
            self.held = []
        self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.upstream is not None:
            self.upstream.write(data)
            return
        self.held.append(data)
        self.held_bytes += len(data)
        if self.held_bytes > self.HELD and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        if self.upstream is not None and self.upstream.can_write_eof():
            self.upstream.write_eof()
            return True
        return None

    def pause_writing(self) -> None:  # the client reads slower than the leader writes
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.close()

    def close(self) -> None:
        self.registry.discard(self)
        transport, self.transport = self.transport, None
        upstream, self.upstream = self.upstream, None
        if transport is not None:
            transport.close()
        if upstream is not None:
            upstream.close()
        if self.task is not None and not self.task.done() and \
                self.task is not asyncio.current_task():
            self.task.cancel()


def close_all(registry: set[Splice]) -> int:
    """End every splice (their clients reconnect); how many there were."""
    splices = list(registry)
    for splice in splices:
        splice.close()
    return len(splices)

"""The one asyncio.Protocol: socket bytes -> Session (-> ConnectionMachine) -> socket bytes.

Invariants:
- What a read produces is written with a single ``transport.write`` at the end of that read.
- Frames produced outside a read (deliveries caused by another connection, heartbeats) are
  written by one flush scheduled on the next loop turn, however many there were.
- Backpressure is explicit: when the socket buffer passes the high-water mark the session stops
  taking deliveries (``pause_writing``), and resumes when it drains.
- Reading is paused for any of a set of reasons and resumes when none is left: ``alarm`` (a
  resource alarm blocked the publisher), ``input`` (the session holds input back: its slice of
  this loop turn is used up and it goes on at the next turn, or it waits for a queue's credit
  and goes on when the queue calls back).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from time import perf_counter
from typing import TYPE_CHECKING, cast

from protocol.errors import InternalError

from .session import Session

if TYPE_CHECKING:
    from .ports import AMQPHost

log = logging.getLogger("broker.connection")
HIGH_WATER = 4 * 1024 * 1024


def address_text(addr: object) -> str:
    """``127.0.0.1:5672`` (IPv4), ``::1:5672`` (IPv6, as RabbitMQ prints it)."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


class AMQPProtocol(asyncio.Protocol):
    def __init__(self, host: AMQPHost) -> None:
        self.host = host
        self.server = host.server
        self.durability = host.durability
        self.loop = host.loop
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self._in_read = False
        self._flush_scheduled = False
        self._continue_scheduled = False
        self._read_pauses: set[str] = set()
        self._closing = False
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._heartbeat_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._heartbeat_started = False

    # ---- asyncio callbacks -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream server's transport is a full asyncio.Transport (uvloop's too)
        self.transport = transport = cast(asyncio.Transport, transport)
        limit = self.host.config.connection_max
        if limit is not None and self.server.connection_count >= limit:
            log.warning("refusing a connection from %s: connection_max (%d) reached",
                        address_text(transport.get_extra_info("peername")), limit)
            self._closing = True
            transport.close()
            return
        self.server.connection_count += 1
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=HIGH_WATER)
        peer = address_text(transport.get_extra_info("peername"))
        local = address_text(transport.get_extra_info("sockname"))
        self.session = Session(self.host, self, peer, local)
        log.info("accepting AMQP connection %s", self.session.label)
        self.session.machine.last_received = self.loop.time()
        timeout = self.host.config.handshake_timeout
        self._handshake_timer = self.loop.call_later(timeout, self._handshake_deadline)

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None or self._closing:
            return
        stats = session.stats
        stats.recv_oct += len(data)
        stats.recv_cnt += 1
        self._handle_input(session, data)
        if not self._heartbeat_started and session.machine.is_open:
            self._start_heartbeat()
            if self._handshake_timer is not None:  # a later close is not a handshake
                self._handshake_timer.cancel()
                self._handshake_timer = None

    def _handle_input(self, session: Session, data: bytes | None) -> None:
        """Feed ``data`` (None: continue with the input held back earlier, with a fresh
        slice), dispatch what it woke, write the answers once; while input is held, the socket
        is not read. The time it takes counts as busy time of the loop (``server.load``)."""
        server = self.server
        started = perf_counter()
        self._in_read = server.handling_input = True
        try:
            if data is None:
                session.process_input(fresh=True)
            else:
                session.data_received(data, self.loop.time())
        except Exception:
            log.exception("internal error on connection %s", session.peer)
            session.fail(InternalError("internal error"), 0)
        finally:
            self._in_read = False
        server.run_woken()
        self._flush()
        if session.input_held:
            self.pause_reading("input")
            if session.flow_queue is None:
                self.continue_soon()
        else:
            self.resume_reading("input")
        server.load.busy += perf_counter() - started

    def continue_soon(self) -> None:
        """Go on with held input on the next loop turn (after every other ready callback)."""
        if self._continue_scheduled or self._closing:
            return
        self._continue_scheduled = True
        self.loop.call_soon(self._continue_input)

    def _continue_input(self) -> None:
        self._continue_scheduled = False
        session = self.session
        if session is None or self._closing or session.blocked or \
                session.flow_queue is not None:
            return
        self._handle_input(session, None)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._handshake_timer, self._heartbeat_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        if self.session is not None:
            self.server.connection_count -= 1
            self.session.connection_lost()
        self._closing = True

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session.set_writable(False)

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.set_writable(True)

    # ---- called by the session ---------------------------------------------------------
    def schedule_flush(self) -> None:
        if self._flush_scheduled or self._in_read:
            return
        self._flush_scheduled = True
        self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        started = perf_counter()
        self._flush()
        self.server.load.busy += perf_counter() - started

    def _flush(self) -> None:
        self._flush_scheduled = False
        session, transport = self.session, self.transport
        if session is None or transport is None or transport.is_closing():
            return
        session.flush_confirms()
        data = session.machine.data_to_send()
        if data:
            self.durability.write_through()
            session.stats.send_oct += len(data)
            session.stats.send_cnt += 1
            transport.write(data)

    def close_transport(self, delay: float) -> None:
        """Flush what is queued, then close now or after ``delay`` seconds."""
        self._flush()
        transport = self.transport
        if transport is None:
            return
        if delay <= 0:
            self._closing = True
            transport.close()
        else:
            if self._close_timer is None:
                self._close_timer = self.loop.call_later(delay, self._abort)

    def pause_reading(self, reason: str) -> None:
        if not self._read_pauses and self.transport is not None and not self._closing:
            self.transport.pause_reading()
        self._read_pauses.add(reason)

    def resume_reading(self, reason: str) -> None:
        if reason not in self._read_pauses:
            return
        self._read_pauses.discard(reason)
        if not self._read_pauses and self.transport is not None and not self._closing:
            self.transport.resume_reading()

    def _abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    # ---- timers ------------------------------------------------------------------------
    def _handshake_deadline(self) -> None:
        if self.session is not None and not self.session.machine.is_open and not self._closing:
            log.warning("closing %s: handshake timeout", self.session.peer)
            self._abort()

    def _start_heartbeat(self) -> None:
        self._heartbeat_started = True
        heartbeat = self.session.machine.heartbeat if self.session else 0
        if heartbeat:
            self._heartbeat_timer = self.loop.call_later(heartbeat / 2, self._beat)

    def _beat(self) -> None:
        session = self.session
        if session is None or self._closing:
            return
        heartbeat = session.machine.heartbeat
        if not session.tick(self.loop.time()):
            self._abort()
            return
        self._flush()
        self._heartbeat_timer = self.loop.call_later(heartbeat / 2, self._beat)

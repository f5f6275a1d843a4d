"""Session: one client connection as the broker sees it (user, vhost, channels).

This is THE place where AMQP errors become close frames: a channel-scope error closes that
channel (its consumers cancelled, its unacked messages requeued); a connection-scope error closes
the connection. Handlers elsewhere only raise.

The session never touches the socket: it reads events from the ConnectionMachine and leaves
frames in ``machine.out``; the transport (the adapter) writes them once per read, or on the next
loop turn when ``wake`` is called from outside a read (a delivery caused by another connection).

Fairness and flow control: one go of ``process_input`` handles at most ``SLICE`` events, then
the machine keeps the rest and the transport continues on the next loop turn, so deliveries, acks
and other connections' publishes interleave with a flood in bounded slices. A publish into a
queue that is out of credit (``broker.core.credit``) holds the input until the queue calls
back (``wait_for_credit``); meanwhile the connection is not read and its state is ``flow``.
What the session needs from the node (settings, durability, alarms) comes through
``ports.AMQPHost``; the server (``broker.core.server.Server``) is the state it serves.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from pamqp import commands as C

from broker.core.messages import peeked
from broker.core.naming import server_properties
from broker.core.stats import Counters, channel_totals, session_totals
from protocol import properties
from protocol.codec import erlang_tuple
from protocol.connection import ConnectionMachine
from protocol.errors import (
    AMQPError,
    LoginRefused,
    NotAllowed,
    PreconditionFailed,
    UnreadableFrame,
)
from protocol.events import (
    Ack,
    CloseTransport,
    Fault,
    LoginAttempt,
    Method,
    OpenVhost,
    PeerClosed,
    Publish,
)

from .access import Authorizer
from .channel import Channel

if TYPE_CHECKING:
    from broker.core.queue import Queue
    from broker.core.server import Server
    from broker.core.vhost import VirtualHost
    from storage.message import Message

    from .ports import AMQPHost, TransportAdapter

log = logging.getLogger("broker.connection")
SLICE = 256  # events handled per go before the other connections get their turn
FLOW_STATE_LINGER = 1.0  # s a connection still reads "flow" after it was let go (RabbitMQ's)


def open_sessions(server: Server) -> list[Session]:
    """The server's connection registry as sessions (every handle in it is one)."""
    return [s for s in server.sessions if isinstance(s, Session)]


class Session:
    def __init__(self, host: AMQPHost, adapter: TransportAdapter, peer: str,
                 local: str = "") -> None:
        self.host = host
        self.server = server = host.server
        self.alarms = host.alarms
        self.adapter = adapter
        self.peer = peer
        self.pid = server.next_pid()
        self.name = f"{peer} -> {local}" if local else peer
        self.label = f"{self.pid} ({self.name})"
        self.connected_at = int(time.time() * 1000)
        self.stats = Counters()
        self.authz: Authorizer | None = None
        cfg = host.config
        self.machine = ConnectionMachine(server_properties(), frame_max=cfg.frame_max,
                                         channel_max=cfg.channel_max, heartbeat=cfg.heartbeat)
        # Set by connection.open, before which no channel exists to read it.
        self.vhost: VirtualHost = None  # type: ignore[assignment]
        self.user = ""
        self.channels: dict[int, Channel] = {}
        self.exclusive_queues: set[Queue] = set()
        self.confirms_pending: set[Channel] = set()
        self.writable = True
        self.closed = False
        self.published = False
        self.blocked = False
        self._slice = SLICE
        self.input_held = False
        self.flow_queue: Queue | None = None  # the queue whose credit this connection awaits
        self.flow_seconds = 0.0  # time spent in flow, closed periods only (see flow_time)
        self._flow_since = 0.0
        self._flow_until = -FLOW_STATE_LINGER

    # ---- input -------------------------------------------------------------------------
    def data_received(self, data: bytes, now: float) -> None:
        self.machine.receive_data(data, now)
        self.process_input()

    def process_input(self, fresh: bool = False) -> None:
        """Handle what the machine can parse. Stops early, keeping the rest of the input in the
        machine (``input_held``), once this go's slice of ``SLICE`` events is used up (the
        transport goes on at the next loop turn, with a ``fresh`` slice) or a queue it
        published to is out of credit (it goes on when the queue calls back)."""
        if fresh:
            self._slice = SLICE
        machine = self.machine
        channels = self.channels
        budget = self._slice
        self.input_held = False
        events = machine.events()
        try:
            for event in events:
                channel = 0
                try:
                    if type(event) is Publish:
                        channel = event.channel
                        # authz is set by connection.open; the machine yields no Publish before
                        authz = self.authz
                        if event.exchange not in authz.writable_exchanges:  # type: ignore[union-attr]
                            authz.check_publish(event.exchange)  # type: ignore[union-attr]
                        if not self.published:
                            self.published = True
                        channels[channel].on_publish(event)
                    elif type(event) is Ack:
                        channel = event.channel
                        channels[channel].on_ack(event.delivery_tag, event.multiple)
                    elif type(event) is Method:
                        channel = event.channel
                        self._on_method(event)
                    else:
                        if type(event) is Fault:
                            channel = event.channel
                        self._on_control(event)
                except AMQPError as err:
                    if type(event) is Publish:
                        err.at(60, 40)
                    elif type(event) is Ack:
                        err.at(60, 80)
                    elif type(event) is Method:
                        err.at(event.method.index >> 16, event.method.index & 0xFFFF)
                    self.fail(err, channel)
                budget -= 1
                if budget <= 0 or self.flow_queue is not None:
                    self.input_held = not self.closed
                    break
        finally:
            events.close()
        self._slice = budget
        self.flush_confirms()
        if self.published and self.alarms.active and not self.blocked:
            self.alarms.on_publish(self)

    def flush_confirms(self) -> None:
        if self.confirms_pending:
            for channel in self.confirms_pending:
                channel.flush_confirms()
            self.confirms_pending.clear()

    def _on_method(self, event: Method) -> None:
        number = event.channel
        if number == 0:
            if isinstance(event.method, C.Connection.UpdateSecret):
                self.machine.send_method(0, C.Connection.UpdateSecretOk())
            return
        channel = self.channels.get(number)
        if channel is None:
            self._check_channel_limit()
            channel = self.channels[number] = Channel(self, number)
            self.stats.channels_opened += 1
        # authz is set by connection.open; the machine yields no channel method before
        self.authz.check_method(event.method, channel.last_queue)  # type: ignore[union-attr]
        channel.handle(event.method)

    def _on_control(self, event: object) -> None:
        if isinstance(event, LoginAttempt):
            self._login(event)
        elif isinstance(event, OpenVhost):
            self._open_vhost(event.vhost)
        elif isinstance(event, PeerClosed):
            log.info("closing AMQP connection %s", self.describe())
            self.teardown()
            self.adapter.close_transport(0.0)
        elif isinstance(event, CloseTransport):
            self.teardown()
            self.adapter.close_transport(event.delay)
        elif isinstance(event, Fault):
            raise event.error

    def _login(self, event: LoginAttempt) -> None:
        host = self.peer.rpartition(":")[0]
        if self.server.authenticate(event.username, event.password, host):
            self.user = event.username
            self.machine.accept_login()
            return
        log.warning("Error on AMQP connection %s: access_refused, login refused for user "
                    "'%s'", self.label, event.username)
        if self.machine.client_capability("authentication_failure_close"):
            raise LoginRefused(f"Login was refused using authentication mechanism "
                               f"{event.mechanism}. For details see the broker logfile.")
        self.teardown()
        self.adapter.close_transport(3.0)

    def _open_vhost(self, name: str) -> None:
        vhost = self.server.vhosts.get(name)
        if vhost is None:
            raise NotAllowed(f"vhost {name} not found", 10, 40)
        if not self.server.may_access(self.user, name):
            raise NotAllowed(f"access to vhost '{name}' refused for user '{self.user}'", 10, 40)
        self._check_connection_limits(vhost)
        self.vhost = vhost
        self.authz = Authorizer(self.server.auth, self.user, name)
        self.machine.open_ok()
        self.server.sessions.add(self)
        log.info("connection %s: user '%s' authenticated and granted access to vhost '%s'",
                 self.label, self.user, name)

    def _check_connection_limits(self, vhost: VirtualHost) -> None:
        """RabbitMQ's vhost and user connection limits (a negative limit is no limit)."""
        sessions = open_sessions(self.server)
        limit = vhost.limits.get("max-connections", -1)
        if limit >= 0 and sum(1 for s in sessions if s.vhost is vhost) >= limit:
            raise NotAllowed(f"access to vhost '{vhost.name}' refused for user '{self.user}': "
                             f"connection limit ({limit}) is reached", 10, 40)
        user = self.server.auth.users.get(self.user)
        limit = user.limits.get("max-connections", -1) if user is not None else -1
        if limit >= 0 and sum(1 for s in sessions if s.user == self.user) >= limit:
            raise NotAllowed(f"connection refused for user '{self.user}': user connection "
                             f"limit ({limit}) is reached", 10, 40)

    def _check_channel_limit(self) -> None:
        user = self.server.auth.users.get(self.user)
        limit = user.limits.get("max-channels", -1) if user is not None else -1
        if limit >= 0 and sum(len(s.channels) for s in open_sessions(self.server)
                              if s.user == self.user) >= limit:
            raise NotAllowed(f"number of channels opened for user '{self.user}' has reached "
                             f"the maximum allowed user limit of {limit}", 20, 10)

    def describe(self) -> str:
        """RabbitMQ's way of naming a connection in logs, with vhost and user once known."""
        if self.vhost is None:
            return self.label
        return f"{self.pid} ({self.name}, vhost: '{self.vhost.name}', user: '{self.user}')"

    # ---- errors ------------------------------------------------------------------------
    def fail(self, err: AMQPError, channel: int) -> None:
        if err.connection_scope or channel == 0:
            log.warning("Error on AMQP connection %s: %s", self.label, err.reply_text)
            self.machine.close_connection(err)
            self.teardown()
            # RabbitMQ: 30 s for the client's close-ok (closed at once when it comes), 3 s
            # after a frame it stopped reading at
            self.adapter.close_transport(3.0 if isinstance(err, UnreadableFrame) else 30.0)
            return
        log.info("Channel error on connection %s, channel %d: %s", self.describe(), channel,
                 err.reply_text)
        self.drop_channel(channel)
        self.machine.close_channel(channel, err)

    def drop_channel(self, number: int) -> None:
        channel = self.channels.pop(number, None)
        if channel is not None:
            self.stats.channels_closed += 1
            self.confirms_pending.discard(channel)
            channel.teardown()
            self.stats.add(channel_totals(channel))

    def totals(self) -> Counters:
        """This connection's counters with its open channels' (``broker.core.stats``)."""
        return session_totals(self)

    # ---- broker hooks ------------------------------------------------------------------
    def check_publish(self, channel: Channel, message: Message) -> None:
        meta = peeked(message)
        if meta is not properties.NOTHING:
            expiration = meta.expiration
            if expiration is not None:
                validate_expiration(expiration)
            user_id = meta.user_id
            if user_id is not None and user_id != self.user:
                raise PreconditionFailed(f"user_id property set to '{user_id}' but "
                                         f"authenticated user was '{self.user}'")

    # ---- output and flow ---------------------------------------------------------------
    def wake(self) -> None:
        self.adapter.schedule_flush()

    def wait_for_credit(self, queue: Queue) -> None:
        if self.flow_queue is not None or self.closed:
            return
        self.flow_queue = queue
        self._flow_since = time.monotonic()
        queue.add_credit_waiter(self._credit_back)

    def _credit_back(self) -> None:
        if self.flow_queue is None:
            return
        self.flow_queue = None
        self._flow_until = now = time.monotonic()
        self.flow_seconds += now - self._flow_since
        if not self.closed:
            self.adapter.continue_soon()

    def flow_time(self) -> float:
        """Seconds this connection has spent in flow, the current period included."""
        if self.flow_queue is None:
            return self.flow_seconds
        return self.flow_seconds + time.monotonic() - self._flow_since

    @property
    def state(self) -> str:
        """RabbitMQ's connection state: flow while throttled and for a second after."""
        if self.closed:
            return "closed"
        if self.blocked:
            return "blocked"
        if self.flow_queue is not None or \
                time.monotonic() - self._flow_until < FLOW_STATE_LINGER:
            return "flow"
        return "running"

    def set_writable(self, writable: bool) -> None:
        self.writable = writable
        if writable:
            for channel in self.channels.values():
                for consumer in channel.consumers.values():
                    if consumer.queue is not None:  # the direct reply-to consumer has none
                        consumer.queue.wake()

    def block(self, reason: str) -> None:
        if self.blocked or self.closed:
            return
        self.blocked = True
        if self.machine.is_open and self.machine.client_capability("connection.blocked"):
            self.machine.send_method(0, C.Connection.Blocked(reason))
            self.wake()
        self.adapter.pause_reading("alarm")

    def unblock(self) -> None:
        if not self.blocked:
            return
        self.blocked = False
        if self.machine.is_open and self.machine.client_capability("connection.blocked"):
            self.machine.send_method(0, C.Connection.Unblocked())
            self.wake()
        self.adapter.resume_reading("alarm")
        self.adapter.continue_soon()

    def tick(self, now: float) -> bool:
        """Heartbeat duty; False when the peer has been silent too long."""
        machine = self.machine
        if machine.peer_timed_out(now):
            log.warning("closing AMQP connection %s:\nmissed heartbeats from client, "
                        "timeout: %ds", self.describe(), machine.heartbeat)
            return False
        if machine.heartbeat and machine.is_open:
            from protocol.codec import HEARTBEAT_FRAME
            machine.send_raw(HEARTBEAT_FRAME)
        return True

    def teardown(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.flow_queue is not None:
            self.flow_seconds = self.flow_time()
            self.flow_queue = None
        self.server.load.flow_seconds_retired += self.flow_seconds
        for number in list(self.channels):
            self.drop_channel(number)
        if self.vhost is not None:
            for queue in list(self.exclusive_queues):
                self.vhost.remove_queue(queue)
        self.exclusive_queues.clear()
        self.server.sessions.discard(self)
        self.server.retire(self)

    def connection_lost(self) -> None:
        if not self.closed:
            log.warning("closing AMQP connection %s:\nclient unexpectedly closed TCP "
                        "connection", self.describe())
        self.teardown()

    def force_close(self, text: str, delay: float = 1.0) -> None:
        """320 CONNECTION_FORCED (management, rabbitmqctl close_connection, shutdown)."""
        from protocol.errors import ConnectionForced

        if self.closed:
            return
        log.info("closing AMQP connection %s: %s", self.describe(), text)
        self.machine.close_connection(ConnectionForced(text))
        self.teardown()
        self.adapter.close_transport(delay)


def validate_expiration(value: str) -> None:
    digits = value
    if not digits or not (digits[0].isdigit() or (digits[0] == "-" and digits[1:2].isdigit())):
        raise PreconditionFailed(f"invalid expiration '{value}': no_integer")
    end = 1
    while end < len(digits) and digits[end].isdigit():
        end += 1
    number, rest = digits[:end], digits[end:]
    if rest:
        raise PreconditionFailed(f"invalid expiration '{value}': {{leftover_string,\"{rest}\"}}")
    parsed = int(number)
    if parsed < 0:
        raise PreconditionFailed(f"invalid expiration '{value}': {{value_negative,{parsed}}}")
    if parsed >= 2**32:
        raise PreconditionFailed(erlang_tuple(f"invalid expiration '{value}': ",
                                              "value_too_large", str(parsed)))

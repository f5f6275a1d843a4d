"""The AMQP side's interfaces: what it needs from the node, and what a channel uses of its
connection. Defined here, on the AMQP side, so that nothing in amqp/ imports the node (which
satisfies ``AMQPHost`` structurally) and channels do not import the session.

- ``AMQPHost``: the state root (``Server``), the settings a connection reads, durability
  (``when_durable`` for confirms and tx.commit, ``write_through`` before frames reach a
  socket) and the resource alarms a publisher runs into; plus the event loop, for the
  transport's timers.
- ``ChannelOwner``: the connection as its channels see it (``broker.amqp.session.Session``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from broker.core.queue import Queue
    from broker.core.server import ConnectionHandle, Server
    from broker.core.stats import Counters
    from broker.core.vhost import VirtualHost
    from protocol.connection import ConnectionMachine
    from protocol.errors import AMQPError
    from storage.message import Message

    from .access import Authorizer


class ConnectionSettings(Protocol):
    """The settings a connection reads (the node's Config satisfies it)."""

    @property
    def frame_max(self) -> int: ...
    @property
    def channel_max(self) -> int: ...
    @property
    def heartbeat(self) -> int: ...
    @property
    def max_message_size(self) -> int: ...
    @property
    def handshake_timeout(self) -> float: ...
    @property
    def connection_max(self) -> int | None: ...
    @property
    def consumer_timeout(self) -> int | None: ...


class Durability(Protocol):
    def when_durable(self, callback: Callable[[bool], None]) -> None:
        """Call back (True, or False when the write failed) once everything written so far
        is on disk."""
        ...

    def write_through(self) -> None:
        """Frames are about to reach a socket: delivery marks must be on disk first."""
        ...


class PublishAlarm(Protocol):
    """Resource alarms as a publishing connection meets them."""

    @property
    def active(self) -> Collection[str]: ...
    def on_publish(self, connection: ConnectionHandle) -> None:
        """A connection published while an alarm is on: block it."""
        ...


class AMQPHost(Protocol):
    """The node as the AMQP side sees it."""

    @property
    def server(self) -> Server: ...
    @property
    def config(self) -> ConnectionSettings: ...
    @property
    def durability(self) -> Durability: ...
    @property
    def alarms(self) -> PublishAlarm: ...
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...


class TransportAdapter(Protocol):
    """The socket side of a connection, as its session drives it
    (``broker.amqp.transport.AMQPProtocol``)."""

    def schedule_flush(self) -> None: ...
    def close_transport(self, delay: float) -> None: ...
    def pause_reading(self, reason: str) -> None: ...
    def resume_reading(self, reason: str) -> None: ...
    def continue_soon(self) -> None:
        """Go on with held input at the next loop turn."""
        ...


class ChannelOwner(Protocol):
    """What a channel uses of its connection."""

    server: Server
    host: AMQPHost
    vhost: VirtualHost
    machine: ConnectionMachine
    stats: Counters
    authz: Authorizer | None
    # Any: these are broker.amqp.channel.Channel, which imports this module; the session's
    # attribute is a set[Channel], and a set of a protocol type would not match it (invariance).
    confirms_pending: set[Any]  # channels with confirms to flush at the end of this read
    exclusive_queues: set[Queue]

    @property
    def writable(self) -> bool: ...
    def wake(self) -> None: ...
    def drop_channel(self, number: int) -> None: ...
    def fail(self, err: AMQPError, channel: int) -> None: ...
    def check_publish(self, channel: Any, message: Message) -> None: ...  # Any: a Channel
    def wait_for_credit(self, queue: Queue) -> None:
        """A queue this connection published to is out of credit: stop reading until it
        calls back (flow control)."""
        ...

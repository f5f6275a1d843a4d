"""Server: virtual hosts, users, live sessions, listeners, start and stop.

The server is the root of the broker's state; everything below it is synchronous. It owns the
event loop hooks the engines need (``schedule`` for deferred queue dispatch).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import platform
import shutil
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import __version__, deadletter, persistence
from .alarms import Alarms
from .config import Config
from .replyto import ReplyRegistry
from .stores import Stores
from .vhost import VirtualHost

if TYPE_CHECKING:
    from storage.store import QueueStore

    from .message import Message
    from .queue import Queue
    from .session import Session

log = logging.getLogger("broker")

CAPABILITIES = (
    "publisher_confirms", "exchange_exchange_bindings", "basic.nack", "consumer_cancel_notify",
    "connection.blocked", "consumer_priorities", "authentication_failure_close",
    "per_consumer_qos", "direct_reply_to",
)
RABBITMQ_VERSION = "3.13.7"


def hash_password(password: str, salt: bytes | None = None) -> bytes:
    salt = salt if salt is not None else os.urandom(4)
    return salt + hashlib.sha256(salt + password.encode()).digest()


def check_password(stored: bytes, password: str) -> bool:
    return hmac.compare_digest(stored, hash_password(password, stored[:4]))


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.vhosts: dict[str, VirtualHost] = {}
        self.users: dict[str, bytes] = {config.default_user: hash_password(config.default_pass)}
        self.sessions: set[Session] = set()
        self.replies = ReplyRegistry()
        self._servers: list[asyncio.base_events.Server] = []
        self.port = config.port
        self._stopped: asyncio.Event | None = None
        self.stores: Stores = None  # type: ignore[assignment]
        self._recovered = False
        self.alarms = Alarms(self)
        self.add_vhost(config.default_vhost)

    # ---- state -------------------------------------------------------------------------
    def add_vhost(self, name: str) -> VirtualHost:
        vhost = self.vhosts.get(name)
        if vhost is None:
            vhost = VirtualHost(name, self.make_store, self)
            self.vhosts[name] = vhost
            if self.stores is not None and self._recovered:
                vhost.on_durable_change = self.stores.definitions_changed
                self.stores.definitions_changed()
        return vhost

    def make_store(self, vhost: str, queue_name: str, arguments: dict,
                   persistent: bool) -> QueueStore:
        return self.stores.make(vhost, queue_name, arguments, persistent)

    def server_properties(self) -> dict:
        return {
            "capabilities": dict.fromkeys(CAPABILITIES, True),
            "cluster_name": f"rabbit@{platform.node() or 'localhost'}",
            "copyright": "Copyright (c) the burrowmq authors",
            "information": "burrowmq, a RabbitMQ-compatible AMQP 0-9-1 broker in Python",
            "platform": f"Python {platform.python_version()}",
            "product": "RabbitMQ",
            "version": RABBITMQ_VERSION,
        }

    def authenticate(self, user: str, password: str) -> bool:
        stored = self.users.get(user)
        return stored is not None and check_password(stored, password)

    def may_access(self, user: str, vhost: str) -> bool:
        return user in self.users

    # ---- QueueContext ------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic()

    def schedule(self, queue: Queue) -> None:
        self.loop.call_soon(queue.run_scheduled)

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self.loop.call_later(delay, callback)

    def before_send(self) -> None:
        """Frames are about to reach a socket: delivery marks must be on disk first."""
        if self.stores is not None:
            self.stores.write_through()

    def dead_letter(self, queue: Queue, message: Message, reason: str) -> None:
        deadletter.dead_letter(self.vhosts[queue.vhost], queue, message, reason)

    def expire_queue(self, queue: Queue) -> None:
        vhost = self.vhosts.get(queue.vhost)
        if vhost is not None:
            vhost.remove_queue(queue)

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> int:
        from .transport import AMQPProtocol

        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self.stores = Stores(self.config.data_dir, self.now)
        self.stores.start(self.loop, lambda: persistence.snapshot(self))
        self._recover()
        self.alarms.start()
        srv = await self.loop.create_server(lambda: AMQPProtocol(self), self.config.host,
                                            self.config.port, reuse_address=True, backlog=1024)
        self._servers.append(srv)
        self.port = srv.sockets[0].getsockname()[1]
        log.info("burrowmq %s: AMQP listener on %s:%d", __version__, self.config.host, self.port)
        return self.port

    def _recover(self) -> None:
        persistence.restore(self, self.stores.load_definitions())
        known = {(v.name, q.name) for v in self.vhosts.values() for q in v.queues.values()}
        for path, owner in self.stores.data.queue_dirs().items():
            if owner not in known:
                log.info("removing the store of a queue that no longer exists: %s", path)
                shutil.rmtree(path, ignore_errors=True)
        for vhost in self.vhosts.values():
            vhost.on_durable_change = self.stores.definitions_changed
            for queue in vhost.queues.values():
                queue.check_expiry()
        self._recovered = True
        count = sum(len(q.store) for v in self.vhosts.values() for q in v.queues.values())
        if count:
            log.info("recovered %d messages", count)

    async def stop(self) -> None:
        from protocol.errors import ConnectionForced

        self.alarms.stop()
        for srv in self._servers:
            srv.close()
        for session in list(self.sessions):
            session.machine.close_connection(ConnectionForced("broker forced connection "
                                                              "closure with reason 'shutdown'"))
            session.teardown()
            session.adapter.close_transport(0.0)
        for srv in self._servers:
            await srv.wait_closed()
        self._servers.clear()
        if self.stores is not None:
            await self.stores.close(
                [q.store for v in self.vhosts.values() for q in v.queues.values()])
            self.stores = None  # type: ignore[assignment]
        if self._stopped is not None:
            self._stopped.set()

    async def serve_forever(self) -> None:
        await self.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.stop()))
            except (NotImplementedError, RuntimeError):
                pass
        assert self._stopped is not None
        await self._stopped.wait()
        log.info("broker stopped")

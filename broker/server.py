"""Server: virtual hosts, users, live sessions, listeners, start and stop.

The server is the root of the broker's state; everything below it is synchronous. It owns the
event loop hooks the engines need (``schedule`` for deferred queue dispatch).

Invariants:
- The AMQP listener is bound before anything optional starts: the management API and the
  Prometheus endpoint (``broker.http``, which imports aiohttp in a worker thread) come up while
  the AMQP port already answers handshakes, so they cost cold start nothing.
- ``stop`` closes every connection with 320 CONNECTION_FORCED, then calls ``flush_storage``
  (the storage engine's hook) before the HTTP listeners go.
- Users and permissions live in ``auth`` (``broker.auth.AuthStore``) and are saved with the
  durable topology (the same definitions document), so they survive a restart; the default
  user is created only on a node that has none (a blank node), as in RabbitMQ. Vhost metadata
  is in ``vhost_meta``; ``policies[vhost]`` is the vhost's own policies dict.
- A vhost created at runtime grants its creator (``acting_user``; by default the default user)
  full permissions, as RabbitMQ does for the user who creates it; vhosts restored from disk or
  imported from definitions grant nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import platform
import shutil
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import __version__, deadletter, persistence, tls
from .alarms import Alarms
from .auth import AuthStore
from .config import Config
from .replyto import ReplyRegistry
from .stats import Counters, session_totals
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


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.vhosts: dict[str, VirtualHost] = {}
        self.vhost_meta: dict[str, dict] = {}
        self.policies: dict[str, dict[str, dict]] = {}
        self.auth = AuthStore(config.loopback_users)
        self.sessions: set[Session] = set()
        self.retired = Counters()
        self.connections_closed = 0
        self._pids = itertools.count(1000)
        self.replies = ReplyRegistry()
        self._servers: list[asyncio.base_events.Server] = []
        self.port = config.port
        self.management_port: int | None = None
        self.tls_port: int | None = None
        self.connection_count = 0
        self.prometheus_port: int | None = None
        self.http: Any = None
        self.started_at = time.time()
        self.running = False
        self._stopped: asyncio.Event | None = None
        self.stores: Stores = None  # type: ignore[assignment]
        self._recovered = False
        self._restoring = False
        self.auth.watch(self)
        self.alarms = Alarms(self)
        self.add_vhost(config.default_vhost, description="Default virtual host")

    # ---- state -------------------------------------------------------------------------
    def add_vhost(self, name: str, description: str = "", tags: list[str] | None = None,
                  default_queue_type: str = "classic",
                  acting_user: str | None = None) -> VirtualHost:
        vhost = self.vhosts.get(name)
        if vhost is None:
            vhost = VirtualHost(name, self.make_store, self)
            self.vhosts[name] = vhost
            self.vhost_meta[name] = {"description": description, "tags": list(tags or []),
                                     "default_queue_type": default_queue_type}
            self.policies[name] = vhost.policies
            if self.stores is not None and self._recovered:
                vhost.on_durable_change = self.stores.definitions_changed
                self.stores.definitions_changed()
            grantee = self.config.default_user if acting_user is None else acting_user
            if not self._restoring and grantee in self.auth.users:
                self.auth.set_permissions(grantee, name, ".*", ".*", ".*")
        return vhost

    def invalidate(self) -> None:
        """Users or permissions changed: save them with the durable topology."""
        if self.stores is not None and self.loop is not None and self.loop.is_running():
            self.stores.definitions_changed()

    def snapshot(self) -> dict:
        """The durable definitions document: topology plus users and permissions."""
        from . import definitions

        doc = persistence.snapshot(self)
        doc["users"] = [u.as_json() for u in self.auth.users.values()]
        doc["permissions"] = definitions.permissions_json(self)
        return doc

    def delete_vhost(self, name: str) -> None:
        vhost = self.vhosts.pop(name)
        for session in [s for s in self.sessions if s.vhost is vhost]:
            session.force_close(f"vhost '{name}' is deleted")
        for queue in list(vhost.queues.values()):
            vhost.remove_queue(queue)
        self.vhost_meta.pop(name, None)
        self.policies.pop(name, None)
        self.auth.forget_vhost(name)
        if self.stores is not None:
            self.stores.definitions_changed()

    def boot_definitions(self) -> None:
        """Default user and vhost, then the definitions file if one is configured.

        As in RabbitMQ, a definitions file that lists users replaces the default user; unlike
        RabbitMQ, one that lists none keeps it (so importing only topology cannot lock
        everyone out)."""
        from . import definitions

        cfg = self.config
        data = definitions.read_file(cfg.load_definitions) if cfg.load_definitions else {}
        if not data.get("users") and not self.auth.users:
            self.auth.add_user(cfg.default_user, cfg.default_pass, list(cfg.default_user_tags))
            self.auth.set_permissions(cfg.default_user, cfg.default_vhost,
                                      *cfg.default_permissions)
        if data:
            self._restoring = True
            try:
                definitions.import_all(self, data)
            finally:
                self._restoring = False
            log.info("imported definitions from %s", cfg.load_definitions)

    def reset(self) -> None:
        """``rabbitmqctl reset``: back to a blank node (the app must be stopped)."""
        for name in list(self.vhosts):
            self.delete_vhost(name)
        self.auth = AuthStore(self.config.loopback_users)
        self.auth.watch(self)
        self.retired = Counters()
        self.add_vhost(self.config.default_vhost, description="Default virtual host")
        self.boot_definitions()

    def next_pid(self) -> str:
        """An Erlang-style process id naming a connection in logs and the management API."""
        return f"<0.{next(self._pids)}.0>"

    def retire(self, session: Session) -> None:
        """A closed session's counters (its channels already folded in) join the server's
        and its vhost's totals."""
        self.retired.add(session.stats)
        self.connections_closed += 1
        if session.vhost is not None:
            session.vhost.retired.add(session.stats)
        session.stats = Counters()

    def totals(self) -> Counters:
        """Every counter since boot: closed connections plus live ones (broker.stats)."""
        return Counters.total([self.retired, *(session_totals(s) for s in self.sessions)])

    def set_policy(self, vhost: str, name: str, policy: dict) -> None:
        """Store a policy in the vhost, which applies it (``VirtualHost.set_policy``)."""
        self.vhosts[vhost].set_policy(name, policy["pattern"], policy["definition"],
                                      policy.get("priority", 0), policy.get("apply-to", "all"))

    def clear_policy(self, vhost: str, name: str) -> None:
        self.vhosts[vhost].clear_policy(name)

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

    def authenticate(self, user: str, password: str, host: str | None = None) -> bool:
        """Password check, then RabbitMQ's loopback_users rule when the peer is known."""
        if not self.auth.authenticate(user, password):
            return False
        if host is not None and not self.auth.login_allowed_from(user, host):
            log.warning("user '%s' can only connect via localhost (peer %s)", user, host)
            return False
        return True

    def may_access(self, user: str, vhost: str) -> bool:
        return self.auth.may_access(user, vhost)

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
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self.stores = Stores(self.config.data_dir, self.now)
        self.stores.start(self.loop, self.snapshot)
        self._recover()
        self.boot_definitions()
        self.alarms.start()
        await self.start_app()
        cfg = self.config
        if cfg.management_port is not None or cfg.prometheus_port is not None:
            from . import http

            self.http = await http.start(self)
        return self.port

    async def start_app(self) -> None:
        """Open the AMQP listener (``rabbitmqctl start_app``)."""
        from .transport import AMQPProtocol

        if self._servers:
            return
        srv = await self.loop.create_server(lambda: AMQPProtocol(self), self.config.host,
                                            self.port, reuse_address=True, backlog=1024)
        self._servers.append(srv)
        self.port = srv.sockets[0].getsockname()[1]
        self.running = True
        log.info("burrowmq %s: started TCP listener on %s:%d", __version__, self.config.host,
                 self.port)
        cfg = self.config
        if tls.enabled(cfg):
            host = cfg.ssl_host or cfg.host
            srv = await self.loop.create_server(
                lambda: AMQPProtocol(self), host, self.tls_port or cfg.ssl_port,
                ssl=tls.server_context(cfg), reuse_address=True, backlog=1024,
                ssl_handshake_timeout=cfg.handshake_timeout)
            self._servers.append(srv)
            self.tls_port = srv.sockets[0].getsockname()[1]
            log.info("started TLS (SSL) listener on %s:%d", host, self.tls_port)

    def _recover(self) -> None:
        from . import definitions

        doc = self.stores.load_definitions()
        self._restoring = True
        try:
            persistence.restore(self, doc)
            definitions.import_users(self, doc.get("users", []))
            for item in doc.get("permissions", []):
                if item["user"] in self.auth.users and item["vhost"] in self.vhosts:
                    self.auth.set_permissions(item["user"], item["vhost"], item["configure"],
                                              item["write"], item["read"])
        finally:
            self._restoring = False
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

    async def stop_app(self, reason: str = "shutdown") -> None:
        """Close the AMQP listener and every connection (``rabbitmqctl stop_app``)."""
        for srv in self._servers:
            srv.close()
        for session in list(self.sessions):
            session.force_close(f"broker forced connection closure with reason '{reason}'",
                                0.0)
        for srv in self._servers:
            await srv.wait_closed()
        self._servers.clear()
        self.running = False
        self.flush_storage()

    def flush_storage(self) -> None:
        """Hook for the storage engine: make everything accepted so far durable when the
        listener closes. Today the stores sync on their own group commit and ``stop`` closes
        them (flushing the last batch), so there is nothing more to do here."""

    async def stop(self) -> None:
        self.alarms.stop()
        await self.stop_app()
        if self.stores is not None:
            await self.stores.close(
                [q.store for v in self.vhosts.values() for q in v.queues.values()])
            self.stores = None  # type: ignore[assignment]
        if self.http is not None:
            await self.http.stop()
            self.http = None
        if self._stopped is not None:
            self._stopped.set()

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError):
                pass
        await self.start()
        assert self._stopped is not None
        await self._stopped.wait()
        log.info("broker stopped")

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("received %s, shutting down", signal.Signals(sig).name)
        asyncio.ensure_future(self.stop())

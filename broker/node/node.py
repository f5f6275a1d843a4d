"""Node: one running broker, the only owner of the event loop.

It owns a ``Server`` (the state) and everything around it that needs the loop or the machine:
the AMQP (and AMQPS) listeners, signals, start / stop, recovery at boot (``boot``), the queue
stores and the data directory (``Stores``), the resource alarms' timer, and the services
started after the listener (the HTTP side, given by ``broker.ops.launch``). It is the
``Scheduler`` and store factory the server was given, and the ``AMQPHost`` every connection
sees (``broker.amqp.ports``: settings, durability, alarms).

Invariants:
- The AMQP listener is bound before any service starts: the management API and the Prometheus
  endpoint come up while the AMQP port already answers handshakes, so they cost cold start
  nothing.
- ``stop`` closes every connection with 320 CONNECTION_FORCED, freezes the queues' timers,
  then closes the stores (fsyncing the last batch and saving the definitions) before the
  services go: nothing changes a queue once its store is closed.
- Start and stop are ordered: a ``stop`` (SIGTERM) while ``start`` still waits on a listener or
  a service makes ``start`` give up at its next step (``StartAborted``), undo what it opened
  and return; the ``stop`` returns once it has. Nothing opens once a stop has begun
  (``stopping``: services check it too), and two stops never run at once.
- ``config`` may be replaced at runtime (``set_cluster_name``, tests): the server sees the new
  value too.
- Cluster mode (``clustering.ClusterMode``, on when etcd endpoints are configured) opens the
  state (``open_state``) only while this node leads, and drops it (``close_state``: every
  client closed first, then the stores, then a fresh ``Server``) when it stops leading.
  Callbacks the old state scheduled on the loop are dropped with it (a generation check).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from broker.amqp.ack_timeout import AckTimeouts
from broker.amqp.session import open_sessions
from broker.amqp.transport import AMQPProtocol
from broker.core import naming
from broker.core.server import ConnectionHandle, Server
from storage.store import StoreClosed

from . import boot, startup, tls
from .alarms import Alarms
from .config import Config
from .stores import Stores

if TYPE_CHECKING:
    from broker.amqp.ports import Durability
    from storage.datadir import DataDir
    from storage.replication import ReplicationSink
    from storage.store import QueueStore

    from .clustering import ClusterMode

log = logging.getLogger("broker")


class StartAborted(Exception):
    """``stop`` was called while ``start`` was running: ``start`` undid what it had started."""


class Service(Protocol):
    """Something the node starts after its AMQP listener and stops last."""

    async def start(self, node: Node) -> None: ...
    async def stop(self) -> None: ...


class Node:
    def __init__(self, config: Config, services: Sequence[Service] = ()) -> None:
        self._config = config
        # Set by start(), before which nothing reads it.
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.stores: Stores | None = None
        self.server = Server(config, self, self.make_store, self.make_exchange_store)
        self.alarms = Alarms(self)
        self.ack_timeouts = AckTimeouts(lambda: open_sessions(self.server),
                                        config.consumer_timeout,
                                        config.consumer_timeout_interval)
        self.services = list(services)
        self._listeners: list[asyncio.base_events.Server] = []
        self.port = config.port
        self.tls_port: int | None = None
        self.management_port: int | None = None
        self.prometheus_port: int | None = None
        self.running = False
        self._stopped: asyncio.Event | None = None
        self._starting: asyncio.Event | None = None  # set when a running start() has ended
        self._stop_asked = False
        self._stopping: asyncio.Future[None] | None = None
        self._durability: Durability | None = None
        self._generation = 0
        self._booted = False
        self.cluster: ClusterMode | None = None
        if config.etcd_endpoints:
            from .clustering import ClusterMode

            self.cluster = ClusterMode(self)

    @property
    def stopping(self) -> bool:
        """A stop has begun (or was asked for during start): nothing may open any more."""
        return self._stop_asked

    def _check_stopping(self) -> None:
        if self._stop_asked:
            raise StartAborted("the node is stopping")

    @property
    def config(self) -> Config:
        return self._config

    @config.setter
    def config(self, value: Config) -> None:
        self._config = value
        self.server.config = value
        self.ack_timeouts.default_ms = value.consumer_timeout

    # ---- Scheduler (for the server's queues) -------------------------------------------
    def now(self) -> float:
        return time.monotonic()

    def call_soon(self, callback: Callable[[], None]) -> None:
        if self.cluster is not None:
            callback = self._current(callback)
        self.loop.call_soon(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        if self.cluster is not None:
            callback = self._current(callback)
        return self.loop.call_later(delay, callback)

    def _current(self, callback: Callable[[], None]) -> Callable[[], None]:
        """``callback`` unless the state that scheduled it has been dropped meanwhile."""
        generation = self._generation

        def run() -> None:
            if generation == self._generation:
                callback()
        return run

    def make_store(self, vhost: str, queue_name: str, arguments: dict,
                   persistent: bool) -> QueueStore:
        """``StoreClosed`` once the stores are closed (a management request during a stop)."""
        if self.stores is None:
            raise StoreClosed("the node is stopping: its queue stores are closed")
        return self.stores.make(vhost, queue_name, arguments, persistent)

    def make_exchange_store(self, vhost: str, exchange: str, kind: str,
                            durable: bool) -> Any:
        """``StoreClosed`` once the stores are closed, as ``make_store``."""
        if self.stores is None:
            raise StoreClosed("the node is stopping: its queue stores are closed")
        return self.stores.make_exchange(vhost, exchange, kind, durable)

    # ---- AMQPHost ----------------------------------------------------------------------
    @property
    def durability(self) -> Durability:
        return self._durability or self

    def set_durability(self, durability: Durability | None) -> None:
        """What confirms wait for (cluster mode's leader: replicas too); None: the disk."""
        self._durability = durability

    def when_durable(self, callback: Callable[[bool], None]) -> None:
        """Call back once what was written so far is fsynced and the definitions document
        covers it: recovery drops the data of a queue the saved definitions do not know, so
        a confirm for a message in a queue declared a moment ago waits for that save too."""
        stores = self.stores
        assert stores is not None

        def fsynced(ok: bool) -> None:
            if ok:
                stores.when_saved(lambda: callback(True))
            else:
                callback(False)

        stores.when_durable(fsynced)

    def write_through(self) -> None:
        if self.stores is not None:
            self.stores.write_through()

    # ---- AlarmHost ---------------------------------------------------------------------
    def disk_free(self) -> int | None:
        return self.stores.data.disk_free() if self.stores is not None else None

    def connections(self) -> Iterable[ConnectionHandle]:
        return self.server.sessions

    # ---- durable definitions -----------------------------------------------------------
    def _persist(self) -> None:
        """The server's ``persist``: save the definitions soon (on the loop, once per turn)."""
        if self.stores is not None and self.loop is not None and self.loop.is_running():
            self.stores.definitions_changed()

    def reset(self) -> None:
        """``rabbitmqctl reset``: back to a blank node (the app must be stopped)."""
        self.server.reset()
        boot.boot_definitions(self.server, self.config)

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> int:
        """Start everything or nothing: a failure (``StartupError``: a port taken ...) stops
        what had started, releasing the data directory, and is raised."""
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._starting = asyncio.Event()
        self._stop_asked = False
        if self.config.node_name:
            naming.set_node_name(self.config.node_name)
        startup.log_banner(self.config)
        try:
            if self.cluster is None:
                await self.open_state()
            else:
                self.cluster.prepare()
            startup.log_limits(self.config)
            self.alarms.start()
            self.ack_timeouts.start(self.loop)
            await self.start_app()
            for service in self.services:
                self._check_stopping()
                await service.start(self)
            self._check_stopping()
            self._booted = True
            if self.cluster is not None:
                await self.cluster.start_app()  # advertises the ports bound above
                self._check_stopping()
        except BaseException as exc:
            if isinstance(exc, StartAborted):
                log.info("start-up interrupted: stopping")
            await self._shutdown()
            raise
        finally:
            started, self._starting = self._starting, None
            started.set()
        startup.log_complete(self.plugins())
        return self.port

    async def open_state(self, data: DataDir | None = None,
                         sink: ReplicationSink | None = None) -> None:
        """Open the stores and recover the state from the data directory (and the boot
        definitions); ``sink`` hears every change to the data directory (a cluster leader)."""
        server = self.server
        self.stores = Stores(data if data is not None else self.config.data_dir, self.now,
                             sink)
        self.stores.start(self.loop, lambda: boot.snapshot(server))
        server.persist = self._persist
        boot.recover(server, self.stores)
        boot.boot_definitions(server, self.config)

    async def close_state(self, reason: str) -> None:
        """Drop the state (cluster mode): close every client, close the stores, start from a
        blank ``Server``; what the old state scheduled on the loop is not run."""
        self._durability = None
        for session in list(self.server.sessions):
            session.force_close(f"broker forced connection closure with reason '{reason}'",
                                0.0)
        self._generation += 1
        stores, server = self.stores, self.server
        if stores is not None:
            await stores.close([q.store for v in server.vhosts.values()
                                for q in v.queues.values()])
        self.stores = None
        server.persist = None
        self.server = Server(self.config, self, self.make_store)

    def plugins(self) -> list[str]:
        """RabbitMQ's names for what runs beside AMQP."""
        return [name for name, on in (("rabbitmq_management", self.management_port),
                                      ("rabbitmq_prometheus", self.prometheus_port)) if on]

    def amqp_protocol(self) -> asyncio.Protocol:
        if self.cluster is not None:
            return self.cluster.amqp_protocol()
        return AMQPProtocol(self)

    def amqp_session(self) -> asyncio.Protocol:
        """A client connection served here (cluster mode: while leading or alone)."""
        return AMQPProtocol(self)

    async def start_app(self) -> None:
        """Open the AMQP listener (``rabbitmqctl start_app``); in cluster mode, take part in
        the cluster again. ``StartAborted`` once a stop has begun, closing whatever listener
        opened meanwhile."""
        self._check_stopping()
        if self._listeners:
            return
        try:
            await self._listen()
        except StartAborted:
            for srv in self._listeners:
                srv.close()
            self._listeners.clear()
            self.running = False
            raise
        if self.cluster is not None and self._booted:
            await self.cluster.start_app()

    async def _listen(self) -> None:
        cfg = self.config
        factory = self.amqp_protocol if self.cluster is not None else \
            (lambda: AMQPProtocol(self))
        try:
            srv = await self.loop.create_server(factory, cfg.host,
                                                self.port, reuse_address=True, backlog=1024)
        except OSError as exc:
            raise startup.port_error(cfg, "port", "AMQP", cfg.host, self.port, exc) from None
        self._listeners.append(srv)
        self.port = srv.sockets[0].getsockname()[1]
        self._check_stopping()  # no loop turn since it opened: it has accepted nobody yet
        self.running = True
        log.info("started TCP listener on %s:%d", cfg.host, self.port)
        if tls.enabled(cfg):
            host = cfg.ssl_host or cfg.host
            port = self.tls_port or cfg.ssl_port
            try:
                srv = await self.loop.create_server(
                    factory, host, port, ssl=tls.server_context(cfg),
                    reuse_address=True, backlog=1024,
                    ssl_handshake_timeout=cfg.handshake_timeout)
            except OSError as exc:
                raise startup.port_error(cfg, "ssl_port", "AMQP over TLS", host, port,
                                         exc) from None
            self._listeners.append(srv)
            self.tls_port = srv.sockets[0].getsockname()[1]
            self._check_stopping()
            log.info("started TLS (SSL) listener on %s:%d", host, self.tls_port)

    async def stop_app(self, reason: str = "shutdown") -> None:
        """Close the AMQP listener and every connection (``rabbitmqctl stop_app``); in cluster
        mode a leader hands over first (a follower takes over at once)."""
        if self.cluster is not None:
            await self.cluster.stop_app()
        for srv in self._listeners:
            srv.close()
        for session in list(self.server.sessions):
            session.force_close(f"broker forced connection closure with reason '{reason}'",
                                0.0)
        for srv in self._listeners:
            await srv.wait_closed()
        self._listeners.clear()
        self.running = False

    async def stop(self) -> None:
        """Stop everything that started. During ``start``: ``start`` gives up at its next step
        and undoes what it opened; this returns once it has. During a stop: waits for it."""
        self._stop_asked = True
        if self._starting is not None:
            await self._starting.wait()
            return
        if self._stopping is None or self._stopping.done():
            self._stopping = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._stopping)

    async def _shutdown(self) -> None:
        self._stop_asked = True
        self.alarms.stop()
        self.ack_timeouts.stop()
        await self.stop_app()
        if self.cluster is not None:
            await self.cluster.close()
        if self.stores is not None:
            self.server.freeze_queues()
            for vhost in self.server.vhosts.values():
                for ex in vhost.exchanges.values():
                    ex.close()  # a delayed exchange hands its store to the last fsync
            await self.stores.close(
                [q.store for v in self.server.vhosts.values() for q in v.queues.values()])
            self.stores = None
            self.server.persist = None
        for service in self.services:
            await service.stop()
        if self._stopped is not None:
            self._stopped.set()

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            await self.start()
        except StartAborted:
            log.info("broker stopped")
            return
        assert self._stopped is not None
        await self._stopped.wait()
        log.info("broker stopped")

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("received %s, shutting down", signal.Signals(sig).name)
        self._stop_asked = True  # now, not when the stop task first runs: see ``stopping``
        asyncio.ensure_future(self.stop())

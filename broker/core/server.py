"""Server: the root of the broker's state, and nothing else.

It holds the virtual hosts and their metadata, policies, users and permissions (``auth``), the
registry of open connections, the retired counters, the connection pid counter and the
direct reply-to registry. It owns no event loop, socket or file: the node (``broker.node``)
passes in a ``Scheduler`` (clock and loop callbacks, for the queues' timers and deferred
dispatch) and a store factory, and sets ``persist`` while its data directory is open.

Invariants:
- Users and permissions live in ``auth`` (``broker.core.users.AuthStore``) and are saved with
  the durable topology (the same definitions document), so they survive a restart. Vhost
  metadata is in ``vhost_meta``; ``policies[vhost]`` is the vhost's own policies dict.
- A vhost created at runtime grants its creator (``acting_user``; by default the default user)
  full permissions, as RabbitMQ does for the user who creates it; vhosts restored from disk or
  imported from definitions (inside ``restoring()``) grant nothing.
- Every change to durable state calls ``persist`` (when set): vhosts added once the node has
  recovered (``recovered``), vhosts deleted, users and permissions changed.
- Once ``freeze_queues`` has run (shutdown, before the stores close) no queue timer fires or
  is armed: no message expires and no queue is deleted by x-expires behind the stores' back.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

from protocol.tables import Table

from . import deadletter
from .credit import LoopLoad
from .jsondoc import JSONObject
from .queue import Cancellable
from .replyto import ReplyRegistry
from .stats import Counters
from .users import AuthStore
from .vhost import VirtualHost

if TYPE_CHECKING:
    from storage.message import Message
    from storage.store import QueueStore

    from .queue import Queue

log = logging.getLogger("broker")


class _Never:
    """The timer a frozen server hands out: it never fires."""

    def cancel(self) -> None:
        pass


_NEVER = _Never()


class ServerSettings(Protocol):
    """The settings the state root reads (the node's Config satisfies it)."""

    @property
    def default_user(self) -> str: ...
    @property
    def default_vhost(self) -> str: ...
    @property
    def loopback_users(self) -> tuple[str, ...]: ...
    @property
    def cluster_name(self) -> str: ...


class Scheduler(Protocol):
    """The clock and the loop callbacks the queues need (the node provides them)."""

    def now(self) -> float: ...
    def call_soon(self, callback: Callable[[], None]) -> None: ...
    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable: ...


StoreFactory = Callable[[str, str, Table, bool], "QueueStore"]
#: (vhost, exchange, exchange type, durable) -> the state store of an exchange type that keeps
#: messages (the delayed exchange's DelayStore) or a cache (deduplication)
ExchangeStoreFactory = Callable[[str, str, str, bool], object]


class ConnectionHandle(Protocol):
    """An open AMQP connection as the registry sees it (``broker.amqp.session.Session``)."""

    stats: Counters

    @property
    def vhost(self) -> VirtualHost | None: ...
    @property
    def published(self) -> bool: ...
    def force_close(self, text: str, delay: float = 1.0) -> None: ...
    def block(self, reason: str) -> None: ...
    def unblock(self) -> None: ...
    def totals(self) -> Counters:
        """The connection's counters with its open channels' (``broker.core.stats``)."""
        ...


class Server:
    def __init__(self, config: ServerSettings, scheduler: Scheduler,
                 make_store: StoreFactory,
                 make_exchange_store: ExchangeStoreFactory | None = None) -> None:
        self.config = config
        self.scheduler = scheduler
        self._make_store = make_store
        self._make_exchange_store = make_exchange_store
        self.vhosts: dict[str, VirtualHost] = {}
        self.vhost_meta: dict[str, JSONObject] = {}
        self.policies: dict[str, dict[str, JSONObject]] = {}
        self.auth = AuthStore(config.loopback_users)
        self.sessions: set[ConnectionHandle] = set()
        self.retired = Counters()
        self.connections_closed = 0
        self._pids = itertools.count(1000)
        self.replies = ReplyRegistry()
        self.load = LoopLoad()
        # Set by the transport while it handles a connection's input (see ``schedule``).
        self.handling_input = False
        self._woken: list[Queue] = []
        self.connection_count = 0
        self.started_at = time.time()
        # "Save the durable definitions soon": set by the node while its data directory is open.
        self.persist: Callable[[], None] | None = None
        self.recovered = False
        self.frozen = False  # freeze_queues
        self._restoring = False
        self.auth.watch(self)
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
            if self.persist is not None and self.recovered:
                vhost.on_durable_change = self.persist
                self.persist()
            grantee = self.config.default_user if acting_user is None else acting_user
            if not self._restoring and grantee in self.auth.users:
                self.auth.set_permissions(grantee, name, ".*", ".*", ".*")
        return vhost

    def update_vhost_meta(self, name: str, description: str | None = None,
                          tags: list[str] | None = None) -> None:
        """Change an existing vhost's description or tags (None leaves a field as it is)."""
        meta = self.vhost_meta[name]
        if description is not None:
            meta["description"] = description
        if tags is not None:
            meta["tags"] = list(tags)
        if self.persist is not None and self.recovered:
            self.persist()

    @contextmanager
    def restoring(self) -> Iterator[None]:
        """Vhosts declared inside (recovery, definitions import) grant nobody permissions."""
        self._restoring = True
        try:
            yield
        finally:
            self._restoring = False

    def invalidate(self) -> None:
        """Users or permissions changed: save them with the durable topology."""
        if self.persist is not None:
            self.persist()

    def delete_vhost(self, name: str) -> None:
        vhost = self.vhosts.pop(name)
        for session in [s for s in self.sessions if s.vhost is vhost]:
            session.force_close(f"vhost '{name}' is deleted")
        for queue in list(vhost.queues.values()):
            vhost.remove_queue(queue)
        for exchange in vhost.exchanges.values():
            exchange.detach()  # a delayed exchange drops what it holds, and its timer
        self.vhost_meta.pop(name, None)
        self.policies.pop(name, None)
        self.auth.forget_vhost(name)
        if self.persist is not None:
            self.persist()

    def reset(self) -> None:
        """``rabbitmqctl reset``'s state part: no vhosts but the default one, no users, no
        counters. The node then applies the boot definitions again."""
        for name in list(self.vhosts):
            self.delete_vhost(name)
        self.auth = AuthStore(self.config.loopback_users)
        self.auth.watch(self)
        self.retired = Counters()
        self.add_vhost(self.config.default_vhost, description="Default virtual host")

    def next_pid(self) -> str:
        """An Erlang-style process id naming a connection in logs and the management API."""
        return f"<0.{next(self._pids)}.0>"

    def retire(self, session: ConnectionHandle) -> None:
        """A closed session's counters (its channels already folded in) join the server's
        and its vhost's totals."""
        self.retired.add(session.stats)
        self.connections_closed += 1
        if session.vhost is not None:
            session.vhost.retired.add(session.stats)
        session.stats = Counters()

    def totals(self) -> Counters:
        """Every counter since boot: closed connections plus live ones (broker.core.stats)."""
        return Counters.total([self.retired, *(s.totals() for s in self.sessions)])

    def set_policy(self, vhost: str, name: str, policy: JSONObject) -> None:
        """Store a policy in the vhost, which applies it (``VirtualHost.set_policy``)."""
        self.vhosts[vhost].set_policy(name, policy["pattern"], policy["definition"],
                                      policy.get("priority", 0), policy.get("apply-to", "all"))

    def clear_policy(self, vhost: str, name: str) -> None:
        self.vhosts[vhost].clear_policy(name)

    def make_store(self, vhost: str, queue_name: str, arguments: Table,
                   persistent: bool) -> QueueStore:
        return self._make_store(vhost, queue_name, arguments, persistent)

    def exchange_store(self, vhost: str, exchange: str, kind: str, durable: bool) -> object:
        """A store for an exchange type that holds messages; None: keep them in RAM."""
        if self._make_exchange_store is None:
            return None
        return self._make_exchange_store(vhost, exchange, kind, durable)

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

    def freeze_queues(self) -> None:
        """Shutdown, before the stores close: cancel every queue's TTL and x-expires timer and
        arm none from now on. An expiry after the close would be half-saved (the dead letter
        in its target's store, the source's ack dropped) and repeated after the restart; left
        undone, it happens once, at the next boot."""
        self.frozen = True
        for vhost in self.vhosts.values():
            for queue in vhost.queues.values():
                queue.cancel_timers()

    # ---- QueueContext ------------------------------------------------------------------
    def now(self) -> float:
        return self.scheduler.now()

    def schedule(self, queue: Queue) -> None:
        if self.handling_input:
            # A connection's input is being handled (acks, qos...): dispatch before its
            # write, so the consumer gets the next messages one round trip sooner.
            self._woken.append(queue)
        else:
            self.scheduler.call_soon(lambda: self._run_scheduled(queue))

    def _run_scheduled(self, queue: Queue) -> None:
        started = time.perf_counter()
        queue.run_scheduled()
        self.load.busy += time.perf_counter() - started

    def run_woken(self) -> None:
        """Dispatch the queues woken while input was handled (each once; a queue that
        wants more goes to the next loop turn)."""
        woken, self._woken = self._woken, []
        self.handling_input = False
        for queue in woken:
            try:
                queue.run_scheduled()
            except Exception:  # one queue's failure must not leave the others unserved
                log.exception("dispatch of queue '%s' in vhost '%s' failed", queue.name,
                              queue.vhost)

    def saturated(self) -> bool:
        return self.load.saturated(self.scheduler.now())

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        if self.frozen:
            return _NEVER
        return self.scheduler.call_later(delay, callback)

    def dead_letter(self, queue: Queue, message: Message, reason: str) -> None:
        deadletter.dead_letter(self.vhosts[queue.vhost], queue, message, reason)

    def expire_queue(self, queue: Queue) -> None:
        vhost = self.vhosts.get(queue.vhost)
        if vhost is not None:
            vhost.remove_queue(queue)

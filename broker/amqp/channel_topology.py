"""Channel handlers for the exchange.* and queue.* classes.

A mixin of Channel: each handler resolves names (the ``""`` last-queue shortcut, exclusive locks)
and calls the VirtualHost, which holds the rules. Replies go out through ``self.reply``.
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING

from pamqp import commands as C

from broker.core.queue import Queue
from broker.core.replyto import REPLY_QUEUE
from broker.core.vhost import DEFAULT_EXCHANGE_DENIED
from protocol import codec
from protocol.errors import AccessRefused, NotFound, PreconditionFailed, ResourceLocked

from .access import check_new_queue

if TYPE_CHECKING:
    from broker.core.vhost import VirtualHost
    from protocol.connection import ConnectionMachine

    from .ports import ChannelOwner


def random_name(prefix: str) -> str:
    return prefix + base64.urlsafe_b64encode(os.urandom(16)).decode()[:22]


class TopologyHandlers:
    session: ChannelOwner
    vhost: VirtualHost
    last_queue: str | None
    number: int
    machine: ConnectionMachine
    reply_address: str | None

    def reply(self, method: C.base.Frame) -> None:
        raise NotImplementedError

    # ---- helpers -----------------------------------------------------------------------
    def _queue_name(self, name: str) -> str:
        if name:
            return name
        if self.last_queue is None:
            raise NotFound("no previously declared queue")
        return self.last_queue

    def _check_lock(self, queue: Queue) -> None:
        owner = queue.exclusive_owner
        if owner is not None and owner is not self.session:
            raise self._locked(queue.name)

    def _locked(self, name: str) -> ResourceLocked:
        return ResourceLocked(
            f"cannot obtain exclusive access to locked queue '{name}' in vhost "
            f"'{self.vhost.name}'. It could be originally declared on another connection "
            "or the exclusive property value does not match that of the original "
            "declaration.")

    def usable_queue(self, name: str) -> Queue:
        queue = self.vhost.queue(self._queue_name(name))
        self._check_lock(queue)
        return queue

    # ---- exchange ----------------------------------------------------------------------
    def on_exchange_declare(self, m: C.Exchange.Declare) -> None:
        self.vhost.declare_exchange(m.exchange, m.exchange_type, passive=m.passive,
                                    durable=m.durable, auto_delete=m.auto_delete,
                                    internal=m.internal, arguments=m.arguments)
        if not m.nowait:
            self.reply(C.Exchange.DeclareOk())

    def on_exchange_delete(self, m: C.Exchange.Delete) -> None:
        self.vhost.delete_exchange(m.exchange, m.if_unused)
        if not m.nowait:
            self.reply(C.Exchange.DeleteOk())

    def on_exchange_bind(self, m: C.Exchange.Bind) -> None:
        if m.source == "" or m.destination == "":
            raise AccessRefused(DEFAULT_EXCHANGE_DENIED)
        destination = self.vhost.exchange(m.destination)
        source = self.vhost.exchange(m.source)
        self.vhost.bind(source, destination, m.routing_key, m.arguments)
        if not m.nowait:
            self.reply(C.Exchange.BindOk())

    def on_exchange_unbind(self, m: C.Exchange.Unbind) -> None:
        if m.source == "" or m.destination == "":
            raise AccessRefused(DEFAULT_EXCHANGE_DENIED)
        source = self.vhost.exchanges.get(m.source)
        destination = self.vhost.exchanges.get(m.destination)
        if source is not None and destination is not None:
            self.vhost.unbind(source, destination, m.routing_key, m.arguments)
        if not m.nowait:
            self.reply(C.Exchange.UnbindOk())

    # ---- queue -------------------------------------------------------------------------
    def on_queue_declare(self, m: C.Queue.Declare) -> None:
        vhost = self.vhost
        name = m.queue
        if m.passive and name == REPLY_QUEUE:
            consuming = self.reply_address is not None
            self.machine.send_raw(codec.declare_ok_frame(self.number, name, 0, int(consuming)))
            return
        if m.passive:
            queue = vhost.queue(name)
            self._check_lock(queue)
        else:
            server_named = not name
            if server_named:
                kind = (m.arguments or {}).get("x-queue-type")
                if kind in ("quorum", "stream"):
                    raise PreconditionFailed("Cannot declare a server-named queue for type "
                                             f"rabbit_{kind}_queue")
                name = random_name("amq.gen-")
                if self.session.authz is not None:
                    check_new_queue(self.session.authz, name, m.arguments)
            existing = vhost.queues.get(name)
            if existing is not None:
                self._check_lock(existing)
                if existing.exclusive != bool(m.exclusive):
                    raise self._locked(name)
            owner = self.session if m.exclusive else None
            queue = vhost.declare_queue(name, durable=m.durable, exclusive_owner=owner,
                                        auto_delete=m.auto_delete, arguments=m.arguments,
                                        server_named=server_named)
            if owner is not None and existing is None:
                self.session.exclusive_queues.add(queue)
        self.last_queue = queue.name
        if not m.nowait:
            self.machine.send_raw(codec.declare_ok_frame(
                self.number, queue.name, queue.message_count, queue.consumer_count))

    def on_queue_bind(self, m: C.Queue.Bind) -> None:
        if m.exchange == "":
            raise AccessRefused(DEFAULT_EXCHANGE_DENIED)
        queue_name = self._queue_name(m.queue)
        exchange = self.vhost.exchange(m.exchange)
        queue = self.usable_queue(queue_name)
        self.vhost.bind(exchange, queue, m.routing_key, m.arguments)
        if not m.nowait:
            self.reply(C.Queue.BindOk())

    def on_queue_unbind(self, m: C.Queue.Unbind) -> None:
        if m.exchange == "":
            raise AccessRefused(DEFAULT_EXCHANGE_DENIED)
        queue = self.vhost.queues.get(self._queue_name(m.queue))
        exchange = self.vhost.exchanges.get(m.exchange)
        if queue is not None and exchange is not None:
            self.vhost.unbind(exchange, queue, m.routing_key, m.arguments)
        self.reply(C.Queue.UnbindOk())

    def on_queue_purge(self, m: C.Queue.Purge) -> None:
        queue = self.usable_queue(m.queue)
        count = queue.purge()
        if not m.nowait:
            self.reply(C.Queue.PurgeOk(count))

    def on_queue_delete(self, m: C.Queue.Delete) -> None:
        name = self._queue_name(m.queue)
        queue = self.vhost.queues.get(name)
        if queue is None:
            if not m.nowait:
                self.reply(C.Queue.DeleteOk(0))
            return
        self._check_lock(queue)
        count = self.vhost.check_delete(queue, m.if_unused, m.if_empty)
        if not m.nowait:
            self.reply(C.Queue.DeleteOk(count))
        self.vhost.remove_queue(queue)
        self.session.exclusive_queues.discard(queue)

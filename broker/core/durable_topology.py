"""Durable topology: what survives a restart, as one document, and how it comes back.

The document has the shape of RabbitMQ's definitions export (vhosts, exchanges, queues,
bindings, policies). Only durable things are in it: durable exchanges (not the predeclared
ones), durable non-exclusive queues, bindings whose source and destination are both durable,
and every vhost (with its description, tags and default queue type) and policy. Restoring
declares them again in dependency order; each durable queue reopens its own message store.
Arguments keep the AMQP type each number came in (``argument_types``), which RabbitMQ's
equivalence texts name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocol.tables import Table, wire_types, with_wire_types

from .exchanges import Destination, Exchange
from .jsondoc import JSONObject
from .queue import Queue
from .vhost import SYSTEM_EXCHANGES

if TYPE_CHECKING:
    from .server import Server
    from .vhost import VirtualHost

_SYSTEM = {name for name, _ in SYSTEM_EXCHANGES} | {""}


def _durable_queue(queue: Queue) -> bool:
    return queue.durable and queue.exclusive_owner is None


def _durable_destination(dest: Destination) -> bool:
    if isinstance(dest, Queue):
        return _durable_queue(dest)
    return isinstance(dest, Exchange) and dest.durable


def snapshot_vhost(vhost: VirtualHost, doc: JSONObject) -> None:
    name = vhost.name
    doc["vhosts"].append({"name": name, "limits": dict(vhost.limits)})
    for ex in vhost.exchanges.values():
        if ex.durable and ex.name not in _SYSTEM:
            doc["exchanges"].append({
                "vhost": name, "name": ex.name, "type": ex.type_name, "durable": True,
                "auto_delete": ex.auto_delete, "internal": ex.internal,
                **_arguments(ex.arguments)})
    for queue in vhost.queues.values():
        if _durable_queue(queue):
            doc["queues"].append({
                "vhost": name, "name": queue.name, "durable": True,
                "auto_delete": queue.auto_delete, **_arguments(queue.arguments)})
    for ex in vhost.exchanges.values():
        if not (ex.durable and ex.name):
            continue
        for binding in ex.bindings.values():
            dest = binding.destination
            if not _durable_destination(dest):
                continue
            doc["bindings"].append({
                "vhost": name, "source": ex.name, "destination": dest.name,
                "destination_type": "queue" if isinstance(dest, Queue) else "exchange",
                "routing_key": binding.routing_key, **_arguments(binding.arguments)})
    for pname, policy in vhost.policies.items():
        doc["policies"].append({"vhost": name, "name": pname, **policy})
    for pname, policy in vhost.operator_policies.items():
        doc.setdefault("operator_policies", []).append({"vhost": name, "name": pname, **policy})


def _arguments(arguments: Table) -> JSONObject:
    """``arguments``, and the AMQP type each number came in when it is not what a plain int
    or float would be taken for: RabbitMQ's texts name it (``of type 'short'``) after a
    restart too."""
    item: JSONObject = {"arguments": arguments}
    types = wire_types(arguments)
    if types:
        item["argument_types"] = types
    return item


def _restored(item: JSONObject) -> Table:
    return with_wire_types(item.get("arguments") or {}, item.get("argument_types") or {})


def snapshot(server: Server) -> JSONObject:
    doc: JSONObject = {"version": 1, "vhosts": [], "exchanges": [], "queues": [], "bindings": [],
                 "policies": []}
    for vhost in server.vhosts.values():
        snapshot_vhost(vhost, doc)
        doc["vhosts"][-1].update(server.vhost_meta.get(vhost.name, {}))
    return doc


def restore(server: Server, doc: JSONObject) -> None:
    for item in doc.get("vhosts", []):
        vhost = server.add_vhost(item["name"], item.get("description", ""),
                                 list(item.get("tags") or []),
                                 item.get("default_queue_type", "classic"))
        vhost.limits = dict(item.get("limits") or {})
        server.update_vhost_meta(item["name"], item.get("description"), item.get("tags"))
    for item in doc.get("exchanges", []):
        vhost = server.add_vhost(item["vhost"])
        vhost.declare_exchange(item["name"], item["type"], durable=True,
                               auto_delete=item.get("auto_delete", False),
                               internal=item.get("internal", False),
                               arguments=_restored(item))
    for item in doc.get("queues", []):
        vhost = server.add_vhost(item["vhost"])
        vhost.declare_queue(item["name"], durable=True,
                            auto_delete=item.get("auto_delete", False),
                            arguments=_restored(item), server_named=True)
    for item in doc.get("bindings", []):
        vhost = server.add_vhost(item["vhost"])
        source = vhost.exchanges.get(item["source"])
        if item.get("destination_type") == "exchange":
            dest: Queue | Exchange | None = vhost.exchanges.get(item["destination"])
        else:
            dest = vhost.queues.get(item["destination"])
        if source is not None and dest is not None:
            vhost.bind(source, dest, item.get("routing_key", ""), _restored(item))
    for item in doc.get("policies", []):
        vhost = server.add_vhost(item["vhost"])
        vhost.set_policy(item["name"], item.get("pattern", ""), item.get("definition") or {},
                         int(item.get("priority", 0)), item.get("apply-to", "all"))
    for item in doc.get("operator_policies", []):
        vhost = server.add_vhost(item["vhost"])
        vhost.set_operator_policy(item["name"], item.get("pattern", ""),
                                  item.get("definition") or {}, int(item.get("priority", 0)),
                                  item.get("apply-to", "queues"))

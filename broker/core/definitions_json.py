"""Definitions: the whole configuration as RabbitMQ's JSON (users, vhosts, permissions,
policies, queues, exchanges, bindings), exported and imported in the shape the management API's
``/api/definitions`` uses, so files move between RabbitMQ and burrowmq unchanged.

Export follows rabbit_mgmt_wm_definitions: exclusive queues, the default exchange and ``amq.*``
exchanges are left out, and a binding is kept when its source is a named exchange and its
destination is an exported queue or a named exchange. Import is additive and idempotent
(declaring what already exists with the same properties is a no-op), in dependency order.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import users
from .jsondoc import JSONObject
from .naming import RABBITMQ_VERSION
from .queue import Queue

if TYPE_CHECKING:
    from .exchanges import Binding, Exchange
    from .server import Server
    from .vhost import VirtualHost

log = logging.getLogger("broker.definitions")


class DefinitionsError(ValueError):
    """The definitions document is malformed."""


def read_file(path: str) -> JSONObject:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise DefinitionsError(f"could not read definitions from {path}: {reason}") from None
    if not isinstance(data, dict):
        raise DefinitionsError(f"{path}: a JSON object was expected")
    return data


# ---- export ----------------------------------------------------------------------------
def vhost_json(server: Server, name: str) -> JSONObject:
    meta = server.vhost_meta.get(name, {})
    metadata = {"description": meta.get("description", ""), "tags": meta.get("tags", []),
                "default_queue_type": meta.get("default_queue_type", "classic")}
    return {"name": name, **metadata, "metadata": metadata}


def permissions_json(server: Server) -> list[JSONObject]:
    return [{"user": user, "vhost": vhost, "configure": p.configure, "write": p.write,
             "read": p.read} for (user, vhost), p in sorted(server.auth.permissions.items())]


def policies_json(server: Server, vhost: str | None = None) -> list[JSONObject]:
    out: list[JSONObject] = []
    for vname, policies in sorted(server.policies.items()):
        if vhost is None or vname == vhost:
            out.extend({"vhost": vname, "name": name, **policy}
                       for name, policy in sorted(policies.items()))
    return out


def queue_json(queue: Queue) -> JSONObject:
    return {"name": queue.name, "vhost": queue.vhost, "durable": queue.durable,
            "auto_delete": queue.auto_delete, "arguments": dict(queue.arguments)}


def exchange_json(ex: Exchange) -> JSONObject:
    return {"name": ex.name, "vhost": ex.vhost, "type": ex.type_name, "durable": ex.durable,
            "auto_delete": ex.auto_delete, "internal": ex.internal,
            "arguments": dict(ex.arguments)}


def binding_json(vhost: str, binding: Binding) -> JSONObject:
    dest = binding.destination
    return {"source": binding.source, "vhost": vhost, "destination": dest.name,
            "destination_type": "queue" if isinstance(dest, Queue) else "exchange",
            "routing_key": binding.routing_key, "arguments": dict(binding.arguments)}


def topology_json(vhost: VirtualHost) -> tuple[list[JSONObject], list[JSONObject],
                                                list[JSONObject]]:
    queues = [queue_json(q) for q in vhost.queues.values() if not q.exclusive]
    exported = {q["name"] for q in queues}
    exchanges = [exchange_json(x) for name, x in vhost.exchanges.items()
                 if name and not name.startswith("amq.")]
    bindings = []
    for binding in vhost.bindings_of():
        dest = binding.destination
        keep = binding.source != "" and (
            (isinstance(dest, Queue) and dest.name in exported)
            or (not isinstance(dest, Queue) and dest.name != ""))
        if keep:
            bindings.append(binding_json(vhost.name, binding))
    return queues, exchanges, bindings


def limits_json(server: Server, vhost: str | None = None) -> list[JSONObject]:
    """Vhost limits, as RabbitMQ exports them: runtime parameters of the ``vhost-limits``
    component, named ``limits``."""
    return [{"value": dict(vh.limits), "vhost": name, "component": "vhost-limits",
             "name": "limits"} for name, vh in server.vhosts.items()
            if vh.limits and (vhost is None or name == vhost)]


def import_limits(server: Server, parameters: list[JSONObject], vhost: str | None = None) -> None:
    for item in parameters:
        if item.get("component") != "vhost-limits" or not isinstance(item.get("value"), dict):
            continue
        target = server.add_vhost(vhost or item["vhost"], acting_user="")
        target.limits.update({k: int(v) for k, v in item["value"].items()
                              if k in ("max-connections", "max-queues")})


def export_all(server: Server) -> JSONObject:
    queues: list[JSONObject] = []
    exchanges: list[JSONObject] = []
    bindings: list[JSONObject] = []
    for vhost in server.vhosts.values():
        q, x, b = topology_json(vhost)
        queues += q
        exchanges += x
        bindings += b
    return {"rabbit_version": RABBITMQ_VERSION, "rabbitmq_version": RABBITMQ_VERSION,
            "product_name": "RabbitMQ", "product_version": RABBITMQ_VERSION,
            "users": [u.as_json() for u in server.auth.users.values()],
            "vhosts": [vhost_json(server, name) for name in server.vhosts],
            "permissions": permissions_json(server),
            "topic_permissions": list(server.auth.topic_permissions),
            "parameters": limits_json(server), "global_parameters": [],
            "policies": policies_json(server),
            "queues": queues, "exchanges": exchanges, "bindings": bindings}


def export_vhost(server: Server, name: str) -> JSONObject:
    queues, exchanges, bindings = topology_json(server.vhosts[name])

    def strip(items: list[JSONObject]) -> list[JSONObject]:
        return [{k: v for k, v in item.items() if k != "vhost"} for item in items]

    return {"rabbit_version": RABBITMQ_VERSION,
            "parameters": strip(limits_json(server, name)),
            "policies": strip(policies_json(server, name)), "queues": strip(queues),
            "exchanges": strip(exchanges), "bindings": strip(bindings)}


# ---- import ----------------------------------------------------------------------------
def _tags(value: Any) -> list[str]:
    """Any: a definitions file's "tags", a comma-separated string or a list (3.13 vs older)."""
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    return [str(t) for t in value or []]


def import_users(server: Server, items: list[JSONObject]) -> None:
    for item in items:
        algorithm = item.get("hashing_algorithm") or users.HASHING_ALGORITHM
        if "password_hash" in item:
            user = server.auth.add_user(item["name"], tags=_tags(item.get("tags")),
                                        password_hash=users.decode_hash(item["password_hash"]),
                                        algorithm=algorithm)
        else:
            user = server.auth.add_user(item["name"], item.get("password", ""),
                                        _tags(item.get("tags")))
        limits = item.get("limits")
        if isinstance(limits, dict):
            user.limits = {k: int(v) for k, v in limits.items()
                           if k in ("max-connections", "max-channels")}


def import_vhosts(server: Server, vhosts: list[JSONObject]) -> None:
    for item in vhosts:
        meta = item.get("metadata") or {}
        server.add_vhost(item["name"], item.get("description", meta.get("description", "")),
                         _tags(item.get("tags", meta.get("tags"))),
                         item.get("default_queue_type",
                                  meta.get("default_queue_type", "classic")), acting_user="")


def import_policies(server: Server, policies: list[JSONObject], vhost: str | None = None) -> None:
    for item in policies:
        name = vhost or item["vhost"]
        server.add_vhost(name, acting_user="")
        server.set_policy(name, item["name"], {
            "pattern": item["pattern"], "apply-to": item.get("apply-to", "all"),
            "priority": int(item.get("priority", 0)), "definition": item.get("definition", {})})


def import_topology(server: Server, data: JSONObject, vhost: str | None = None) -> None:
    for item in data.get("exchanges", []):
        vh = server.add_vhost(vhost or item["vhost"], acting_user="")
        vh.declare_exchange(item["name"], item.get("type", "direct"),
                            durable=item.get("durable", True),
                            auto_delete=item.get("auto_delete", False),
                            internal=item.get("internal", False),
                            arguments=item.get("arguments") or {})
    for item in data.get("queues", []):
        vh = server.add_vhost(vhost or item["vhost"], acting_user="")
        vh.declare_queue(item["name"], durable=item.get("durable", True),
                         auto_delete=item.get("auto_delete", False),
                         arguments=item.get("arguments") or {})
    for item in data.get("bindings", []):
        vh = server.vhosts[vhost or item["vhost"]]
        source = vh.exchange(item["source"])
        if item.get("destination_type", "queue") == "queue":
            dest: Queue | Exchange = vh.queue(item["destination"])
        else:
            dest = vh.exchange(item["destination"])
        vh.bind(source, dest, item.get("routing_key", ""), item.get("arguments") or {})


def import_all(server: Server, data: JSONObject) -> None:
    try:
        import_users(server, data.get("users", []))
        import_vhosts(server, data.get("vhosts", []))
        for item in data.get("permissions", []):
            server.add_vhost(item["vhost"], acting_user="")
            server.auth.set_permissions(item["user"], item["vhost"], item.get("configure", ""),
                                        item.get("write", ""), item.get("read", ""))
        for item in data.get("topic_permissions", []):
            server.add_vhost(item["vhost"], acting_user="")
            server.auth.set_topic_permission(item["user"], item["vhost"],
                                             item.get("exchange", ""), item.get("write", ""),
                                             item.get("read", ""))
        import_limits(server, data.get("parameters", []))
        import_policies(server, data.get("policies", []))
        import_topology(server, data)
    except (KeyError, TypeError, users.UnknownUser) as exc:
        raise DefinitionsError(f"malformed definitions: missing or wrong {exc}") from None


def import_vhost(server: Server, name: str, data: JSONObject) -> None:
    try:
        import_limits(server, data.get("parameters", []), name)
        import_policies(server, data.get("policies", []), name)
        import_topology(server, data, name)
    except (KeyError, TypeError) as exc:
        raise DefinitionsError(f"malformed definitions: missing or wrong {exc}") from None

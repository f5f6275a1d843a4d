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

from protocol.errors import AMQPError

from . import users, validation
from .jsondoc import JSONObject
from .naming import RABBITMQ_VERSION
from .queue import Queue
from .validation import Fields, InvalidInput

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


def import_limits(server: Server, parameters: list[JSONObject],
                  vhost: str | None = None) -> None:
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
            "topic_permissions": server.auth.topic_permissions,
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
# Every section is checked as it is read (validation.Fields): a field of the wrong type, a
# regex that does not compile, a broken password hash or an x-argument RabbitMQ would refuse
# is a DefinitionsError naming the item, never an exception from deeper down. Import is not
# atomic (neither is RabbitMQ's): what came before the bad item stays.
def import_users(server: Server, items: list[Fields]) -> None:
    for item in items:
        name = item.text("name")
        algorithm = item.text("hashing_algorithm", "") or users.HASHING_ALGORITHM
        if algorithm not in users.DIGESTS:
            raise InvalidInput(f"{item.where}: unknown hashing algorithm {algorithm}")
        tags = item.tags()
        if item.has("password_hash"):
            try:
                digest = users.decode_hash(item.text("password_hash"))
            except ValueError:
                raise InvalidInput(f"{item.where}.password_hash is not base64") from None
            user = server.auth.add_user(name, tags=tags, password_hash=digest,
                                        algorithm=algorithm)
        else:
            user = server.auth.add_user(name, item.text("password", ""), tags)
        limits = item.mapping("limits")
        user.limits = {k: Fields(limits, f"{item.where}.limits").integer(k, 0) or 0
                       for k in ("max-connections", "max-channels") if k in limits}


def import_vhosts(server: Server, items: list[Fields]) -> None:
    for item in items:
        meta = Fields(item.mapping("metadata"), f"{item.where}.metadata")
        server.add_vhost(item.text("name"), item.text("description", meta.text("description", "")),
                         item.tags() if item.has("tags") else meta.tags(),
                         item.text("default_queue_type",
                                  meta.text("default_queue_type", "classic")), acting_user="")


def import_permissions(server: Server, items: list[Fields]) -> None:
    for item in items:
        user, vhost = item.text("user"), item.text("vhost")
        perms = [item.regex(k, "") for k in ("configure", "write", "read")]
        server.add_vhost(vhost, acting_user="")
        server.auth.set_permissions(user, vhost, *perms)


def import_topic_permissions(server: Server, items: list[Fields]) -> None:
    for item in items:
        user, vhost, exchange = item.text("user"), item.text("vhost"), item.text("exchange")
        write, read = item.regex("write", ""), item.regex("read", "")
        server.add_vhost(vhost, acting_user="")
        server.auth.set_topic_permission(user, vhost, exchange, write, read)


def import_policies(server: Server, items: list[Fields], vhost: str | None = None) -> None:
    for item in items:
        name = vhost or item.text("vhost")
        policy_name = item.text("name")
        try:
            pattern, definition, priority, apply_to = validation.check_policy(item)
        except InvalidInput as exc:
            raise InvalidInput(f"{item.where}: {exc.reason}") from None
        server.add_vhost(name, acting_user="")
        server.set_policy(name, policy_name, {"pattern": pattern, "apply-to": apply_to,
                                              "priority": priority, "definition": definition})


def import_topology(server: Server, data: JSONObject, vhost: str | None = None) -> None:
    for item in validation.items(data, "exchanges"):
        vh = server.add_vhost(vhost or item.text("vhost"), acting_user="")
        vh.declare_exchange(item.text("name"), item.text("type", "direct"),
                            durable=item.flag("durable", True),
                            auto_delete=item.flag("auto_delete", False),
                            internal=item.flag("internal", False),
                            arguments=item.mapping("arguments"))
    for item in validation.items(data, "queues"):
        vh = server.add_vhost(vhost or item.text("vhost"), acting_user="")
        vh.declare_queue(item.text("name"), durable=item.flag("durable", True),
                         auto_delete=item.flag("auto_delete", False),
                         arguments=item.mapping("arguments"))
    for item in validation.items(data, "bindings"):
        found = server.vhosts.get(vhost or item.text("vhost"))
        if found is None:
            raise InvalidInput(f"{item.where}: no vhost '{item.text('vhost')}'")
        source = found.exchange(item.text("source"))
        kind = item.choice("destination_type", "queue", ("queue", "exchange"),
                           "destination type")
        dest: Any = found.queue(item.text("destination")) if kind == "queue" \
            else found.exchange(item.text("destination"))
        found.bind(source, dest, item.text("routing_key", ""), item.mapping("arguments"))


def _importing(fn: Any) -> Any:
    """Any failure of an import becomes one DefinitionsError line."""
    def run(*args: Any) -> None:
        try:
            fn(*args)
        except DefinitionsError:
            raise
        except InvalidInput as exc:
            raise DefinitionsError(str(exc.reason)) from None
        except AMQPError as err:
            raise DefinitionsError(err.text) from None
        except (KeyError, TypeError, ValueError, users.UnknownUser) as exc:
            raise DefinitionsError(f"malformed definitions: {exc}") from None
    return run


@_importing
def import_all(server: Server, data: JSONObject) -> None:
    import_users(server, validation.items(data, "users"))
    import_vhosts(server, validation.items(data, "vhosts"))
    import_permissions(server, validation.items(data, "permissions"))
    import_topic_permissions(server, validation.items(data, "topic_permissions"))
    import_limits(server, [i.data for i in validation.items(data, "parameters")])
    import_policies(server, validation.items(data, "policies"))
    import_topology(server, data)


@_importing
def import_vhost(server: Server, name: str, data: JSONObject) -> None:
    import_limits(server, [i.data for i in validation.items(data, "parameters")], name)
    import_policies(server, validation.items(data, "policies"), name)
    import_topology(server, data, name)

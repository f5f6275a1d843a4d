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
from .naming import RABBITMQ_VERSION
from .queue import Queue
from .validation import Fields, InvalidInput

if TYPE_CHECKING:
    from .server import Server
    from .vhost import VirtualHost

log = logging.getLogger("broker.definitions")


class DefinitionsError(ValueError):
    """The definitions document is malformed."""


def read_file(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise DefinitionsError(f"could not read definitions from {path}: {reason}") from None
    if not isinstance(data, dict):
        raise DefinitionsError(f"{path}: a JSON object was expected")
    return data


# ---- export ----------------------------------------------------------------------------
def vhost_json(server: Server, name: str) -> dict:
    meta = server.vhost_meta.get(name, {})
    metadata = {"description": meta.get("description", ""), "tags": meta.get("tags", []),
                "default_queue_type": meta.get("default_queue_type", "classic")}
    return {"name": name, **metadata, "metadata": metadata}


def permissions_json(server: Server) -> list[dict]:
    return [{"user": user, "vhost": vhost, "configure": p.configure, "write": p.write,
             "read": p.read} for (user, vhost), p in sorted(server.auth.permissions.items())]


def policies_json(server: Server, vhost: str | None = None) -> list[dict]:
    out = []
    for vname, policies in sorted(server.policies.items()):
        if vhost is None or vname == vhost:
            out.extend({"vhost": vname, "name": name, **policy}
                       for name, policy in sorted(policies.items()))
    return out


def queue_json(queue: Queue) -> dict:
    return {"name": queue.name, "vhost": queue.vhost, "durable": queue.durable,
            "auto_delete": queue.auto_delete, "arguments": dict(queue.arguments)}


def exchange_json(ex: Any) -> dict:
    return {"name": ex.name, "vhost": ex.vhost, "type": ex.type_name, "durable": ex.durable,
            "auto_delete": ex.auto_delete, "internal": ex.internal,
            "arguments": dict(ex.arguments)}


def binding_json(vhost: str, binding: Any) -> dict:
    dest = binding.destination
    return {"source": binding.source, "vhost": vhost, "destination": dest.name,
            "destination_type": "queue" if isinstance(dest, Queue) else "exchange",
            "routing_key": binding.routing_key, "arguments": dict(binding.arguments)}


def topology_json(vhost: VirtualHost) -> tuple[list[dict], list[dict], list[dict]]:
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


def export_all(server: Server) -> dict:
    queues: list[dict] = []
    exchanges: list[dict] = []
    bindings: list[dict] = []
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
            "topic_permissions": server.auth.topic_permissions_json(),
            "parameters": [], "global_parameters": [],
            "policies": policies_json(server),
            "queues": queues, "exchanges": exchanges, "bindings": bindings}


def export_vhost(server: Server, name: str) -> dict:
    queues, exchanges, bindings = topology_json(server.vhosts[name])

    def strip(items: list[dict]) -> list[dict]:
        return [{k: v for k, v in item.items() if k != "vhost"} for item in items]

    return {"rabbit_version": RABBITMQ_VERSION, "parameters": [],
            "policies": strip(policies_json(server, name)), "queues": strip(queues),
            "exchanges": strip(exchanges), "bindings": strip(bindings)}


# ---- import ----------------------------------------------------------------------------
# Every section is checked as it is read (validation.Fields): a field of the wrong type, a
# regex that does not compile, a broken password hash or an x-argument RabbitMQ would refuse
# is a DefinitionsError naming the item, never an exception from deeper down. Import is not
# atomic (neither is RabbitMQ's): what came before the bad item stays.
def import_users(server: Server, items: list[Fields]) -> None:
    for item in items:
        name = item.str("name")
        algorithm = item.str("hashing_algorithm", "") or users.HASHING_ALGORITHM
        if algorithm not in users.DIGESTS:
            raise InvalidInput(f"{item.where}: unknown hashing algorithm {algorithm}")
        tags = item.tags()
        if item.has("password_hash"):
            try:
                digest = users.decode_hash(item.str("password_hash"))
            except ValueError:
                raise InvalidInput(f"{item.where}.password_hash is not base64") from None
            server.auth.add_user(name, tags=tags, password_hash=digest, algorithm=algorithm)
        else:
            server.auth.add_user(name, item.str("password", ""), tags)


def import_vhosts(server: Server, items: list[Fields]) -> None:
    for item in items:
        meta = Fields(item.dict("metadata"), f"{item.where}.metadata")
        server.add_vhost(item.str("name"), item.str("description", meta.str("description", "")),
                         item.tags() if item.has("tags") else meta.tags(),
                         item.str("default_queue_type",
                                  meta.str("default_queue_type", "classic")), acting_user="")


def import_permissions(server: Server, items: list[Fields]) -> None:
    for item in items:
        user, vhost = item.str("user"), item.str("vhost")
        perms = [item.regex(k, "") for k in ("configure", "write", "read")]
        server.add_vhost(vhost, acting_user="")
        server.auth.set_permissions(user, vhost, *perms)


def import_topic_permissions(server: Server, items: list[Fields]) -> None:
    for item in items:
        user, vhost, exchange = item.str("user"), item.str("vhost"), item.str("exchange")
        write, read = item.regex("write", ""), item.regex("read", "")
        server.add_vhost(vhost, acting_user="")
        server.auth.set_topic_permissions(user, vhost, exchange, write, read)


def import_policies(server: Server, items: list[Fields], vhost: str | None = None) -> None:
    for item in items:
        name = vhost or item.str("vhost")
        policy_name = item.str("name")
        try:
            pattern, definition, priority, apply_to = validation.check_policy(item)
        except InvalidInput as exc:
            raise InvalidInput(f"{item.where}: {exc.reason}") from None
        server.add_vhost(name, acting_user="")
        server.set_policy(name, policy_name, {"pattern": pattern, "apply-to": apply_to,
                                              "priority": priority, "definition": definition})


def import_topology(server: Server, data: dict, vhost: str | None = None) -> None:
    for item in validation.items(data, "exchanges"):
        vh = server.add_vhost(vhost or item.str("vhost"), acting_user="")
        vh.declare_exchange(item.str("name"), item.str("type", "direct"),
                            durable=item.bool("durable", True),
                            auto_delete=item.bool("auto_delete", False),
                            internal=item.bool("internal", False),
                            arguments=item.dict("arguments"))
    for item in validation.items(data, "queues"):
        vh = server.add_vhost(vhost or item.str("vhost"), acting_user="")
        vh.declare_queue(item.str("name"), durable=item.bool("durable", True),
                         auto_delete=item.bool("auto_delete", False),
                         arguments=item.dict("arguments"))
    for item in validation.items(data, "bindings"):
        vh = server.vhosts.get(vhost or item.str("vhost"))
        if vh is None:
            raise InvalidInput(f"{item.where}: no vhost '{item.str('vhost')}'")
        source = vh.exchange(item.str("source"))
        kind = item.choice("destination_type", "queue", ("queue", "exchange"),
                           "destination type")
        dest: Any = vh.queue(item.str("destination")) if kind == "queue" \
            else vh.exchange(item.str("destination"))
        vh.bind(source, dest, item.str("routing_key", ""), item.dict("arguments"))


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
def import_all(server: Server, data: dict) -> None:
    import_users(server, validation.items(data, "users"))
    import_vhosts(server, validation.items(data, "vhosts"))
    import_permissions(server, validation.items(data, "permissions"))
    import_topic_permissions(server, validation.items(data, "topic_permissions"))
    import_policies(server, validation.items(data, "policies"))
    import_topology(server, data)


@_importing
def import_vhost(server: Server, name: str, data: dict) -> None:
    import_policies(server, validation.items(data, "policies"), name)
    import_topology(server, data, name)

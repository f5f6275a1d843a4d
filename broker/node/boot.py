"""What a node does to its state at boot: recover the durable definitions and messages from the
data directory, then apply the default user and the configured definitions file.

- ``recover`` restores the durable topology, users and permissions from the definitions
  document (inside ``Server.restoring()``, so nothing is granted twice), removes the stores of
  queues that no longer exist, arms the TTL timers of recovered messages, and from then on
  every durable change of a vhost is saved (``Server.persist``).
- ``boot_definitions``: as in RabbitMQ, a definitions file that lists users replaces the
  default user; unlike RabbitMQ, one that lists none keeps it (so importing only topology
  cannot lock everyone out). The default user is created only on a node that has none.
- ``snapshot`` is the durable definitions document the stores save: topology plus users and
  permissions.
"""

from __future__ import annotations

import logging
import shutil
from typing import TYPE_CHECKING

from broker.core import definitions_json, durable_topology

if TYPE_CHECKING:
    from broker.core.server import Server

    from .config import Config
    from .stores import Stores

log = logging.getLogger("broker")


def snapshot(server: Server) -> dict:
    doc = durable_topology.snapshot(server)
    doc["users"] = [u.as_json() for u in server.auth.users.values()]
    doc["permissions"] = definitions_json.permissions_json(server)
    return doc


def recover(server: Server, stores: Stores) -> None:
    doc = stores.load_definitions()
    with server.restoring():
        durable_topology.restore(server, doc)
        definitions_json.import_users(server, doc.get("users", []))
        for item in doc.get("permissions", []):
            if item["user"] in server.auth.users and item["vhost"] in server.vhosts:
                server.auth.set_permissions(item["user"], item["vhost"], item["configure"],
                                            item["write"], item["read"])
    known = {(v.name, q.name) for v in server.vhosts.values() for q in v.queues.values()}
    for path, owner in stores.data.queue_dirs().items():
        if owner not in known:
            log.info("removing the store of a queue that no longer exists: %s", path)
            shutil.rmtree(path, ignore_errors=True)
    holding = {(v.name, x.name) for v in server.vhosts.values() for x in v.exchanges.values()
               if x.durable and (x.type_name == "x-delayed-message" or
                                 getattr(x, "persistent_cache", False))}
    for path, owner in stores.data.exchange_dirs().items():
        if owner not in holding:
            log.info("removing the store of an exchange that no longer exists: %s", path)
            shutil.rmtree(path, ignore_errors=True)
    for vhost in server.vhosts.values():
        vhost.on_durable_change = server.persist
        for queue in vhost.queues.values():
            queue.check_expiry()
    server.recovered = True
    count = sum(len(q.store) for v in server.vhosts.values() for q in v.queues.values())
    if count:
        log.info("recovered %d messages", count)


def boot_definitions(server: Server, cfg: Config) -> None:
    """Default user and vhost, then the definitions file if one is configured."""
    data = definitions_json.read_file(cfg.load_definitions) if cfg.load_definitions else {}
    if not data.get("users") and not server.auth.users:
        log.info("Will seed default virtual host and user...")
        server.auth.add_user(cfg.default_user, cfg.default_pass, list(cfg.default_user_tags))
        server.auth.set_permissions(cfg.default_user, cfg.default_vhost,
                                    *cfg.default_permissions)
        log.info("Created user '%s'", cfg.default_user)
        log.info("Successfully set user tags for user '%s' to [%s]", cfg.default_user,
                 ", ".join(cfg.default_user_tags))
        log.info("Successfully set permissions for '%s' in virtual host '%s' to '%s', '%s', "
                 "'%s'", cfg.default_user, cfg.default_vhost, *cfg.default_permissions)
    if data:
        with server.restoring():
            definitions_json.import_all(server, data)
        log.info("imported definitions from %s", cfg.load_definitions)

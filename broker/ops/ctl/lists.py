"""The ``list_*`` commands: which API path feeds them, their default columns, their info line,
and how an API object becomes a rabbitmqctl row (column names are rabbitmqctl's)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .client import Client, CtlError, q
from .output import Output


def _binding(b: dict) -> dict:
    return {**b, "source_name": b["source"], "source_kind": "exchange",
            "destination_name": b["destination"], "destination_kind": b["destination_type"]}


def _connection(c: dict) -> dict:
    return {**c, "pid": c.get("pid") or c["name"]}


def _channel(c: dict) -> dict:
    return {**c, "pid": c["name"], "connection": c["connection_details"]["name"]}


def _consumer(c: dict) -> dict:
    return {**c, "queue_name": c["queue"]["name"], "channel_pid": c["channel_details"]["name"]}


def _user(u: dict) -> dict:
    return {**u, "user": u["name"]}


def _policy(p: dict) -> dict:
    import json

    return {**p, "definition": json.dumps(p["definition"], separators=(",", ":"))}


@dataclass(frozen=True)
class ListSpec:
    path: str  # "{vhost}" is replaced by the quoted -p vhost
    columns: tuple[str, ...]
    info: str
    row: Callable[[dict], dict] = dict


LISTS: dict[str, ListSpec] = {
    "list_queues": ListSpec("/queues/{vhost}", ("name", "messages"),
                            "Listing queues for vhost {vhost} ..."),
    "list_exchanges": ListSpec("/exchanges/{vhost}", ("name", "type"),
                               "Listing exchanges for vhost {vhost} ..."),
    "list_bindings": ListSpec("/bindings/{vhost}", ("source_name", "source_kind",
                                                     "destination_name", "destination_kind",
                                                     "routing_key", "arguments"),
                              "Listing bindings for vhost {vhost}...", _binding),
    "list_connections": ListSpec("/connections", ("user", "peer_host", "peer_port", "state"),
                                 "Listing connections ...", _connection),
    "list_channels": ListSpec("/channels", ("pid", "user", "consumer_count",
                                            "messages_unacknowledged"),
                              "Listing channels ...", _channel),
    "list_consumers": ListSpec("/consumers/{vhost}", ("queue_name", "channel_pid",
                                                      "consumer_tag", "ack_required",
                                                      "prefetch_count", "active",
                                                      "arguments"),
                               "Listing consumers in vhost {vhost} ...", _consumer),
    "list_users": ListSpec("/users", ("user", "tags"), "Listing users ...", _user),
    "list_vhosts": ListSpec("/vhosts", ("name",), "Listing vhosts ..."),
    "list_permissions": ListSpec("/vhosts/{vhost}/permissions",
                                 ("user", "configure", "write", "read"),
                                 'Listing permissions for vhost "{raw}" ...'),
    "list_user_permissions": ListSpec("/users/{user}/permissions",
                                      ("vhost", "configure", "write", "read"),
                                      'Listing permissions for user "{user}" ...'),
    "list_policies": ListSpec("/policies/{vhost}", ("vhost", "name", "pattern", "apply-to",
                                                    "definition", "priority"),
                              'Listing policies for vhost "{raw}" ...', _policy),
}


TIMED = ("list_queues", "list_exchanges", "list_bindings", "list_connections", "list_channels",
         "list_consumers")


def run_list(name: str, client: Client, out: Output, vhost: str, columns: list[str]) -> None:
    spec = LISTS[name]
    user = ""
    missing = f"Virtual host '{vhost}' does not exist"
    if name == "list_user_permissions":  # the one list whose argument is not a column
        user, columns = columns[0], []
        out.info(spec.info.format(user=user))
        missing = f'User "{user}" does not exist'
    try:
        rows = [spec.row(item) for item in client.get(
            spec.path.format(vhost=q(vhost), user=q(user)), missing=missing)]
    except CtlError as err:
        if user:
            err.code = 69  # rabbitmqctl's code for {no_such_user, ...}
        raise
    if user:
        out.table(list(spec.columns), rows)
        return
    chosen = columns or list(spec.columns)
    known = set().union(*(r.keys() for r in rows)) if rows else set(chosen)
    unknown = [c for c in chosen if c not in known and rows]
    if unknown:
        raise CtlError(f"Info key(s) {','.join(unknown)} are not supported", 64, "validation")
    if name == "list_vhosts" and "name" in chosen and not columns:
        rows = sorted(rows, key=lambda r: r["name"])
    if name in TIMED:
        out.info(f"Timeout: {client.timeout:.1f} seconds ...")
    out.info(spec.info.format(vhost=vhost, raw=vhost))
    out.table(chosen, rows)

"""rabbitmqctl's commands for limits, operator policies and a few admin settings: vhost and user
limits (set / clear / list), operator policies, ``clear_password``, ``set_cluster_name`` and
``close_all_user_connections``, with rabbitmqctl's info lines, outputs and exit codes (checked
against RabbitMQ 3.10.8). Each is a function (client, out, args) -> None as in ``commands``.

``set_vhost_limits`` / ``set_user_limits`` replace the whole limits document, as RabbitMQ's do
(a limit left out of the new JSON is cleared).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .client import EX_DATAERR, EX_NOUSER, EX_UNAVAILABLE, Client, CtlError, q
from .output import Output

VHOST_LIMITS = ("max-connections", "max-queues")
USER_LIMITS = ("max-connections", "max-channels")


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _limits_document(text: str, allowed: tuple[str, ...]) -> dict[str, int]:
    try:
        doc = json.loads(text)
    except ValueError:
        raise CtlError("JSON decoding error. Reason: badarg", EX_UNAVAILABLE) from None
    if not isinstance(doc, dict):
        raise CtlError("JSON decoding error. Reason: badarg", EX_UNAVAILABLE)
    unknown = [(k, v) for k, v in doc.items() if k not in allowed]
    if unknown:
        terms = ",".join(f'{{<<"{k}">>,{_compact(v)}}}' for k, v in unknown)
        raise CtlError(f"Validation failed\n\nUnrecognised terms [{terms}] in limits",
                       EX_UNAVAILABLE)
    for key, value in doc.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise CtlError(f"Validation failed\n\n{key} should be a number, actually was "
                           f"{_compact(value)}", EX_UNAVAILABLE)
    return doc


# ---- vhost limits ------------------------------------------------------------------------
def _vhost_limits(client: Client, vhost: str) -> dict[str, int]:
    client.get(f"/vhosts/{q(vhost)}", missing=f"Virtual host '{vhost}' does not exist")
    found = client.get(f"/vhost-limits/{q(vhost)}")
    return dict(found[0]["value"]) if found else {}


def set_vhost_limits(client: Client, out: Output, args: argparse.Namespace) -> None:
    text = args.positional[0]
    out.info(f'Setting vhost limits to "{text}" for vhost "{args.vhost}" ...')
    doc = _limits_document(text, VHOST_LIMITS)
    current = _vhost_limits(client, args.vhost)
    for name, value in doc.items():
        client.call("PUT", f"/vhost-limits/{q(args.vhost)}/{q(name)}", {"value": value})
    for name in current.keys() - doc.keys():
        client.call("DELETE", f"/vhost-limits/{q(args.vhost)}/{q(name)}", missing="")


def clear_vhost_limits(client: Client, out: Output, args: argparse.Namespace) -> None:
    out.info(f'Clearing vhost "{args.vhost}" limits ...')
    for name in _vhost_limits(client, args.vhost):
        client.call("DELETE", f"/vhost-limits/{q(args.vhost)}/{q(name)}", missing="")


def list_vhost_limits(client: Client, out: Output, args: argparse.Namespace) -> None:
    if args.global_:
        out.info("Listing limits for all vhosts ...")
        out.table(["vhost", "limits"], [{"vhost": item["vhost"],
                                         "limits": _compact(item["value"])}
                                        for item in client.get("/vhost-limits")])
        return
    out.info(f'Listing limits for vhost "{args.vhost}" ...')
    out.line(_compact(_vhost_limits(client, args.vhost)))


# ---- user limits -------------------------------------------------------------------------
def _user_limits(client: Client, user: str) -> dict[str, int]:
    try:
        found = client.get(f"/user-limits/{q(user)}", missing=f'User "{user}" does not exist')
    except CtlError as err:
        if err.code == EX_DATAERR:
            err.code = EX_NOUSER
        raise
    return dict(found[0]["value"]) if found else {}


def set_user_limits(client: Client, out: Output, args: argparse.Namespace) -> None:
    user, text = args.positional[:2]
    out.info(f'Setting user limits to "{text}" for user "{user}" ...')
    doc = _limits_document(text, USER_LIMITS)
    current = _user_limits(client, user)
    for name, value in doc.items():
        client.call("PUT", f"/user-limits/{q(user)}/{q(name)}", {"value": value})
    for name in current.keys() - doc.keys():
        client.call("DELETE", f"/user-limits/{q(user)}/{q(name)}", missing="")


def clear_user_limits(client: Client, out: Output, args: argparse.Namespace) -> None:
    user, which = args.positional[:2]
    if which == "all":
        out.info(f'Clearing all limits for user "{user}" ...')
    else:
        out.info(f'Clearing "{which}" limit for user "{user}" ...')
    current = _user_limits(client, user)
    for name in (list(current) if which == "all" else [which] if which in current else []):
        client.call("DELETE", f"/user-limits/{q(user)}/{q(name)}", missing="")


def list_user_limits(client: Client, out: Output, args: argparse.Namespace) -> None:
    if args.global_:
        out.info("Listing limits for all users ...")
        out.table(["user", "limits"], [{"user": item["user"],
                                        "limits": _compact(item["value"])}
                                       for item in client.get("/user-limits")])
        return
    user = args.user or "guest"  # rabbitmqctl's default
    out.info(f'Listing limits for user "{user}" ...')
    out.line(_compact(_user_limits(client, user)))


# ---- operator policies -------------------------------------------------------------------
def set_operator_policy(client: Client, out: Output, args: argparse.Namespace) -> None:
    name, pattern, definition = args.positional[:3]
    out.info(f'Setting operator policy override "{name}" for pattern "{pattern}" to '
             f'"{definition}" with priority "{args.priority}" for vhost "{args.vhost}" ...')
    try:
        parsed = json.loads(definition)
    except ValueError:
        raise CtlError("JSON decoding error. Reason: badarg", EX_UNAVAILABLE) from None
    apply_to = args.apply_to if args.apply_to != "all" else "queues"
    client.call("PUT", f"/operator-policies/{q(args.vhost)}/{q(name)}",
                {"pattern": pattern, "definition": parsed, "priority": args.priority,
                 "apply-to": apply_to})


def clear_operator_policy(client: Client, out: Output, args: argparse.Namespace) -> None:
    name = args.positional[0]
    out.info(f'Clearing operator policy "{name}" on vhost "{args.vhost}" ...')
    try:
        client.call("DELETE", f"/operator-policies/{q(args.vhost)}/{q(name)}",
                    missing="Parameter does not exist")
    except CtlError as err:
        if err.code == EX_DATAERR:
            err.code = EX_UNAVAILABLE  # rabbitmqctl's 69 here
        raise


def list_operator_policies(client: Client, out: Output, args: argparse.Namespace) -> None:
    found = client.get(f"/operator-policies/{q(args.vhost)}",
                       missing=f"Virtual host '{args.vhost}' does not exist")
    out.info(f'Listing operator policy overrides for vhost "{args.vhost}" ...')
    rows = [{**p, "definition": _compact(p["definition"])} for p in found]
    if rows:
        out.table(["vhost", "name", "pattern", "apply-to", "definition", "priority"], rows)


# ---- users, cluster, connections ---------------------------------------------------------
def clear_password(client: Client, out: Output, args: argparse.Namespace) -> None:
    user = args.positional[0]
    out.info(f'Clearing password for user "{user}" ...')
    current = client.get(f"/users/{q(user)}", missing=f'{{:no_such_user, "{user}"}}')
    client.call("PUT", f"/users/{q(user)}", {"password_hash": "",
                                             "hashing_algorithm": current["hashing_algorithm"],
                                             "tags": current["tags"]})


def set_cluster_name(client: Client, out: Output, args: argparse.Namespace) -> None:
    name = args.positional[0]
    out.info(f"Setting cluster name to {name} ...")
    client.call("PUT", "/cluster-name", {"name": name})


def close_all_user_connections(client: Client, out: Output, args: argparse.Namespace) -> None:
    user, explanation = args.positional[:2]
    out.info(f"Closing connections of user {user}, reason: {explanation}...")
    for conn in client.get("/connections"):
        if conn.get("user") == user:
            client.call("DELETE", f"/connections/{q(conn['name'])}",
                        headers={"X-Reason": explanation}, missing="")


COMMANDS = {
    "set_vhost_limits": set_vhost_limits, "clear_vhost_limits": clear_vhost_limits,
    "list_vhost_limits": list_vhost_limits, "set_user_limits": set_user_limits,
    "clear_user_limits": clear_user_limits, "list_user_limits": list_user_limits,
    "set_operator_policy": set_operator_policy,
    "clear_operator_policy": clear_operator_policy,
    "list_operator_policies": list_operator_policies, "clear_password": clear_password,
    "set_cluster_name": set_cluster_name,
    "close_all_user_connections": close_all_user_connections,
}

"""The non-list rabbitmqctl commands, each a function (client, out, args) -> None that prints
what rabbitmqctl prints and raises ``CtlError`` where rabbitmqctl fails."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from .client import EX_DATAERR, EX_USAGE, Client, CtlError, q
from .output import Output
from .status import cluster_status, status

Command = Callable[[Client, Output, argparse.Namespace], None]


def need(args: argparse.Namespace, count: int, usage: str) -> list[str]:
    positional: list[str] = args.positional
    if len(positional) < count:
        raise CtlError(f"not enough arguments.\nUsage:\n{usage}", EX_USAGE)
    return positional


def ping(client: Client, out: Output, args: argparse.Namespace) -> None:
    node = client.get("/overview")["node"]
    out.info(f"Will ping {node}. This only checks if the OS process is running and registered "
             f"with epmd. Timeout: {int(client.timeout * 1000)} ms.")
    client.get("/health/checks/protocol-listener/amqp")
    out.line("Ping succeeded")


def add_user(client: Client, out: Output, args: argparse.Namespace) -> None:
    user, password = need(args, 2, "rabbitmqctl add_user <username> <password>")[:2]
    if user in {u["name"] for u in client.get("/users")}:
        raise CtlError(f'User "{user}" already exists', EX_DATAERR)
    out.info(f'Adding user "{user}" ...')
    client.call("PUT", f"/users/{q(user)}", {"password": password, "tags": ""})
    out.info("Done. Don't forget to grant the user permissions to some virtual hosts! See "
             "'rabbitmqctl help set_permissions' to learn more.")


def delete_user(client: Client, out: Output, args: argparse.Namespace) -> None:
    user = need(args, 1, "rabbitmqctl delete_user <username>")[0]
    out.info(f'Deleting user "{user}" ...')
    client.call("DELETE", f"/users/{q(user)}", missing=f'User "{user}" does not exist')


def change_password(client: Client, out: Output, args: argparse.Namespace) -> None:
    user, password = need(args, 2, "rabbitmqctl change_password <username> <password>")[:2]
    current = client.get(f"/users/{q(user)}", missing=f'User "{user}" does not exist')
    out.info(f'Changing password for user "{user}" ...')
    client.call("PUT", f"/users/{q(user)}", {"password": password, "tags": current["tags"]})


def set_user_tags(client: Client, out: Output, args: argparse.Namespace) -> None:
    user, *tags = need(args, 1, "rabbitmqctl set_user_tags <username> <tag> [...]")
    current = client.get(f"/users/{q(user)}", missing=f'User "{user}" does not exist')
    out.info(f'Setting tags for user "{user}" to [{", ".join(tags)}] ...')
    client.call("PUT", f"/users/{q(user)}", {"password_hash": current["password_hash"],
                                             "hashing_algorithm": current["hashing_algorithm"],
                                             "tags": tags})


def set_permissions(client: Client, out: Output, args: argparse.Namespace) -> None:
    user, conf, write, read = need(
        args, 4, "rabbitmqctl set_permissions [--vhost <vhost>] <username> <conf> <write> "
                 "<read>")[:4]
    out.info(f'Setting permissions for user "{user}" in vhost "{args.vhost}" ...')
    client.call("PUT", f"/permissions/{q(args.vhost)}/{q(user)}",
                {"configure": conf, "write": write, "read": read})


def clear_permissions(client: Client, out: Output, args: argparse.Namespace) -> None:
    user = need(args, 1, "rabbitmqctl clear_permissions [--vhost <vhost>] <username>")[0]
    out.info(f'Clearing permissions for user "{user}" in vhost "{args.vhost}" ...')
    client.call("DELETE", f"/permissions/{q(args.vhost)}/{q(user)}", missing="")


def add_vhost(client: Client, out: Output, args: argparse.Namespace) -> None:
    vhost = need(args, 1, "rabbitmqctl add_vhost <vhost>")[0]
    out.info(f'Adding vhost "{vhost}" ...')
    body = {k: v for k, v in (("description", args.description), ("tags", args.tags),
                              ("default_queue_type", args.default_queue_type)) if v}
    client.call("PUT", f"/vhosts/{q(vhost)}", body)


def delete_vhost(client: Client, out: Output, args: argparse.Namespace) -> None:
    vhost = need(args, 1, "rabbitmqctl delete_vhost <vhost>")[0]
    out.info(f'Deleting vhost "{vhost}" ...')
    client.call("DELETE", f"/vhosts/{q(vhost)}", missing=f"Virtual host '{vhost}' does not "
                                                         "exist")


def set_policy(client: Client, out: Output, args: argparse.Namespace) -> None:
    name, pattern, definition = need(
        args, 3, "rabbitmqctl set_policy [--vhost <vhost>] [--priority <priority>] "
                 "[--apply-to <apply-to>] <name> <pattern> <definition>")[:3]
    try:
        parsed = json.loads(definition)
    except ValueError as exc:
        raise CtlError(f"Could not parse JSON document: {exc}", EX_DATAERR) from None
    out.info(f'Setting policy "{name}" for pattern "{pattern}" to "{definition}" with priority '
             f'"{args.priority}" for vhost "{args.vhost}" ...')
    client.call("PUT", f"/policies/{q(args.vhost)}/{q(name)}",
                {"pattern": pattern, "definition": parsed, "priority": args.priority,
                 "apply-to": args.apply_to})


def clear_policy(client: Client, out: Output, args: argparse.Namespace) -> None:
    name = need(args, 1, "rabbitmqctl clear_policy [--vhost <vhost>] <name>")[0]
    out.info(f'Clearing policy "{name}" on vhost "{args.vhost}" ...')
    client.call("DELETE", f"/policies/{q(args.vhost)}/{q(name)}",
                missing="Parameter does not exist")


def purge_queue(client: Client, out: Output, args: argparse.Namespace) -> None:
    queue = need(args, 1, "rabbitmqctl purge_queue [--vhost <vhost>] <queue>")[0]
    out.info(f"Purging queue '{queue}' in vhost '{args.vhost}' ...")
    client.call("DELETE", f"/queues/{q(args.vhost)}/{q(queue)}/contents",
                missing=f"queue '{queue}' in vhost '{args.vhost}' not found")


def delete_queue(client: Client, out: Output, args: argparse.Namespace) -> None:
    queue = need(args, 1, "rabbitmqctl delete_queue [--vhost <vhost>] <queue_name>")[0]
    missing = f"queue '{queue}' in vhost '{args.vhost}' not found"
    path = f"/queues/{q(args.vhost)}/{q(queue)}"
    count = client.get(path, missing=missing)["messages"]
    out.info(f"Deleting queue '{queue}' on vhost '{args.vhost}' ...")
    flags = "&".join(f for f, on in (("if-empty=true", args.if_empty),
                                     ("if-unused=true", args.if_unused)) if on)
    client.call("DELETE", path + (f"?{flags}" if flags else ""), missing=missing)
    out.line(f"Queue was successfully deleted with {count} message{'s' * (count != 1)}")


def export_definitions(client: Client, out: Output, args: argparse.Namespace) -> None:
    target = need(args, 1, "rabbitmqctl export_definitions <file_path | \"-\">")[0]
    data = client.get("/definitions")
    if target == "-":
        out.line(json.dumps(data))
        return
    out.info(f'Exporting definitions in JSON to a file at "{target}" ...')
    Path(target).write_text(json.dumps(data))


def import_definitions(client: Client, out: Output, args: argparse.Namespace) -> None:
    source = args.positional[0] if args.positional else "-"
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    out.info(f'Importing definitions in JSON from a file at "{source}" ...')
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CtlError(f"Could not parse JSON document: {exc}", EX_DATAERR) from None
    client.call("POST", "/definitions", data)
    out.info("Successfully started definition import. This process is asynchronous and can "
             "take some time.")


def close_connection(client: Client, out: Output, args: argparse.Namespace) -> None:
    pid, explanation = need(args, 2, "rabbitmqctl close_connection <connection_pid> "
                                     "<explanation>")[:2]
    out.info(f"Closing connection {pid}, reason: {explanation}...")
    client.call("DELETE", f"/connections/{q(pid)}", headers={"X-Reason": explanation},
                missing=f"connection {pid} not found")


def close_all_connections(client: Client, out: Output, args: argparse.Namespace) -> None:
    explanation = need(args, 1, "rabbitmqctl close_all_connections <explanation>")[0]
    out.info(f"Closing all connections in vhost {args.vhost} ...")
    for conn in client.get(f"/vhosts/{q(args.vhost)}/connections"):
        client.call("DELETE", f"/connections/{q(conn['name'])}",
                    headers={"X-Reason": explanation})


def node_action(action: str, message: str) -> Command:
    def run(client: Client, out: Output, args: argparse.Namespace) -> None:
        node = client.get("/overview")["node"]
        out.info(message.format(node=node))
        client.call("POST", f"/burrowmq/{action}", {})
    return run


COMMANDS: dict[str, Command] = {
    "ping": ping, "status": status, "cluster_status": cluster_status,
    "add_user": add_user, "delete_user": delete_user, "change_password": change_password,
    "set_user_tags": set_user_tags, "set_permissions": set_permissions,
    "clear_permissions": clear_permissions, "add_vhost": add_vhost,
    "delete_vhost": delete_vhost, "set_policy": set_policy, "clear_policy": clear_policy,
    "purge_queue": purge_queue, "delete_queue": delete_queue,
    "export_definitions": export_definitions, "import_definitions": import_definitions,
    "close_connection": close_connection, "close_all_connections": close_all_connections,
    "stop_app": node_action("stop_app", "Stopping rabbit application on node {node} ..."),
    "start_app": node_action("start_app", "Starting node {node} ..."),
    "reset": node_action("reset", "Resetting node {node} ..."),
    "stop": node_action("stop", "Stopping and halting node {node} ..."),
}

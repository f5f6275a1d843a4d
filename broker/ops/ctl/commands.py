"""The object commands (users, permissions, vhosts, policies, queues, definitions,
connections), each a function (client, out, args) -> None that prints what rabbitmqctl prints
and raises ``CtlError`` where rabbitmqctl fails. Argument counts are checked before a command
runs (``catalog``), so ``args.positional`` has what the command's usage asks for."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from .client import EX_DATAERR, EX_NOUSER, EX_SOFTWARE, Client, CtlError, q
from .output import Output

Command = Callable[[Client, Output, argparse.Namespace], None]


def bad_argument(text: str) -> CtlError:
    """rabbitmqctl's argument validation failure for a bad path (exit 65)."""
    return CtlError(f"Bad argument: {text}", EX_DATAERR, "validation")


def add_user(client: Client, out: Output, args: argparse.Namespace) -> None:
    user, password = args.positional[:2]
    out.info(f'Adding user "{user}" ...')
    if user in {u["name"] for u in client.get("/users")}:
        raise CtlError(f'User "{user}" already exists', EX_SOFTWARE)
    client.call("PUT", f"/users/{q(user)}", {"password": password, "tags": ""})
    out.info("Done. Don't forget to grant the user permissions to some virtual hosts! See "
             "'burrowctl help set_permissions' to learn more.")


def delete_user(client: Client, out: Output, args: argparse.Namespace) -> None:
    user = args.positional[0]
    out.info(f'Deleting user "{user}" ...')
    try:
        client.call("DELETE", f"/users/{q(user)}", missing=f'User "{user}" does not exist')
    except CtlError as err:
        if err.code == EX_DATAERR:
            err.code = EX_NOUSER  # rabbitmqctl's 67 for a missing user
        raise


def change_password(client: Client, out: Output, args: argparse.Namespace) -> None:
    user, password = args.positional[:2]
    current = client.get(f"/users/{q(user)}", missing=f'User "{user}" does not exist')
    out.info(f'Changing password for user "{user}" ...')
    client.call("PUT", f"/users/{q(user)}", {"password": password, "tags": current["tags"]})


def set_user_tags(client: Client, out: Output, args: argparse.Namespace) -> None:
    user, *tags = args.positional
    current = client.get(f"/users/{q(user)}", missing=f'User "{user}" does not exist')
    out.info(f'Setting tags for user "{user}" to [{", ".join(tags)}] ...')
    client.call("PUT", f"/users/{q(user)}", {"password_hash": current["password_hash"],
                                             "hashing_algorithm": current["hashing_algorithm"],
                                             "tags": tags})


def set_permissions(client: Client, out: Output, args: argparse.Namespace) -> None:
    user, conf, write, read = args.positional[:4]
    out.info(f'Setting permissions for user "{user}" in vhost "{args.vhost}" ...')
    client.call("PUT", f"/permissions/{q(args.vhost)}/{q(user)}",
                {"configure": conf, "write": write, "read": read})


def clear_permissions(client: Client, out: Output, args: argparse.Namespace) -> None:
    user = args.positional[0]
    out.info(f'Clearing permissions for user "{user}" in vhost "{args.vhost}" ...')
    client.call("DELETE", f"/permissions/{q(args.vhost)}/{q(user)}", missing="")


def add_vhost(client: Client, out: Output, args: argparse.Namespace) -> None:
    vhost = args.positional[0]
    out.info(f'Adding vhost "{vhost}" ...')
    body = {k: v for k, v in (("description", args.description), ("tags", args.tags),
                              ("default_queue_type", args.default_queue_type)) if v}
    client.call("PUT", f"/vhosts/{q(vhost)}", body)


def delete_vhost(client: Client, out: Output, args: argparse.Namespace) -> None:
    vhost = args.positional[0]
    out.info(f'Deleting vhost "{vhost}" ...')
    client.call("DELETE", f"/vhosts/{q(vhost)}", missing=f"Virtual host '{vhost}' does not "
                                                         "exist")


def set_policy(client: Client, out: Output, args: argparse.Namespace) -> None:
    name, pattern, definition = args.positional[:3]
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
    name = args.positional[0]
    out.info(f'Clearing policy "{name}" on vhost "{args.vhost}" ...')
    client.call("DELETE", f"/policies/{q(args.vhost)}/{q(name)}",
                missing="Parameter does not exist")


def purge_queue(client: Client, out: Output, args: argparse.Namespace) -> None:
    queue = args.positional[0]
    out.info(f"Purging queue '{queue}' in vhost '{args.vhost}' ...")
    client.call("DELETE", f"/queues/{q(args.vhost)}/{q(queue)}/contents",
                missing=f"queue '{queue}' in vhost '{args.vhost}' not found")


def delete_queue(client: Client, out: Output, args: argparse.Namespace) -> None:
    queue = args.positional[0]
    missing = f"queue '{queue}' in vhost '{args.vhost}' not found"
    path = f"/queues/{q(args.vhost)}/{q(queue)}"
    count = client.get(path, missing=missing)["messages"]
    out.info(f"Deleting queue '{queue}' on vhost '{args.vhost}' ...")
    flags = "&".join(f for f, on in (("if-empty=true", args.if_empty),
                                     ("if-unused=true", args.if_unused)) if on)
    client.call("DELETE", path + (f"?{flags}" if flags else ""), missing=missing)
    out.line(f"Queue was successfully deleted with {count} message{'s' * (count != 1)}")


def export_definitions(client: Client, out: Output, args: argparse.Namespace) -> None:
    target = args.positional[0]
    if target != "-" and not Path(target).absolute().parent.is_dir():
        raise bad_argument(f"Directory {Path(target).absolute().parent} does not exist")
    data = client.get("/definitions")
    if target == "-":
        out.line(json.dumps(data))
        return
    out.info(f'Exporting definitions in JSON to a file at "{target}" ...')
    try:
        Path(target).write_text(json.dumps(data))
    except OSError as exc:
        raise CtlError(f"could not write {target}: {exc.strerror or exc}", EX_DATAERR) from None


def import_definitions(client: Client, out: Output, args: argparse.Namespace) -> None:
    source = args.positional[0] if args.positional else "-"
    if source != "-" and not Path(source).is_file():
        raise bad_argument(f"File {source} does not exist")
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CtlError(f"could not read {source}: {getattr(exc, 'strerror', None) or exc}",
                       EX_DATAERR) from None
    out.info(f'Importing definitions in JSON from a file at "{source}" ...')
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CtlError(f"Could not parse JSON document: {exc}", EX_DATAERR) from None
    client.call("POST", "/definitions", data)
    out.info("Successfully started definition import. This process is asynchronous and can "
             "take some time.")


def close_connection(client: Client, out: Output, args: argparse.Namespace) -> None:
    pid, explanation = args.positional[:2]
    out.info(f"Closing connection {pid}, reason: {explanation}...")
    client.call("DELETE", f"/connections/{q(pid)}", headers={"X-Reason": explanation},
                missing=f"connection {pid} not found")


def close_all_connections(client: Client, out: Output, args: argparse.Namespace) -> None:
    explanation = args.positional[0]
    out.info(f"Closing all connections in vhost {args.vhost} ...")
    for conn in client.get(f"/vhosts/{q(args.vhost)}/connections"):
        client.call("DELETE", f"/connections/{q(conn['name'])}",
                    headers={"X-Reason": explanation})


def authenticate_user(client: Client, out: Output, args: argparse.Namespace) -> None:
    user, password = args.positional[:2]
    out.info(f'Authenticating user "{user}" ...')
    answer = client.call("POST", "/burrowmq/authenticate",
                         {"username": user, "password": password})
    if answer.get("status") != "ok":
        raise CtlError(f'Error: failed to authenticate user "{user}"\n{answer.get("reason")}',
                       EX_DATAERR)
    out.line("Success")


COMMANDS: dict[str, Command] = {
    "add_user": add_user, "delete_user": delete_user, "change_password": change_password,
    "set_user_tags": set_user_tags, "authenticate_user": authenticate_user,
    "set_permissions": set_permissions, "clear_permissions": clear_permissions,
    "add_vhost": add_vhost, "delete_vhost": delete_vhost, "set_policy": set_policy,
    "clear_policy": clear_policy, "purge_queue": purge_queue, "delete_queue": delete_queue,
    "export_definitions": export_definitions, "import_definitions": import_definitions,
    "close_connection": close_connection, "close_all_connections": close_all_connections,
}

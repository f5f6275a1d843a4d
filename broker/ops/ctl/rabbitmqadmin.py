"""``burrowmqadmin``: rabbitmqadmin (v1) over the management HTTP API.

Verbs and object types are rabbitmqadmin's (``burrowmqadmin help subcommands`` lists them):
``list <type> [<column> ...]``, ``show overview``, ``declare|delete <type> key=value ...``,
``close connection name=...``, ``purge queue name=...``, ``publish``, ``get``,
``export <file>`` / ``import <file>``. Output formats as rabbitmqadmin's ``-f``: table
(default), tsv, raw_json, pretty_json.

Messages are rabbitmqadmin's (``queue declared``, ``ERROR: mandatory argument "name" is
required``); exit codes are rabbitmqctl's sysexits (64 usage, 65 no such object, 69 API
unreachable or login refused, 70 other) where rabbitmqadmin exits 1 for everything.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn  # Any: JSON values, typed key=value arguments

from .admin_render import render
from .client import EX_DATAERR, EX_USAGE, Client, CtlError, q
from .output import quiet_on_closed_pipe

PROG = "burrowmqadmin"
LISTABLE = {  # type -> (scoped by vhost, default columns)
    "connections": (False, ["name", "user", "channels"]),
    "channels": (False, ["name", "user"]),
    "consumers": (True, ["queue.name", "consumer_tag"]),
    "exchanges": (True, ["vhost", "name", "type"]),
    "queues": (True, ["vhost", "name", "type", "messages"]),
    "bindings": (True, ["source", "vhost", "destination", "destination_type", "routing_key"]),
    "users": (False, ["name", "tags"]),
    "vhosts": (False, ["name", "messages"]),
    "permissions": (False, ["vhost", "user", "configure", "write", "read"]),
    "nodes": (False, ["name", "type", "mem_used"]),
    "policies": (True, ["vhost", "name", "pattern", "apply-to", "priority"]),
}
# type -> (mandatory keys, optional keys); a tuple inside mandatory means "one of these"
DECLARABLE: dict[str, tuple[list, list[str]]] = {
    "exchange": (["name", "type"], ["auto_delete", "durable", "internal", "arguments"]),
    "queue": (["name"], ["auto_delete", "durable", "arguments", "queue_type"]),
    "binding": (["source", "destination"], ["destination_type", "routing_key", "arguments"]),
    "vhost": (["name"], ["tracing", "description"]),
    "user": (["name", ("password", "password_hash"), "tags"], ["hashing_algorithm"]),
    "permission": (["vhost", "user", "configure", "write", "read"], []),
    "policy": (["name", "pattern", "definition"], ["priority", "apply-to"]),
}
DELETABLE: dict[str, tuple[list, list[str]]] = {
    "exchange": (["name"], []), "queue": (["name"], []),
    "binding": (["source", "destination_type", "destination"], ["properties_key"]),
    "vhost": (["name"], []), "user": (["name"], []), "permission": (["vhost", "user"], []),
    "policy": (["name"], []),
}
CLOSABLE: dict[str, tuple[list, list[str]]] = {"connection": (["name"], [])}
PURGABLE: dict[str, tuple[list, list[str]]] = {"queue": (["name"], [])}
JSON_KEYS = ("arguments", "definition")


class Usage(Exception):
    pass


def subcommands_help() -> str:
    def stanza(verb: str, table: dict[str, tuple[list, list[str]]]) -> list[str]:
        out = []
        for kind, (mandatory, optional) in table.items():
            keys = " ".join("=... OR ".join(m) + "=..." if isinstance(m, tuple) else f"{m}=..."
                            for m in mandatory)
            extra = f" [{' '.join(f'{o}=...' for o in optional)}]" if optional else ""
            out.append(f"  {verb} {kind} {keys}{extra}")
        return out

    return "\n".join([
        "Usage", "=====", f"  {PROG} [options] subcommand", "",
        "  where subcommand is one of:", "", "Display", "=======", "",
        *(f"  list {kind} [<column>...]" for kind in LISTABLE),
        "  show overview [<column>...]", "", "Object Manipulation", "===================", "",
        *stanza("declare", DECLARABLE), *stanza("delete", DELETABLE),
        *stanza("close", CLOSABLE), *stanza("purge", PURGABLE), "",
        "Broker Definitions", "==================", "", "  export <file>", "  import <file>", "",
        "Publishing and Consuming", "========================", "",
        "  publish routing_key=... [payload=... exchange=...]",
        "  get queue=... [count=... ackmode=...]"])


def pairs(items: list[str], mandatory: list, optional: list[str]) -> dict[str, Any]:
    known = [k for m in mandatory for k in (m if isinstance(m, tuple) else (m,))] + optional
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise Usage(f"Argument {item!r} is not of the form key=value")
        if key not in known:
            raise Usage(f'Key "{key}" not recognised (known keys: {", ".join(known)})')
        if key in JSON_KEYS:
            try:
                out[key] = json.loads(value)
            except ValueError:
                raise Usage(f'Argument "{key}" is not valid JSON: {value}') from None
        else:
            out[key] = {"true": True, "false": False}.get(value, value)
    for m in mandatory:
        if isinstance(m, tuple) and not set(m) & set(out):
            raise Usage(f'one of mandatory arguments "{list(m)}" is required')
        if not isinstance(m, tuple) and m not in out:
            raise Usage(f'mandatory argument "{m}" is required')
    return out


def parse_object(rest: list[str], table: dict[str, tuple[list, list[str]]]) -> tuple[str, dict]:
    if not rest:
        raise Usage("Type not specified")
    if rest[0] not in table:
        raise Usage(f"Type {rest[0]} not recognised")
    return rest[0], pairs(rest[1:], *table[rest[0]])


def file_argument(rest: list[str], verb: str) -> Path:
    if len(rest) != 1:
        raise Usage(f"{verb} takes one file name: {PROG} {verb} <file>")
    name = rest[0].removeprefix("file=")
    return Path(name)


def run(client: Client, verb: str, rest: list[str], vhost: str | None, fmt: str) -> str:
    v = q(vhost or "/")
    if verb in ("list", "show"):
        if not rest:
            kinds = ", ".join(LISTABLE) if verb == "list" else "overview"
            raise Usage(f"Don't know what to {verb}: name one of {kinds}")
        if verb == "show":
            if rest[0] != "overview":
                raise Usage(f"Don't know how to show {rest[0]}")
            return json.dumps(client.get("/overview"), indent=4, sort_keys=True)
        if rest[0] not in LISTABLE:
            raise Usage(f"Don't know how to list {rest[0]}")
        scoped, columns = LISTABLE[rest[0]]
        path = f"/{rest[0]}/{v}" if scoped and vhost else f"/{rest[0]}"
        return render(client.get(path), rest[1:] or columns, fmt)
    if verb == "declare":
        return declare(client, v, *parse_object(rest, DECLARABLE))
    if verb == "delete":
        return delete(client, v, *parse_object(rest, DELETABLE))
    if verb == "close":
        _kind, args = parse_object(rest, CLOSABLE)
        client.call("DELETE", f"/connections/{q(args['name'])}",
                    missing=f"Not found: connection {args['name']}")
        return "connection closed"
    if verb == "purge":
        _kind, args = parse_object(rest, PURGABLE)
        client.call("DELETE", f"/queues/{v}/{q(args['name'])}/contents",
                    missing=f"Not found: queue {args['name']}")
        return "queue purged"
    if verb == "publish":
        args = pairs(rest, ["routing_key"], ["payload", "exchange", "payload_encoding"])
        exchange = args.pop("exchange", "amq.default")
        body = {"routing_key": args["routing_key"], "payload": args.get("payload", ""),
                "payload_encoding": args.get("payload_encoding", "string"), "properties": {}}
        routed = client.call("POST", f"/exchanges/{v}/{q(exchange)}/publish", body)["routed"]
        return "Message published" if routed else "Message published but NOT routed"
    if verb == "get":
        args = pairs(rest, ["queue"], ["count", "ackmode", "encoding"])
        body = {"count": int(args.get("count", 1)),
                "ackmode": args.get("ackmode", "ack_requeue_true"),
                "encoding": args.get("encoding", "auto")}
        rows = client.call("POST", f"/queues/{v}/{q(args['queue'])}/get", body,
                           missing=f"Not found: queue {args['queue']}")
        return render(rows, ["routing_key", "exchange", "message_count", "payload",
                             "payload_bytes", "payload_encoding", "redelivered"], fmt)
    if verb == "export":
        target = file_argument(rest, "export")
        try:
            target.write_text(json.dumps(client.get("/definitions")))
        except OSError as exc:
            raise CtlError(f"Could not write {target}: {exc.strerror or exc}", EX_DATAERR) \
                from None
        return f'Exported definitions for {client.host} to "{target}"'
    if verb == "import":
        source = file_argument(rest, "import")
        try:
            data = json.loads(source.read_text())
        except OSError as exc:
            raise CtlError(f"Could not read {source}: {exc.strerror or exc}", EX_DATAERR) \
                from None
        except ValueError as exc:
            raise CtlError(f"{source} is not a JSON document: {exc}", EX_DATAERR) from None
        client.call("POST", "/definitions", data)
        return f'Uploaded definitions from "{client.host}" to {source}. The import process ' \
               "may take some time. Consult server logs to track progress."
    if verb == "help":
        if rest == ["subcommands"]:
            return subcommands_help()
        raise Usage(f"help takes one argument: {PROG} help subcommands")
    raise Usage(f"Action {verb} not understood")


def declare(client: Client, v: str, kind: str, args: dict) -> str:
    if kind in ("queue", "exchange", "policy"):
        name = args.pop("name")
        if kind == "queue" and "queue_type" in args:
            args.setdefault("arguments", {})["x-queue-type"] = args.pop("queue_type")
        if kind == "policy" and "priority" in args:
            args["priority"] = int(args["priority"])
        client.call("PUT", f"/{'policies' if kind == 'policy' else kind + 's'}/{v}/{q(name)}",
                    args)
    elif kind == "binding":
        dtype = "q" if args.get("destination_type", "queue") == "queue" else "e"
        client.call("POST", f"/bindings/{v}/e/{q(args['source'])}/{dtype}/"
                            f"{q(args['destination'])}",
                    {"routing_key": args.get("routing_key", ""),
                     "arguments": args.get("arguments", {})})
    elif kind == "vhost":
        client.call("PUT", f"/vhosts/{q(args.pop('name'))}", args)
    elif kind == "user":
        client.call("PUT", f"/users/{q(args.pop('name'))}", args)
    elif kind == "permission":
        client.call("PUT", f"/permissions/{q(args.pop('vhost'))}/{q(args.pop('user'))}", args)
    return f"{kind} declared"


def delete(client: Client, v: str, kind: str, args: dict) -> str:
    if kind == "binding":
        dtype = "q" if args["destination_type"] == "queue" else "e"
        path = f"/bindings/{v}/e/{q(args['source'])}/{dtype}/{q(args['destination'])}/" \
               f"{q(args.get('properties_key', '~'))}"
    elif kind == "permission":
        path = f"/permissions/{q(args['vhost'])}/{q(args['user'])}"
    elif kind in ("vhost", "user"):
        path = f"/{kind}s/{q(args['name'])}"
    else:
        path = f"/{'policies' if kind == 'policy' else kind + 's'}/{v}/{q(args['name'])}"
    client.call("DELETE", path, missing=f"Not found: {kind} {args.get('name', '')}".rstrip())
    return f"{kind} deleted"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise Usage(message)


@quiet_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
               epilog=f"Run '{PROG} help subcommands' for the list of subcommands.")
    p.add_argument("-H", "--host", help="management API host (default 127.0.0.1)")
    p.add_argument("-P", "--port", type=int, help="management API port (default 15672)")
    p.add_argument("-u", "--username", help="default guest")
    p.add_argument("-p", "--password", help="default guest")
    p.add_argument("-V", "--vhost", help="vhost to act in (default /; lists: all)")
    p.add_argument("-f", "--format", default="table",
                   choices=["table", "tsv", "raw_json", "pretty_json"])
    p.add_argument("verb", nargs="?")
    p.add_argument("rest", nargs="*")
    try:
        args = p.parse_intermixed_args(argv)
        if args.verb is None:
            raise Usage("Action not specified")
        client = Client.from_options(host=args.host or "127.0.0.1", port=args.port,
                                     user=args.username, password=args.password)
        print(run(client, args.verb, args.rest, args.vhost, args.format))
    except Usage as err:
        print(f"\nERROR: {err}\n\n{PROG} --help for help\n", file=sys.stderr)
        return EX_USAGE
    except CtlError as err:
        text = f"Could not connect: {err.detail}" if err.detail != err.message else err.message
        print(f"*** {text}\n", file=sys.stderr)
        return err.code
    return 0


if __name__ == "__main__":
    sys.exit(main())

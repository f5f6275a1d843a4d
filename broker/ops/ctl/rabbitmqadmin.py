"""``burrowmqadmin``: the everyday subset of rabbitmqadmin (v1) over the management API.

    burrowmqadmin list queues [name messages ...]      list connections|exchanges|bindings|
                                                       users|vhosts|permissions|policies|
                                                       channels|consumers
    burrowmqadmin show overview
    burrowmqadmin declare queue name=jobs durable=true  declare exchange name=x type=topic
    burrowmqadmin declare binding source=x destination=jobs routing_key=k
    burrowmqadmin delete queue name=jobs               delete exchange name=x
    burrowmqadmin purge queue name=jobs
    burrowmqadmin publish routing_key=jobs payload=hi [exchange=amq.default]
    burrowmqadmin get queue=jobs [count=1] [ackmode=ack_requeue_true]
    burrowmqadmin export file.json                     import file.json

Output formats as rabbitmqadmin's ``-f``: table (default), tsv, raw_json, pretty_json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any  # Any: JSON values, typed key=value arguments

from .client import EX_USAGE, Client, CtlError, q

DEFAULT_COLUMNS = {
    "queues": ["vhost", "name", "type", "messages"], "exchanges": ["vhost", "name", "type"],
    "connections": ["name", "user", "channels"], "channels": ["name", "user"],
    "consumers": ["queue.name", "consumer_tag"], "users": ["name", "tags"],
    "vhosts": ["name", "messages"], "permissions": ["vhost", "user", "configure", "write",
                                                    "read"],
    "bindings": ["source", "vhost", "destination", "destination_type", "routing_key"],
    "policies": ["vhost", "name", "pattern", "apply-to", "priority"],
}


def field(item: dict, column: str) -> Any:
    value: Any = item  # Any: a JSON value, nested as deep as the dotted column goes
    for part in column.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def render(rows: list[dict], columns: list[str], fmt: str) -> str:
    if fmt == "raw_json":
        return json.dumps(rows)
    if fmt == "pretty_json":
        return json.dumps(rows, indent=4, sort_keys=True)
    cells = [[_text(field(r, c)) for c in columns] for r in rows]
    if fmt == "tsv":
        return "\n".join("\t".join(line) for line in [columns, *cells])
    widths = [max(len(x) for x in col) for col in zip(columns, *cells, strict=False)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)) + " |"  # noqa: E501, E731
    return "\n".join([rule, line(columns), rule, *(line(c) for c in cells), rule])


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return "" if value is None else str(value)


def pairs(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise CtlError(f"expected key=value, got {item!r}", EX_USAGE)
        out[key] = {"true": True, "false": False}.get(value, value)
    return out


def run(client: Client, verb: str, rest: list[str], vhost: str, fmt: str) -> str:
    v = q(vhost)
    if verb == "list":
        kind, columns = rest[0], rest[1:] or DEFAULT_COLUMNS.get(rest[0], ["name"])
        return render(client.get(f"/{kind}"), columns, fmt)
    if verb == "show":
        return json.dumps(client.get(f"/{rest[0]}"), indent=4, sort_keys=True)
    args = pairs(rest[1:]) if verb in ("declare", "delete", "purge") else pairs(rest)
    if verb == "declare" and rest[0] in ("queue", "exchange"):
        name = args.pop("name")
        client.call("PUT", f"/{rest[0]}s/{v}/{q(name)}", args)
        return f"{rest[0]} declared"
    if verb == "declare" and rest[0] == "binding":
        dtype = "q" if args.get("destination_type", "queue") == "queue" else "e"
        client.call("POST", f"/bindings/{v}/e/{q(args['source'])}/{dtype}/"
                            f"{q(args['destination'])}",
                    {"routing_key": args.get("routing_key", ""), "arguments": {}})
        return "binding declared"
    if verb == "delete":
        client.call("DELETE", f"/{rest[0]}s/{v}/{q(args['name'])}")
        return f"{rest[0]} deleted"
    if verb == "purge":
        client.call("DELETE", f"/queues/{v}/{q(args['name'])}/contents")
        return "queue purged"
    if verb == "publish":
        exchange = args.pop("exchange", "amq.default")
        body = {"routing_key": args.get("routing_key", ""), "payload": args.get("payload", ""),
                "payload_encoding": "string", "properties": {}}
        routed = client.call("POST", f"/exchanges/{v}/{q(exchange)}/publish", body)["routed"]
        return "Message published" if routed else "Message published but NOT routed"
    if verb == "get":
        body = {"count": int(args.get("count", 1)),
                "ackmode": args.get("ackmode", "ack_requeue_true"), "encoding": "auto"}
        rows = client.call("POST", f"/queues/{v}/{q(args['queue'])}/get", body)
        return render(rows, ["routing_key", "exchange", "message_count", "payload",
                             "payload_bytes", "payload_encoding", "redelivered"], fmt)
    if verb == "export":
        Path(rest[0]).write_text(json.dumps(client.get("/definitions")))
        return f"Exported definitions for localhost to \"{rest[0]}\""
    if verb == "import":
        client.call("POST", "/definitions", json.loads(Path(rest[0]).read_text()))
        return f"Uploaded definitions from \"localhost\" to {rest[0]}. The import process " \
               "may take some time. Consult server logs to track progress."
    raise CtlError(f"unknown command {verb} {' '.join(rest)}", EX_USAGE)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="burrowmqadmin", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-H", "--host")
    p.add_argument("-P", "--port", type=int)
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("-V", "--vhost", default="/")
    p.add_argument("-f", "--format", default="table",
                   choices=["table", "tsv", "raw_json", "pretty_json"])
    p.add_argument("verb")
    p.add_argument("rest", nargs="*")
    args = p.parse_intermixed_args(argv)
    client = Client.from_env(host=args.host, port=args.port, user=args.username,
                             password=args.password)
    try:
        print(run(client, args.verb, args.rest, args.vhost, args.format))
    except CtlError as err:
        print(f"*** {err.message}", file=sys.stderr)
        return err.code
    except (KeyError, IndexError) as err:
        print(f"*** missing argument: {err}", file=sys.stderr)
        return EX_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())

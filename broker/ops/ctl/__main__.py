"""``burrowctl <command> [args]`` / ``python -m broker.ops.ctl``: parse rabbitmqctl's flags and
run one command against the broker's management API."""

from __future__ import annotations

import argparse
import sys

from .client import EX_USAGE, Client, CtlError
from .commands import COMMANDS
from .lists import LISTS, run_list
from .output import Output


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="burrowctl", description="rabbitmqctl for burrowmq "
                                "(talks to the management API)")
    p.add_argument("command", choices=sorted([*COMMANDS, *LISTS]), metavar="command")
    p.add_argument("positional", nargs="*", help="command arguments / list columns")
    p.add_argument("-p", "--vhost", default="/")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-s", "--silent", action="store_true")
    p.add_argument("--no-table-headers", action="store_true")
    p.add_argument("--formatter", choices=["table", "json"], default="table")
    p.add_argument("-n", "--node", help="accepted for compatibility; the API address decides")
    p.add_argument("-t", "--timeout", type=float, default=60.0)
    p.add_argument("--host", help="management API host (BURROWCTL_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="management API port (BURROWCTL_PORT, 15672)")
    p.add_argument("-u", "--username", help="API user (BURROWCTL_USER, default guest)")
    p.add_argument("--password", help="API password (BURROWCTL_PASSWORD, default guest)")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--apply-to", default="all")
    p.add_argument("--description")
    p.add_argument("--tags")
    p.add_argument("--default-queue-type")
    p.add_argument("--if-empty", "-e", action="store_true")
    p.add_argument("--if-unused", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    client = Client.from_env(host=args.host, port=args.port, user=args.username,
                             password=args.password, timeout=args.timeout)
    out = Output(quiet=args.quiet or args.silent,
                 headers=not (args.silent or args.no_table_headers), formatter=args.formatter)
    try:
        if args.command in LISTS:
            run_list(args.command, client, out, args.vhost, args.positional)
        else:
            COMMANDS[args.command](client, out, args)
    except CtlError as err:
        print(f"Error:\n{err.message}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return EX_USAGE
    except BrokenPipeError:  # `burrowctl status | head`
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

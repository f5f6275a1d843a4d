"""``burrowctl <command> [args]`` / ``python -m broker.ops.ctl``: parse rabbitmqctl's flags, check
the command and its arguments against the catalogue, run it against the node.

Output streams and exit codes follow rabbitmqctl: help on stdout (exit 0) when asked for,
on stderr (exit 64) when no command was given; ``Command 'x' not found.`` and argument
validation errors on stderr with 64; errors from the node on stderr with the command's code.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import NoReturn

from .catalog import COMMANDS, command_help, command_usage, general_help
from .client import EX_USAGE, Client, CtlError
from .commands import COMMANDS as OBJECT_COMMANDS
from .limits import COMMANDS as LIMIT_COMMANDS
from .lists import LISTS, run_list
from .nodes import COMMANDS as NODE_COMMANDS
from .output import Output, quiet_on_closed_pipe

RUNNERS = {**OBJECT_COMMANDS, **NODE_COMMANDS, **LIMIT_COMMANDS}


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="burrowctl", add_help=False)
    p.add_argument("command", nargs="?")
    p.add_argument("positional", nargs="*")
    p.add_argument("-?", "-h", "--help", dest="help", action="store_true")
    p.add_argument("--version", action="store_true")
    p.add_argument("-p", "--vhost", default="/")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-s", "--silent", action="store_true")
    p.add_argument("--no-table-headers", action="store_true")
    p.add_argument("--formatter", choices=["table", "json"], default="table")
    p.add_argument("-n", "--node")
    p.add_argument("-l", "--longnames", action="store_true")
    p.add_argument("-t", "--timeout", type=float)
    p.add_argument("--data-dir")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("-u", "--username")
    p.add_argument("--password")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--apply-to", default="all")
    p.add_argument("--description")
    p.add_argument("--tags")
    p.add_argument("--default-queue-type")
    p.add_argument("-e", "--if-empty", action="store_true")
    p.add_argument("--if-unused", action="store_true")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--disc", action="store_true")
    p.add_argument("--ram", action="store_true")
    p.add_argument("--global", dest="global_", action="store_true")
    p.add_argument("--user")
    return p


def validation_error(message: str, argv: list[str], command: str | None,
                     code: int = EX_USAGE) -> CtlError:
    text = f"{message}\nArguments given:\n\t{shlex.join(argv)}"
    if command in COMMANDS:
        text += f"\n\nUsage\n\n{command_usage(command)}"
    return CtlError(text, code, "validation")


def option_error(message: str) -> str:
    """argparse's complaint in rabbitmqctl's words (``--bogus : `` per unknown option)."""
    head, _, rest = message.partition(": ")
    if head == "unrecognized arguments":
        return "\n".join(f"{token} : " for token in rest.split())
    return message


def check_arity(command: str, positional: list[str], argv: list[str]) -> None:
    spec = COMMANDS[command]
    if len(positional) < spec.min_args:
        raise validation_error("not enough arguments.", argv, command)
    if spec.max_args is not None and len(positional) > spec.max_args:
        raise validation_error("too many arguments.", argv, command)


@quiet_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_intermixed_args(argv)
    except UsageError as err:
        return report(validation_error(
            f"Invalid options for this command:\n{option_error(str(err))}", argv,
            next((a for a in argv if a in COMMANDS), None)))
    if args.version:
        args.command = "version"
    command = args.command
    if command is None:
        print(general_help(), file=sys.stdout if args.help else sys.stderr)
        return 0 if args.help else EX_USAGE
    if command == "help" or args.help:
        target = (args.positional[:1] or [None])[0] if command == "help" else command
        if target is None:
            print(general_help())
            return 0
        if target not in COMMANDS:
            return report(CtlError(f"\nCommand '{target}' not found.", EX_USAGE))
        print(command_help(target))
        return 0
    if command not in COMMANDS:
        print(f"\nCommand '{command}' not found. \n{general_help()}", file=sys.stderr)
        return EX_USAGE
    out = Output(quiet=args.quiet or args.silent,
                 headers=not (args.silent or args.no_table_headers), formatter=args.formatter)
    try:
        check_arity(command, args.positional, argv)
        args.timeout_given = args.timeout is not None
        args.timeout = args.timeout if args.timeout is not None else 60.0
        client = Client.from_options(host=args.host, port=args.port, user=args.username,
                                     password=args.password, data_dir=args.data_dir,
                                     timeout=args.timeout, node=args.node)
        if command in LISTS:
            run_list(command, client, out, args.vhost, args.positional)
        else:
            RUNNERS[command](client, out, args)
    except CtlError as err:
        if err.layout == "validation" and "Arguments given" not in err.message:
            err = validation_error(err.message, argv, command, err.code)
        return report(err)
    except KeyboardInterrupt:
        return EX_USAGE
    return 0


def report(err: CtlError) -> int:
    if err.layout == "validation":
        print(f"Error (argument validation): {err.message}", file=sys.stderr)
    else:
        print(err.render(), file=sys.stderr)
    return err.code


if __name__ == "__main__":
    sys.exit(main())

"""Node-level commands: ping, await_startup, node_health_check, version, environment, report,
stop_app / start_app / reset / stop, and the cluster membership commands (join_cluster,
forget_cluster_node, force_boot: the node itself answers why one cannot happen).

``ping`` is rabbitmqctl's liveness check: the node answers and the CLI authenticates with it,
whether or not the AMQP listener is open (``stop_app`` leaves it pingable, as in RabbitMQ).
``await_startup`` is the readiness check: it waits until the AMQP listener serves clients.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any  # Any: JSON values

from broker.core.naming import BURROWMQ_VERSION, RABBITMQ_VERSION

from .client import EX_DATAERR, EX_UNAVAILABLE, EX_USAGE, Client, CtlError
from .lists import run_list
from .output import Output
from .status import cluster_status, status

VHOST_LISTS = ("list_queues", "list_exchanges", "list_bindings", "list_consumers",
               "list_permissions", "list_policies")


def ping(client: Client, out: Output, args: argparse.Namespace) -> None:
    via = "control socket" if client.socket_path else "management API"
    out.info(f"Will ping {client.node}. This only checks if the OS process is running and "
             f"answers on its {via}. Timeout: {int(client.timeout * 1000)} ms.")
    client.get("/overview")
    out.line("Ping succeeded")


def _running(client: Client) -> bool:
    return client.get("/healthchecks/node").get("status") == "ok"


def await_startup(client: Client, out: Output, args: argparse.Namespace) -> None:
    timeout = args.timeout if args.timeout_given else 300.0
    deadline = time.monotonic() + timeout
    client.timeout = min(client.timeout, max(timeout, 0.5))
    while True:
        try:
            if _running(client):
                return
            failure = CtlError("rabbit_is_not_running", EX_UNAVAILABLE)
        except CtlError as err:
            if err.code != EX_UNAVAILABLE:
                raise
            failure = err
        if time.monotonic() >= deadline:
            raise failure
        time.sleep(0.1)


def node_health_check(client: Client, out: Output, args: argparse.Namespace) -> None:
    if not _running(client):
        raise CtlError("this command requires the 'rabbit' app to be running on the target "
                       "node. Start it with 'burrowctl start_app'.", EX_USAGE, "validation")
    out.info("This command is DEPRECATED and will be removed in a future version.\n"
             "It performs intrusive, opinionated health checks and requires a fully booted "
             "node.\nUse one of the options covered in "
             "https://www.rabbitmq.com/monitoring.html#health-checks instead.")
    out.info(f"Timeout: {int(args.timeout)} seconds ...")
    out.info(f"Checking health of node {client.node_name()} ...")
    client.get("/health/checks/local-alarms")
    out.line("Health check passed")


def version(client: Client | None, out: Output, args: argparse.Namespace) -> None:
    out.line(f"{RABBITMQ_VERSION} (burrowmq {BURROWMQ_VERSION})")


def _erlang_term(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "undefined"}[value]
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_erlang_term(v) for v in value) + "]"
    return json.dumps(str(value))


def environment(client: Client, out: Output, args: argparse.Namespace) -> None:
    values = client.get("/burrowmq/environment")
    if out.formatter == "json":
        out.line(json.dumps({"burrowmq": values}))
        return
    out.info(f"Application environment of node {client.node_name()} ...")
    items = [f"{{{key},{_erlang_term(value)}}}" for key, value in sorted(values.items())]
    out.line("[{burrowmq,\n     [" + ",\n      ".join(items) + "]}]")


def report(client: Client, out: Output, args: argparse.Namespace) -> None:
    """Everything support asks for, in rabbitmqctl report's order."""
    out.info(f"Reporting server status of node {client.node_name()} ...\n")
    status(client, out, args)
    out.line("")
    cluster_status(client, out, args)
    out.line("")
    environment(client, out, args)
    for name in ("list_connections", "list_channels"):
        out.line("")
        run_list(name, client, out, "/", [])
    for vhost in [v["name"] for v in client.get("/vhosts")]:
        for name in VHOST_LISTS:
            out.line("")
            run_list(name, client, out, vhost, [])


def node_action(action: str, message: str) -> Callable[[Client, Output, argparse.Namespace], None]:
    def run(client: Client, out: Output, args: argparse.Namespace) -> None:
        pid = client.get("/nodes")[0]["os_pid"] if "{pid}" in message else ""
        out.info(message.format(node=client.node_name(), pid=pid))
        client.call("POST", f"/burrowmq/{action}", {})
    return run


def join_cluster(client: Client, out: Output, args: argparse.Namespace) -> None:
    other = args.positional[0]
    if _running(client):
        raise CtlError("this command requires the 'rabbit' app to be stopped on the target "
                       "node. Stop it with 'burrowctl stop_app'.", EX_USAGE, "validation")
    out.info(f"Clustering node {client.node_name()} with {other}")
    client.call("POST", "/burrowmq/join_cluster", {"node": other})


def force_boot(client: Client, out: Output, args: argparse.Namespace) -> None:
    """As rabbitmqctl's: refused while the app runs; a stopped node is told through its
    control socket, a node that is down gets the marker in its data directory (rabbitmqctl
    writes ``force_load`` into the Mnesia directory). Prints nothing when it worked."""
    local = client.data_dir if not client._named else None
    if client.socket_path is None and local is not None:
        _force_boot_marker(local)
        return
    try:
        if _running(client):
            raise CtlError("this command requires the 'rabbit' app to be stopped on the "
                           "target node. Stop it with 'burrowctl stop_app'.", EX_USAGE,
                           "validation")
        client.call("POST", "/burrowmq/force_boot", {})
    except CtlError as err:
        if err.code != EX_UNAVAILABLE or local is None:
            raise
        _force_boot_marker(local)  # the socket is there but nobody answers: the node is down


def _force_boot_marker(data_dir: Path) -> None:
    from broker.cluster import files

    if not data_dir.is_dir():
        raise CtlError(f"{{error,mnesia_dir_not_found}}: no data directory at {data_dir} "
                       "(pass the node's --data-dir)", EX_DATAERR)
    files.request_force_boot(data_dir)


def forget_cluster_node(client: Client, out: Output, args: argparse.Namespace) -> None:
    other = args.positional[0]
    out.info(f"Removing node {other} from the cluster")
    try:
        client.call("POST", "/burrowmq/forget_cluster_node",
                    {"node": other, "offline": args.offline})
    except CtlError as err:
        err.code = EX_UNAVAILABLE  # rabbitmqctl's code for both refusals
        raise


COMMANDS: dict[str, Callable[[Client, Output, argparse.Namespace], None]] = {
    "ping": ping, "await_startup": await_startup, "node_health_check": node_health_check,
    "version": version, "environment": environment, "report": report,
    "status": status, "cluster_status": cluster_status,
    "join_cluster": join_cluster, "forget_cluster_node": forget_cluster_node,
    "force_boot": force_boot,
    "stop_app": node_action("stop_app", "Stopping rabbit application on node {node} ..."),
    "start_app": node_action("start_app", "Starting node {node} ..."),
    "reset": node_action("reset", "Resetting node {node} ..."),
    "stop": node_action("stop", "Stopping and halting node {node} ..."),
    "shutdown": node_action("stop", "Shutting down RabbitMQ node {node} running at PID {pid}"),
}

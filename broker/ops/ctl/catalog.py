"""Every burrowctl command: its help group, one-line summary, usage and how many positional
arguments it takes. ``help``, ``--help``, the unknown-command message and argument validation
all read this table, so a command cannot exist without its help text."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

PROG = "burrowctl"
GLOBAL_USAGE = f"{PROG} [--node <node>] [--data-dir <dir>] [--timeout <timeout>] [--quiet] " \
               "<command> [<command options>]"


@dataclass(frozen=True)
class Spec:
    group: str
    summary: str
    usage: str = ""  # what follows the command name in its usage line
    min_args: int = 0
    max_args: int | None = 0  # None: any number (list columns, tags)
    details: str = ""  # more paragraphs for ``help <command>``


LIST_COLUMNS = "[--no-table-headers] [<column> ...] [--timeout <timeout>]"
VHOST_LIST = f"[--vhost <vhost>] {LIST_COLUMNS}"

COMMANDS: dict[str, Spec] = {
    # Help
    "help": Spec("Help", "Displays usage information for a command", "[<command>]", 0, 1),
    "version": Spec("Help", "Displays CLI tools version"),
    # Nodes
    "await_startup": Spec("Nodes", "Waits for the node to start serving clients",
                          "[--timeout <seconds>]"),
    "reset": Spec("Nodes", "Returns a stopped node to its virgin state (the app must be "
                  "stopped)"),
    "start_app": Spec("Nodes", "Starts the AMQP listener again after stop_app"),
    "stop": Spec("Nodes", "Stops the node (every connection gets 320 CONNECTION_FORCED)"),
    "shutdown": Spec("Nodes", "Stops the node, as stop"),
    "stop_app": Spec("Nodes", "Closes the AMQP listener and every connection, leaving the "
                     "node running"),
    # Cluster
    "set_cluster_name": Spec("Cluster", "Sets the cluster name", "<name>", 1, 1),
    "cluster_status": Spec("Cluster", "Displays the nodes in the cluster (here: this one)"),
    "force_boot": Spec(
        "Cluster", "Forces node to start even if it cannot contact or rejoin any of its "
        "previously known peers", details=(
            "In cluster mode: at its next start (start_app) the node may lead the cluster with "
            "its own copy of the data, even outside the in-sync replicas or with an incomplete "
            "copy, and it founds the cluster again when etcd has no record of it (etcd wiped or "
            "replaced). Use it only when the nodes that held every confirmed message are gone "
            "for good: messages that only they held are LOST, and the other nodes' copies are "
            "replaced by this one's when they follow it. The app must be stopped; on a node "
            "that is down the marker is written into its data directory.")),
    "forget_cluster_node": Spec("Cluster", "Removes a node from the cluster",
                                "[--offline] <existing_cluster_member_node>", 1, 1),
    "join_cluster": Spec("Cluster", "Instructs the node to become a member of the cluster "
                         "that the specified node is in",
                         "[--disc|--ram] <existing_cluster_member>", 1, 1),
    # Users
    "add_user": Spec("Users", "Creates a user (with no permissions)",
                     "<username> <password>", 2, 2),
    "authenticate_user": Spec("Users", "Attempts to authenticate a user. Exits with a "
                              "non-zero code if authentication fails",
                              "<username> <password>", 2, 2),
    "change_password": Spec("Users", "Changes the user password", "<username> <password>",
                            2, 2),
    "delete_user": Spec("Users", "Removes a user", "<username>", 1, 1),
    "list_users": Spec("Users", "List user names and tags", LIST_COLUMNS, 0, None),
    "set_user_tags": Spec("Users", "Sets user tags", "<username> <tag> [...]", 1, None),
    "clear_password": Spec("Users", "Clears (resets) password and disables password login "
                           "for a user", "<username>", 1, 1),
    "clear_user_limits": Spec("Users", "Clears user connection/channel limits",
                              "<username> <limit> | all", 2, 2),
    "list_user_limits": Spec("Users", "Displays configured user limits",
                             "[--user <username>] [--global]"),
    "set_user_limits": Spec("Users", "Sets user limits", "<username> <definition>", 2, 2),
    # Access Control
    "clear_permissions": Spec("Access Control", "Revokes user permissions for a vhost",
                              "[--vhost <vhost>] <username>", 1, 1),
    "list_permissions": Spec("Access Control", "Lists user permissions in a virtual host",
                             VHOST_LIST, 0, None),
    "list_user_permissions": Spec("Access Control", "Lists permissions of a user across all "
                                  "virtual hosts",
                                  "[--no-table-headers] <username> [--timeout <timeout>]",
                                  1, 1),
    "list_vhosts": Spec("Access Control", "Lists virtual hosts", LIST_COLUMNS, 0, None),
    "set_permissions": Spec("Access Control", "Sets user permissions for a vhost",
                            "[--vhost <vhost>] <username> <conf> <write> <read>", 4, 4),
    "clear_topic_permissions": Spec("Access Control", "Clears user topic permissions for a "
                                    "vhost or exchange",
                                    "[--vhost <vhost>] <username> [<exchange>]", 1, 2),
    "list_topic_permissions": Spec("Access Control", "Lists topic permissions in a virtual "
                                   "host", VHOST_LIST, 0, None),
    "list_user_topic_permissions": Spec("Access Control", "Lists user topic permissions",
                                        "[--no-table-headers] <username> "
                                        "[--timeout <timeout>]", 1, 1),
    "set_topic_permissions": Spec("Access Control", "Sets topic permissions for an exchange",
                                  "[--vhost <vhost>] <username> <exchange> <write> <read>",
                                  4, 4),
    # Monitoring, observability and health checks
    "list_bindings": Spec("Monitoring, observability and health checks",
                          "Lists all bindings on a vhost", VHOST_LIST, 0, None),
    "list_channels": Spec("Monitoring, observability and health checks",
                          "Lists all channels in the node", LIST_COLUMNS, 0, None),
    "list_connections": Spec("Monitoring, observability and health checks",
                             "Lists AMQP 0.9.1 connections for the node", LIST_COLUMNS, 0,
                             None),
    "list_consumers": Spec("Monitoring, observability and health checks",
                           "Lists all consumers for a vhost", VHOST_LIST, 0, None),
    "list_exchanges": Spec("Monitoring, observability and health checks", "Lists exchanges",
                           VHOST_LIST, 0, None),
    "list_queues": Spec("Monitoring, observability and health checks",
                        "Lists queues and their properties", VHOST_LIST, 0, None),
    "ping": Spec("Monitoring, observability and health checks",
                 "Checks that the node OS process is up and the CLI can authenticate with it"),
    "report": Spec("Monitoring, observability and health checks",
                   "Generate a server status report containing a concatenation of all server "
                   "status information for support purposes"),
    "status": Spec("Monitoring, observability and health checks", "Displays status of a node"),
    # Policies
    "clear_policy": Spec("Policies", "Clears (removes) a policy",
                         "[--vhost <vhost>] <name>", 1, 1),
    "list_policies": Spec("Policies", "Lists all policies in a virtual host", VHOST_LIST, 0,
                          None),
    "set_policy": Spec("Policies", "Sets or updates a policy",
                       "[--vhost <vhost>] [--priority <priority>] [--apply-to <apply-to>] "
                       "<name> <pattern> <definition>", 3, 3),
    "clear_operator_policy": Spec("Policies", "Clears an operator policy",
                                  "[--vhost <vhost>] <name>", 1, 1),
    "list_operator_policies": Spec("Policies", "Lists operator policy overrides for a virtual "
                                   "host", VHOST_LIST, 0, None),
    "set_operator_policy": Spec("Policies", "Sets an operator policy that overrides a subset "
                                "of arguments in user policies",
                                "[--vhost <vhost>] [--priority <priority>] [--apply-to "
                                "<apply-to>] <name> <pattern> <definition>", 3, 3),
    # Virtual hosts
    "clear_vhost_limits": Spec("Virtual hosts", "Clears virtual host limits",
                               "[--vhost <vhost>]"),
    "list_vhost_limits": Spec("Virtual hosts", "Displays configured virtual host limits",
                              "[--vhost <vhost>] [--global]"),
    "set_vhost_limits": Spec("Virtual hosts", "Sets virtual host limits",
                             "[--vhost <vhost>] <definition>", 1, 1),
    "add_vhost": Spec("Virtual hosts", "Creates a virtual host",
                      "[--description <description> --tags \"<tag1>,<tag2>,<...>\" "
                      "--default-queue-type <quorum|classic|stream>] <vhost>", 1, 1),
    "delete_vhost": Spec("Virtual hosts", "Deletes a virtual host", "<vhost>", 1, 1),
    # Configuration and Environment
    "environment": Spec("Configuration and Environment", "Displays the node's effective "
                        "configuration (every setting and where the defaults apply)"),
    # Definitions
    "export_definitions": Spec("Definitions", "Exports definitions in JSON",
                               "<file_path | \"-\">", 1, 1),
    "import_definitions": Spec("Definitions", "Imports definitions in JSON",
                               "<file_path | \"-\">", 0, 1),
    # Operations
    "close_all_connections": Spec("Operations", "Instructs the broker to close all "
                                  "connections for the specified vhost",
                                  "[--vhost <vhost>] <explanation>", 1, 1),
    "close_all_user_connections": Spec("Operations", "Instructs the broker to close all "
                                       "connections of the specified user",
                                       "<username> <explanation>", 2, 2),
    "close_connection": Spec("Operations", "Instructs the broker to close the connection "
                             "associated with the process id",
                             "<connection_pid> <explanation>", 2, 2),
    # Queues
    "delete_queue": Spec("Queues", "Deletes a queue",
                         "[--vhost <vhost>] <queue_name> [--if-empty|-e] [--if-unused|-u]",
                         1, 1),
    "purge_queue": Spec("Queues", "Purges a queue (removes all messages in it)",
                        "[--vhost <vhost>] <queue>", 1, 1),
    # Deprecated
    "node_health_check": Spec("Deprecated", "DEPRECATED. Performs intrusive, opinionated "
                              "health checks on a fully booted node",
                              "[--timeout <timeout>]"),
}

GENERAL_OPTIONS = """General Options

The following options are accepted by most or all commands.

short            | long             | description
-----------------|------------------|--------------------------------
-?, -h           | --help           | displays command help
-n <node>        | --node <node>    | accepted for compatibility (one node per data directory)
                 | --data-dir <dir> | the local node's data directory: the CLI talks to it
                 |                  | through <dir>/ctl.sock, with no password
                 | --host, --port   | a remote node's management API (HTTP, -u / --password)
-t               | --timeout <n>    | for commands that support it, operation timeout in seconds
-q               | --quiet          | suppress informational messages
-s               | --silent         | suppress informational messages and table header row
-p               | --vhost          | for commands that are scoped to a virtual host,
                 |                  | virtual host to use
                 | --formatter      | alternative result formatter to use: json or table
"""


def command_usage(name: str) -> str:
    spec = COMMANDS[name]
    return f"{PROG} [--node <node>] [--quiet] {name} {spec.usage}".rstrip()


def general_help() -> str:
    groups: dict[str, list[str]] = {}
    for name, spec in COMMANDS.items():
        groups.setdefault(spec.group, []).append(name)
    width = max(len(n) for n in COMMANDS) + 2
    lines = ["", "Usage", "", GLOBAL_USAGE, "", "Available commands:", ""]
    for group, names in groups.items():
        lines.append(f"{group}:")
        lines.append("")
        lines.extend(f"   {n.ljust(width)}{COMMANDS[n].summary}" for n in sorted(names))
        lines.append("")
    lines.append(f"Use '{PROG} help <command>' to learn more about a specific command")
    return "\n".join(lines)


def command_help(name: str) -> str:
    spec = COMMANDS[name]
    details = [textwrap.fill(spec.details, 100), ""] if spec.details else []
    return "\n".join(["", "Usage", "", command_usage(name), "", f"{spec.summary}.", "",
                      *details, "", GENERAL_OPTIONS])

"""Who this broker says it is: RabbitMQ's version and capabilities, the AMQP server properties,
the node's and cluster's names as RabbitMQ reports them (``rabbit@<short hostname>``)."""

from __future__ import annotations

import platform
import socket
from typing import Protocol

from protocol.tables import Table

BURROWMQ_VERSION = "0.1.0"
RABBITMQ_VERSION = "3.13.7"
CAPABILITIES = (
    "publisher_confirms", "exchange_exchange_bindings", "basic.nack", "consumer_cancel_notify",
    "connection.blocked", "consumer_priorities", "authentication_failure_close",
    "per_consumer_qos", "direct_reply_to",
)


class Named(Protocol):
    """Whatever carries the settings (the node's Config satisfies it)."""

    @property
    def cluster_name(self) -> str: ...


class HasConfig(Protocol):
    @property
    def config(self) -> Named: ...


_configured = ""  # a node name set by configuration (cluster nodes on one host differ)


def host_node_name() -> str:
    """``rabbit@<short hostname>``: the default name."""
    return f"rabbit@{(platform.node() or socket.gethostname() or 'localhost').split('.')[0]}"


def node_name() -> str:
    return _configured or host_node_name()


def set_node_name(name: str) -> None:
    """The process's node name from now on (``RABBITMQ_NODENAME``, ``--node-name``); one node
    per process, as in RabbitMQ."""
    global _configured
    _configured = name


def cluster_name(server: HasConfig) -> str:
    return server.config.cluster_name or node_name()


def server_properties() -> Table:
    """connection.start's server-properties, as RabbitMQ 3.13 sends them."""
    return {
        "capabilities": dict.fromkeys(CAPABILITIES, True),
        "cluster_name": f"rabbit@{platform.node() or 'localhost'}",
        "copyright": "Copyright (c) the burrowmq authors",
        "information": "burrowmq, a RabbitMQ-compatible AMQP 0-9-1 broker in Python",
        "platform": f"Python {platform.python_version()}",
        "product": "RabbitMQ",
        "version": RABBITMQ_VERSION,
    }

"""A node with its HTTP services: what ``python -m broker``, the pytest plugin and the test
fixtures start. The node itself knows nothing of HTTP (ops is the layer above it)."""

from __future__ import annotations

from broker.node.config import Config
from broker.node.node import Node

from .control_socket import ControlChannel
from .http import HttpService


def make_node(config: Config) -> Node:
    """The management API + UI and Prometheus start after the AMQP listener, each only when
    its port is set (``None`` is off); then the CLI's control socket when
    ``config.control_socket``."""
    return Node(config, services=[HttpService(), ControlChannel()])

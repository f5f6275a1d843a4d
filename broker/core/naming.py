"""The node's and cluster's names as RabbitMQ reports them (``rabbit@<short hostname>``)."""

from __future__ import annotations

import platform
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import Server


def node_name() -> str:
    return f"rabbit@{(platform.node() or socket.gethostname() or 'localhost').split('.')[0]}"


def cluster_name(server: Server) -> str:
    return server.config.cluster_name or node_name()

"""What a node says while it starts: RabbitMQ's start-up log (banner with node name, version,
config files, data directory; listeners; "Server startup complete") and the one-line errors
that stop a start, with the exit status ``python -m broker`` returns for them.

Exit statuses are sysexits', as RabbitMQ's scripts use them: 64 a bad flag, 78 a bad
configuration (file, variable, TLS files), 69 something the node needs is taken (a port, the
data directory's lock), 73 the data directory cannot be created or written.
"""

from __future__ import annotations

import datetime
import logging
import os
import platform
import sys
from typing import TYPE_CHECKING

from broker.core.naming import BURROWMQ_VERSION, RABBITMQ_VERSION, node_name

from . import sysinfo
from .config import PORT_SETTINGS, origin

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger("broker")

EX_UNAVAILABLE, EX_CANTCREAT, EX_CONFIG = 69, 73, 78


class StartupError(Exception):
    """The node cannot start: ``str(err)`` is the one-line reason, ``code`` the exit status."""

    def __init__(self, message: str, code: int = EX_UNAVAILABLE) -> None:
        super().__init__(message)
        self.code = code


def port_error(cfg: Config, field: str, purpose: str, host: str, port: int,
               exc: OSError) -> StartupError:
    """``cannot listen on HOST:PORT (purpose): reason; <which setting chose the port>``."""
    # asyncio wraps bind errors ("error while attempting to bind on address ..."): the errno
    # alone says it plainly
    reason = (os.strerror(exc.errno) if exc.errno else str(exc)).lower()
    where = origin(cfg, field)
    how = PORT_SETTINGS[field]
    if where:
        source = f"port {port} was set by {where}"
    else:
        source = f"port {port} is the default; set another with {how}"
    hint = "another broker or program listens there" if "in use" in reason else \
        "check the address"
    return StartupError(f"cannot listen on {host}:{port} for {purpose}: {reason} ({hint}); "
                        f"{source}")


class RabbitFormatter(logging.Formatter):
    """``2026-12-06 08:03:39.904984+00:00 [info] <logger> message``, as RabbitMQ's log lines
    look (its Erlang process id is the logger's name here)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        text = f"{stamp.isoformat(sep=' ')} [{record.levelname.lower()}] <{record.name}> " \
               f"{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(level: str) -> None:
    """Log lines on stdout, as RabbitMQ's ``log.console`` (errors that stop a start go to
    stderr, from ``python -m broker``)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(RabbitFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])


def python_version() -> str:
    return f"{platform.python_version()} ({platform.python_implementation()})"


def log_banner(cfg: Config) -> None:
    configs = os.path.abspath(cfg.config_file) if cfg.config_file else "(none)"
    log.info("\n\n Starting burrowmq %s (RabbitMQ %s compatible) on Python %s\n"
             " node           : %s\n"
             " home dir       : %s\n"
             " config file(s) : %s\n"
             " log(s)         : <stdout>\n"
             " data dir       : %s\n",
             BURROWMQ_VERSION, RABBITMQ_VERSION, python_version(), node_name(),
             os.path.expanduser("~"), configs, os.path.abspath(cfg.data_dir))


def log_limits(cfg: Config) -> None:
    """The resource limits in force, in RabbitMQ's words."""
    limit, total = sysinfo.memory_limit(cfg), sysinfo.total_memory()
    log.info("Memory high watermark set to %d MiB (%d bytes) of %d MiB (%d bytes) total",
             limit // 2**20, limit, total // 2**20, total)
    log.info("Disk free limit set to %dMB", sysinfo.disk_free_limit(cfg) // 1_000_000)


def log_complete(plugins: list[str]) -> None:
    listed = "".join(f"\n * {name}" for name in plugins)
    log.info("Server startup complete; %d plugins started.%s", len(plugins), listed)

"""rabbitmq.conf (the sysctl-style ``key = value`` format) -> Config field changes.

Only the keys people put in real deployments are understood; an unknown key is logged and
ignored, a malformed value raises ``ConfigFileError`` naming the line. Information units follow
RabbitMQ: ``k``/``kiB``/``M``/``MiB``/``G``/``GiB`` are powers of 1024, ``kB``/``MB``/``GB``
powers of 1000.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("broker.config")

UNITS = {"": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2, "g": 1024**3,
         "gib": 1024**3, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
         "t": 1024**4, "tib": 1024**4}
TRUE = ("true", "yes", "on", "1")


class ConfigFileError(ValueError):
    """A line of the config file could not be understood."""


def parse_bytes(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if m is None or m.group(2).lower() not in UNITS:
        raise ValueError(f"not an amount of information: {text!r}")
    return int(float(m.group(1)) * UNITS[m.group(2).lower()])


def parse_listener(text: str) -> tuple[str | None, int]:
    """``5672``, ``127.0.0.1:5672``, ``::1:5672`` or ``:::5672`` -> (host or None, port)."""
    text = text.strip()
    if text.isdigit():
        return None, int(text)
    host, _, port = text.rpartition(":")
    if host in ("::", "0.0.0.0"):
        return "0.0.0.0" if host == "0.0.0.0" else "::", int(port)
    return host.strip("[]"), int(port)


def _bool(text: str) -> bool:
    return text.strip().lower() in TRUE


def _listener(changes: dict, value: str) -> None:
    host, port = parse_listener(value)
    if "port" in changes and "_listener_seen" in changes:
        log.warning("only the first AMQP listener is used; ignoring %s", value)
        return
    changes["_listener_seen"] = True
    changes["port"] = port
    if host is not None:
        changes["host"] = host


def _loopback(changes: dict, key: str, value: str) -> None:
    users = set(changes.get("loopback_users", ("guest",)))
    if key == "loopback_users":
        if value.strip() == "none":
            users = set()
    elif _bool(value):
        users.add(key.split(".", 1)[1])
    else:
        users.discard(key.split(".", 1)[1])
    changes["loopback_users"] = tuple(sorted(users))


def _tags(changes: dict, key: str, value: str) -> None:
    tags = set(changes.get("default_user_tags", ("administrator",)))
    tag = key.split(".", 1)[1]
    (tags.add if _bool(value) else tags.discard)(tag)
    changes["default_user_tags"] = tuple(sorted(tags))


def _permission(changes: dict, key: str, value: str) -> None:
    perms = dict(zip(("configure", "write", "read"),
                     changes.get("default_permissions", (".*", ".*", ".*")), strict=True))
    perms[key.split(".", 1)[1]] = value
    changes["default_permissions"] = (perms["configure"], perms["write"], perms["read"])


SIMPLE: dict[str, tuple[str, Callable[[str], Any]]] = {
    "default_user": ("default_user", str),
    "default_pass": ("default_pass", str),
    "default_vhost": ("default_vhost", str),
    "heartbeat": ("heartbeat", int),
    "frame_max": ("frame_max", int),
    "channel_max": ("channel_max", int),
    "max_message_size": ("max_message_size", int),
    "handshake_timeout": ("handshake_timeout", lambda v: int(v) / 1000.0),
    "disk_free_limit.absolute": ("disk_free_limit", parse_bytes),
    "disk_free_limit.relative": ("disk_free_limit_relative", float),
    "vm_memory_high_watermark.relative": ("vm_memory_high_watermark_relative", float),
    "vm_memory_high_watermark.absolute": ("vm_memory_high_watermark_absolute", parse_bytes),
    "load_definitions": ("load_definitions", str),
    "definitions.local.path": ("load_definitions", str),
    "management.load_definitions": ("load_definitions", str),
    "management.tcp.port": ("management_port", int),
    "management.tcp.ip": ("management_host", str),
    "prometheus.tcp.port": ("prometheus_port", int),
    "prometheus.tcp.ip": ("prometheus_host", str),
    "cluster_name": ("cluster_name", str),
    "log.console.level": ("log_level", lambda v: {"warn": "warning"}.get(v, v)),
    "log.default.level": ("log_level", lambda v: {"warn": "warning"}.get(v, v)),
    "ssl_options.certfile": ("ssl_certfile", str),
    "ssl_options.keyfile": ("ssl_keyfile", str),
    "ssl_options.cacertfile": ("ssl_cacertfile", str),
    "ssl_options.verify": ("ssl_verify", str),
    "ssl_options.fail_if_no_peer_cert": ("ssl_fail_if_no_peer_cert", _bool),
    "connection_max": ("connection_max", lambda v: None if v == "infinity" else int(v)),
    "consumer_timeout": ("consumer_timeout",
                         lambda v: None if v in ("false", "infinity", "0") else int(v)),
}
IGNORED_PREFIXES = ("definitions.import_backend", "log.", "management.", "ssl_options",
                    "cluster_formation", "queue_master_locator",
                    "collect_statistics_interval", "deprecated_features")


def apply_line(changes: dict, key: str, value: str) -> None:
    if key in SIMPLE:
        field, convert = SIMPLE[key]
        changes[field] = convert(value)
    elif key.startswith("listeners.tcp."):
        _listener(changes, value)
    elif key.startswith("listeners.ssl."):
        host, port = parse_listener(value)
        changes["ssl_port"] = port
        if host is not None:
            changes["ssl_host"] = host
    elif key == "loopback_users" or key.startswith("loopback_users."):
        _loopback(changes, key, value)
    elif key.startswith("default_user_tags."):
        _tags(changes, key, value)
    elif key.startswith("default_permissions."):
        _permission(changes, key, value)
    elif key.startswith(IGNORED_PREFIXES):
        log.debug("config key %s is accepted and ignored", key)
    else:
        log.warning("unknown config key %s ignored", key)


def parse_text(text: str, source: str = "rabbitmq.conf") -> dict:
    changes: dict = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigFileError(f"{source}:{number}: expected 'key = value', got {raw!r}")
        try:
            apply_line(changes, key.strip(), value.strip())
        except ValueError as exc:
            raise ConfigFileError(f"{source}:{number}: {exc}") from None
    changes.pop("_listener_seen", None)
    return changes


def load(path: str) -> dict:
    return parse_text(Path(path).read_text(), path)

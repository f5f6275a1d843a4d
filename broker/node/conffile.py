"""rabbitmq.conf (the sysctl-style ``key = value`` format) -> Config field changes.

Only the keys people put in real deployments are understood. Other keys RabbitMQ has (logging
to files, cluster formation, plugins' settings ...) are accepted and ignored with a log line.
Anything else refuses to boot, as RabbitMQ refuses a key it has no setting for: a misspelled
key must not start a broker on defaults. Every error is a ``ConfigFileError`` naming the file,
the line and the reason, in cuttlefish's words (``"abc" cannot be converted to a(n)
integer``). Information units follow RabbitMQ: ``k``/``kiB``/``M``/``MiB``/``G``/``GiB`` are
powers of 1024, ``kB``/``MB``/``GB`` powers of 1000.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("broker.config")

UNITS = {"": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2, "g": 1024**3,
         "gib": 1024**3, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
         "t": 1024**4, "tib": 1024**4}
TRUE = ("true", "yes", "on", "1")
FALSE = ("false", "no", "off", "0")
LOG_LEVELS = {"debug": "debug", "info": "info", "notice": "info", "warning": "warning",
              "warn": "warning", "error": "error", "critical": "critical", "none": "critical"}


class ConfigFileError(ValueError):
    """A line of the config file could not be understood."""


def _cannot(value: str, kind: str) -> ValueError:
    return ValueError(f'"{value}" cannot be converted to a(n) {kind}')


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _cannot(text, "integer") from None


def parse_port(text: str) -> int:
    port = parse_int(text)
    if not 0 <= port <= 65535:
        raise ValueError(f"{port} is not a port number (0-65535)")
    return port


# What connection.tune can carry and a client can use (AMQP: heartbeat and channel_max are
# shorts, frame_max a long of at least 4096). RabbitMQ boots with values outside, then fails
# every connection ("negotiated frame_max = 1000 is lower than the minimum allowed value
# (4096)") or wraps them (heartbeat -1 is proposed as 65535): refused here, at boot.
TUNING = {"heartbeat": (0, 65535, "; 0 turns heartbeats off"),
          "channel_max": (0, 65535, "; 0 means no limit"),
          "frame_max": (4096, 2**32 - 1, "")}


def check_tuning(name: str, value: int) -> None:
    low, high, note = TUNING[name]
    if value < low:
        raise ValueError(f"{value} is lower than the minimum allowed value ({low}{note})")
    if value > high:
        raise ValueError(f"{value} is higher than the maximum allowed value ({high})")


def parse_tuning(name: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = parse_int(text)
        check_tuning(name, value)
        return value
    return parse


def parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _cannot(text, "float") from None
    if not math.isfinite(value):  # cuttlefish reads no nan / inf (found by the conf fuzzer)
        raise _cannot(text, "float")
    return value


def parse_log_level(text: str) -> str:
    level = LOG_LEVELS.get(text.strip().lower())
    if level is None:
        raise ValueError(f'"{text}" is not a log level: use one of debug, info, notice, '
                         "warning, error, critical, none")
    return level


def parse_bytes(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if m is None or m.group(2).lower() not in UNITS:
        raise _cannot(text, "bytesize (a number with an optional kB, MB, GB, KiB, MiB, GiB "
                            "unit)")
    return int(float(m.group(1)) * UNITS[m.group(2).lower()])


def parse_listener(text: str) -> tuple[str | None, int]:
    """``5672``, ``127.0.0.1:5672``, ``::1:5672`` or ``:::5672`` -> (host or None, port)."""
    text = text.strip()
    if text.isdigit():
        return None, parse_port(text)
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f'"{text}" is not a listener: use PORT or HOST:PORT')
    if host in ("::", "0.0.0.0"):
        return "0.0.0.0" if host == "0.0.0.0" else "::", parse_port(port)
    return host.strip("[]"), parse_port(port)


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value not in TRUE + FALSE:
        raise _cannot(text, "boolean (true or false)")
    return value in TRUE


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


SIMPLE: dict[str, tuple[str, Callable[[str], object]]] = {
    "default_user": ("default_user", str),
    "default_pass": ("default_pass", str),
    "default_vhost": ("default_vhost", str),
    "heartbeat": ("heartbeat", parse_tuning("heartbeat")),
    "frame_max": ("frame_max", parse_tuning("frame_max")),
    "channel_max": ("channel_max", parse_tuning("channel_max")),
    "max_message_size": ("max_message_size", parse_int),
    "handshake_timeout": ("handshake_timeout", lambda v: parse_int(v) / 1000.0),
    "disk_free_limit.absolute": ("disk_free_limit", parse_bytes),
    "disk_free_limit.relative": ("disk_free_limit_relative", parse_float),
    "vm_memory_high_watermark.relative": ("vm_memory_high_watermark_relative", parse_float),
    "vm_memory_high_watermark.absolute": ("vm_memory_high_watermark_absolute", parse_bytes),
    "load_definitions": ("load_definitions", str),
    "definitions.local.path": ("load_definitions", str),
    "management.load_definitions": ("load_definitions", str),
    "management.tcp.port": ("management_port", parse_port),
    "management.tcp.ip": ("management_host", str),
    "prometheus.tcp.port": ("prometheus_port", parse_port),
    "prometheus.tcp.ip": ("prometheus_host", str),
    "cluster_name": ("cluster_name", str),
    "log.console.level": ("log_level", parse_log_level),
    "log.default.level": ("log_level", parse_log_level),
    "ssl_options.certfile": ("ssl_certfile", str),
    "ssl_options.keyfile": ("ssl_keyfile", str),
    "ssl_options.cacertfile": ("ssl_cacertfile", str),
    "ssl_options.verify": ("ssl_verify", str),
    "ssl_options.fail_if_no_peer_cert": ("ssl_fail_if_no_peer_cert", _bool),
    "connection_max": ("connection_max", lambda v: None if v == "infinity" else parse_int(v)),
    "consumer_max_per_channel": ("consumer_max_per_channel",
                                 lambda v: None if v == "infinity" else parse_int(v)),
    "consumer_timeout": ("consumer_timeout",
                         lambda v: None if v in ("false", "infinity", "0") else parse_int(v)),
    "collect_statistics_interval": ("collect_statistics_interval", parse_int),
    # cluster mode (etcd): RabbitMQ's etcd peer discovery keys, and burrowmq's own
    "cluster_formation.etcd.key_prefix": ("etcd_prefix", str),
    "cluster_formation.etcd.cluster_name": ("etcd_cluster", str),
    "cluster_formation.etcd.lease_ttl": ("lease_ttl", parse_int),
    "cluster_formation.advertise_host": ("advertise_host", str),
    "cluster_formation.node_name": ("node_name", str),
    "cluster_formation.replication.port": ("replication_port", parse_port),
    "cluster_formation.replication.ip": ("replication_host", str),
    "cluster_formation.min_insync": ("min_insync", parse_int),
    "cluster_formation.replica_ack_timeout": ("replica_ack_timeout",
                                              lambda v: parse_int(v) / 1000.0),
    "cluster_formation.confirm_timeout": ("confirm_timeout", lambda v: parse_int(v) / 1000.0),
}
PATTERNS = ("listeners.tcp.default", "listeners.ssl.default", "loopback_users",
            "loopback_users.guest", "default_user_tags.administrator",
            "default_permissions.configure", "default_permissions.write",
            "default_permissions.read", "cluster_formation.etcd.endpoints.1",
            "cluster_formation.peer_discovery_backend")
# families: listeners.tcp.<name>, loopback_users.<user>, cluster_formation.etcd.endpoints.<n>
DISCOVERY_BACKENDS = ("etcd", "rabbit_peer_discovery_etcd", "classic_config",
                      "rabbit_peer_discovery_classic_config")
# Keys RabbitMQ has that this broker does not act on: accepted, logged, ignored.
ACCEPTED = frozenset("""
    log.file log.file.level log.file.formatter log.dir log.console log.console.formatter
    log.console.use_colors log.exchange log.exchange.level log.connection.level
    log.channel.level log.queue.level log.mirroring.level log.federation.level
    log.upgrade.level log.ra.level log.prelaunch.level log.ldap.level log.shovel.level
    log.default.formatter log.file.rotation.date log.file.rotation.size
    log.file.rotation.count log.file.rotation.compress log.syslog log.syslog.level
    queue_master_locator vm_memory_calculation_strategy
    vm_memory_high_watermark_paging_ratio total_memory_available_override_value
    cluster_partition_handling cluster_keepalive_interval reverse_dns_lookups proxy_protocol
    channel_operation_timeout password_hashing_module
    mnesia_table_loading_retry_timeout mnesia_table_loading_retry_limit
    queue_index_embed_msgs_below lazy_queue_explicit_gc_run_operation_threshold
    classic_queue.default_version default_queue_type hipe_compile background_gc_enabled
    background_gc_target_interval disk_monitor_failure_retries
    disk_monitor_failure_retry_interval credit_flow_default_credit writer_gc_threshold
    definitions.import_backend definitions.skip_if_unchanged definitions.hashing.algorithm
    management.rates_mode management.path_prefix management.http_log_dir
    management.disable_stats management.enable_queue_totals management.login_session_timeout
    management.tcp.compress management.tcp.idle_timeout management.tcp.inactivity_timeout
    management.tcp.request_timeout management.tcp.shutdown_timeout
    management.tcp.max_keepalive management.db_cache_multiplier
    prometheus.return_per_object_metrics prometheus.path prometheus.tcp.compress
    ssl_options.depth ssl_options.password ssl_options.honor_cipher_order
    ssl_options.honor_ecc_order ssl_options.secure_renegotiate
    ssl_options.client_renegotiation ssl_handshake_timeout ssl_allow_poodle_attack
""".split())
ACCEPTED_PREFIXES = ("cluster_formation.", "mqtt.", "stomp.", "web_mqtt.", "web_stomp.",
                     "auth_ldap.", "auth_oauth2.", "auth_http.", "auth_mechanisms.",
                     "auth_backends.", "ssl_options.versions.", "ssl_options.ciphers.",
                     "management.ssl.", "management.cors.", "management.csp.",
                     "management.hsts.", "management.sample_retention_policies.",
                     "prometheus.ssl.", "tcp_listen_options.", "num_acceptors.",
                     "deprecated_features.permit.", "log.categories.", "stream.",
                     "federation.", "shovel.", "quorum_queue.", "raft.")


def unknown_key(key: str) -> ValueError:
    """RabbitMQ's refusal, with the nearest keys this broker knows."""
    known = [*SIMPLE, *PATTERNS, *ACCEPTED]
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.75)
    hint = f" Did you mean one of these? {', '.join(close)}" if close else ""
    return ValueError(f"You've tried to set {key}, but there is no setting with that "
                      f"name.{hint}")


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
    elif key.startswith("cluster_formation.etcd.endpoints."):
        endpoint = value.strip()
        if not endpoint:
            raise ValueError("an etcd endpoint is host:port")
        changes["etcd_endpoints"] = (*changes.get("etcd_endpoints", ()), endpoint)
    elif key == "cluster_formation.peer_discovery_backend":
        if value.strip() not in DISCOVERY_BACKENDS:  # cluster mode is on when endpoints are
            log.warning("peer discovery backend %s is not one this broker has (etcd): "
                        "ignored", value.strip())
    elif key in ACCEPTED or key.startswith(ACCEPTED_PREFIXES):
        log.info("config key %s is a RabbitMQ setting this broker does not use: ignored", key)
    else:
        raise unknown_key(key)


def parse_text(text: str, source: str = "rabbitmq.conf", origins: dict | None = None) -> dict:
    """Config field changes; ``origins`` (when given) gets ``field -> "key at file:line"``."""
    changes: dict = {}
    origins = {} if origins is None else origins
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigFileError(f"{source}:{number}: expected 'key = value', got {raw!r}")
        key = key.strip()
        before = dict(changes)
        try:
            apply_line(changes, key, value.strip())
        except ValueError as exc:
            reason = str(exc) if str(exc).startswith("You've") else f"{key}: {exc}"
            raise ConfigFileError(f"{source}:{number}: {reason}") from None
        for name in changes:
            if not name.startswith("_") and changes[name] is not before.get(name, _NOTHING):
                origins[name] = f"{key} at {source}:{number}"
    changes.pop("_listener_seen", None)
    return changes


def load(path: str, origins: dict | None = None) -> dict:
    """The file's changes (``origins`` as in ``parse_text``)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigFileError(f"{path}: config file does not exist") from None
    except IsADirectoryError:
        raise ConfigFileError(f"{path}: is a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") \
            from None
    return parse_text(text, path, origins)


_NOTHING = object()

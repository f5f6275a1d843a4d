"""Settings in one frozen dataclass: defaults, then the config file, then environment variables,
then flags (each later source wins).

The config file is rabbitmq.conf's format (see ``conffile``); it is found through
``--config-file`` or ``RABBITMQ_CONFIG_FILE``. ``management_port`` / ``prometheus_port``: None
is off, 0 an ephemeral port (tests), anything else that port. The dataclass default keeps them
off (tests, embedding); ``python -m broker`` turns them on at RabbitMQ's ports, and there a
port of 0 (flag, env or file) means off, as operators expect.

A setting that cannot be used raises ``ConfigError`` with a one-line message and the exit
status to use (64 for a bad flag, 78 for a bad config file or variable: sysexits'
EX_USAGE / EX_CONFIG). ``origins`` records where each non-default value came from
(``--port``, ``RABBITMQ_NODE_PORT``, ``listeners.tcp.default at /etc/x.conf:3``), so that a
port that cannot be bound is reported with the setting that chose it.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import NoReturn

from broker.core.naming import BURROWMQ_VERSION, RABBITMQ_VERSION

from . import conffile

MANAGEMENT_PORT = 15672
PROMETHEUS_PORT = 15692
EX_USAGE, EX_CONFIG = 64, 78
# How each listener's port can be set, for "port taken" errors.
PORT_SETTINGS = {
    "port": "--port, RABBITMQ_NODE_PORT or listeners.tcp.default",
    "management_port": "--management-port, RABBITMQ_MANAGEMENT_PORT or management.tcp.port "
                       "(0 turns the management API off)",
    "prometheus_port": "--prometheus-port, RABBITMQ_PROMETHEUS_PORT or prometheus.tcp.port "
                       "(0 turns the Prometheus endpoint off)",
    "ssl_port": "--tls-port or listeners.ssl.default",
    "replication_port": "--replication-port, RABBITMQ_DIST_PORT or "
                        "cluster_formation.replication.port",
}


class ConfigError(Exception):
    """A setting cannot be used: ``str(err)`` is the one-line reason, ``code`` the exit
    status."""

    def __init__(self, message: str, code: int = EX_CONFIG) -> None:
        super().__init__(message)
        self.code = code


def default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "burrowmq")


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 5672
    data_dir: str = ""
    log_level: str = "info"
    default_user: str = "guest"
    default_pass: str = "guest"
    default_vhost: str = "/"
    default_user_tags: tuple[str, ...] = ("administrator",)
    default_permissions: tuple[str, str, str] = (".*", ".*", ".*")
    loopback_users: tuple[str, ...] = ("guest",)
    frame_max: int = 131072
    channel_max: int = 2047
    heartbeat: int = 60
    max_message_size: int = 134217728
    handshake_timeout: float = 10.0
    disk_free_limit: int = 50_000_000
    disk_free_limit_relative: float | None = None
    vm_memory_high_watermark_relative: float | None = 0.4
    vm_memory_high_watermark_absolute: int | None = None
    load_definitions: str = ""
    config_file: str = ""
    cluster_name: str = ""
    management_host: str | None = None
    management_port: int | None = None
    prometheus_host: str | None = None
    prometheus_port: int | None = None
    ssl_host: str | None = None
    ssl_port: int = 5671
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_cacertfile: str = ""
    ssl_verify: str = "verify_none"
    ssl_fail_if_no_peer_cert: bool = False
    connection_max: int | None = None
    consumer_max_per_channel: int | None = None  # None: unlimited (RabbitMQ's default)
    # The delivery acknowledgement timeout (ms; None: off) and how often it is checked (s).
    consumer_timeout: int | None = 1_800_000
    consumer_timeout_interval: float = 1.0
    collect_statistics_interval: int = 5000  # ms between management samples, as RabbitMQ
    control_socket: bool = False  # the CLI's ctl.sock in the data dir (on in python -m broker)
    # ---- cluster mode (on when etcd_endpoints is set; see broker/node/cluster.py) ----------
    node_name: str = ""  # rabbit@<short hostname> when empty
    etcd_endpoints: tuple[str, ...] = ()
    etcd_prefix: str = "/burrowmq"
    etcd_cluster: str = ""  # the cluster's keys in etcd: cluster_name, else "default"
    advertise_host: str = ""  # how peers and followers reach this node; host when empty
    replication_host: str | None = None
    replication_port: int = 25672
    lease_ttl: int = 3  # seconds: a dead leader is replaced within about this long
    min_insync: int = 2
    replica_ack_timeout: float = 3.0  # seconds without an ack before a follower leaves the ISR
    confirm_timeout: float = 10.0  # seconds a confirm waits for replicas before a nack
    origins: tuple[tuple[str, str], ...] = ()  # (field, where its value was set)


def origin(cfg: Config, name: str) -> str | None:
    """Where ``cfg.<name>`` was set (a flag, a variable, a config line), None for a default."""
    return dict(cfg.origins).get(name)


def _with_origins(cfg: Config, changes: dict, where: str | dict) -> Config:
    found = dict(cfg.origins)
    for name in changes:
        found[name] = where if isinstance(where, str) else where.get(name, "the config file")
    return replace(cfg, **changes, origins=tuple(sorted(found.items())))


def from_file(base: Config, path: str) -> Config:
    """``ConfigError`` (``file:line: reason``) when the file cannot be used."""
    lines: dict[str, str] = {}
    try:
        changes = conffile.load(path, lines)
    except conffile.ConfigFileError as exc:
        raise ConfigError(str(exc)) from None
    if "vm_memory_high_watermark_absolute" in changes and \
            "vm_memory_high_watermark_relative" not in changes:
        changes["vm_memory_high_watermark_relative"] = None
    if "disk_free_limit" in changes and "disk_free_limit_relative" not in changes:
        changes["disk_free_limit_relative"] = None
    return _with_origins(replace(base, config_file=path), changes, lines)


def from_env(base: Config) -> Config:
    env = os.environ
    cfg = base
    if "BURROWMQ_DATA_DIR" in env:
        cfg = _with_origins(cfg, {"data_dir": env["BURROWMQ_DATA_DIR"]}, "BURROWMQ_DATA_DIR")
    for var, key in (("RABBITMQ_NODE_PORT", "port"),
                     ("RABBITMQ_MANAGEMENT_PORT", "management_port"),
                     ("RABBITMQ_PROMETHEUS_PORT", "prometheus_port")):
        if var in env:
            try:
                value = conffile.parse_port(env[var])
            except ValueError as exc:
                raise ConfigError(f"environment variable {var}: {exc}") from None
            cfg = _with_origins(cfg, {key: value}, var)
    for var, key in (("RABBITMQ_NODE_IP_ADDRESS", "host"),
                     ("RABBITMQ_DEFAULT_USER", "default_user"),
                     ("RABBITMQ_DEFAULT_PASS", "default_pass"),
                     ("RABBITMQ_DEFAULT_VHOST", "default_vhost"),
                     ("RABBITMQ_NODENAME", "node_name"),
                     ("BURROWMQ_ADVERTISE_HOST", "advertise_host")):
        if var in env:
            cfg = _with_origins(cfg, {key: env[var]}, var)
    if "RABBITMQ_DIST_PORT" in env:
        try:
            port = conffile.parse_port(env["RABBITMQ_DIST_PORT"])
        except ValueError as exc:
            raise ConfigError(f"environment variable RABBITMQ_DIST_PORT: {exc}") from None
        cfg = _with_origins(cfg, {"replication_port": port}, "RABBITMQ_DIST_PORT")
    if env.get("BURROWMQ_ETCD_ENDPOINTS"):
        cfg = _with_origins(cfg, {"etcd_endpoints": split_endpoints(
            env["BURROWMQ_ETCD_ENDPOINTS"])}, "BURROWMQ_ETCD_ENDPOINTS")
    return cfg


def split_endpoints(text: str) -> tuple[str, ...]:
    return tuple(e.strip() for e in text.split(",") if e.strip())


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (burrowmq --help lists the flags)", EX_USAGE)


def build_parser() -> argparse.ArgumentParser:
    d = Config()
    parser = _Parser(prog="burrowmq", description="RabbitMQ-compatible AMQP 0-9-1 broker. "
                     "Settings: defaults, then the config file, then environment variables, "
                     "then these flags (later ones win).")
    parser.add_argument("--version", action="version", version=f"burrowmq {BURROWMQ_VERSION} "
                        f"(RabbitMQ {RABBITMQ_VERSION} compatible)")
    parser.add_argument("--config-file", help="a rabbitmq.conf (env RABBITMQ_CONFIG_FILE; "
                        "default: none)")
    parser.add_argument("--host", help=f"address to listen on (env RABBITMQ_NODE_IP_ADDRESS; "
                        f"default {d.host})")
    parser.add_argument("--port", type=int, help=f"AMQP port (env RABBITMQ_NODE_PORT; default "
                        f"{d.port})")
    parser.add_argument("--data-dir", help=f"where durable state lives (env "
                        f"BURROWMQ_DATA_DIR; default {default_data_dir()})")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        help=f"default {d.log_level}")
    parser.add_argument("--heartbeat", type=int, help=f"heartbeat proposed to clients, "
                        f"seconds (default {d.heartbeat})")
    parser.add_argument("--frame-max", type=int, help=f"default {d.frame_max}")
    parser.add_argument("--channel-max", type=int, help=f"default {d.channel_max}")
    parser.add_argument("--management-port", type=int,
                        help=f"management HTTP API and UI port (default {MANAGEMENT_PORT}; "
                             "0 disables)")
    parser.add_argument("--prometheus-port", type=int,
                        help=f"Prometheus /metrics port (default {PROMETHEUS_PORT}; "
                             "0 disables)")
    parser.add_argument("--load-definitions", help="definitions JSON file imported at boot "
                        "(default: none)")
    parser.add_argument("--tls-port", dest="ssl_port", type=int,
                        help="AMQPS port (default 5671; the listener runs when a certificate "
                             "and key are given)")
    parser.add_argument("--tls-cert", dest="ssl_certfile", help="server certificate (PEM)")
    parser.add_argument("--tls-key", dest="ssl_keyfile", help="server private key (PEM)")
    parser.add_argument("--tls-ca", dest="ssl_cacertfile", help="CA bundle for client certs")
    parser.add_argument("--tls-verify-peer", dest="ssl_verify", action="store_const",
                        const="verify_peer", help="ask clients for a certificate")
    parser.add_argument("--tls-require-peer-cert", dest="ssl_fail_if_no_peer_cert",
                        action="store_const", const=True,
                        help="refuse clients without a valid certificate")
    parser.add_argument("--max-connections", dest="connection_max", type=int,
                        help="refuse connections beyond this many (default: unlimited)")
    parser.add_argument("--disk-free-limit", type=int,
                        help=f"block publishers below this many free bytes (default "
                             f"{d.disk_free_limit})")
    cluster = parser.add_argument_group(
        "cluster mode", "on when etcd endpoints are given (every node of a cluster names the "
        "same etcd)")
    cluster.add_argument("--etcd", dest="etcd_endpoints", type=split_endpoints,
                         help="etcd endpoints, comma-separated host:port (env "
                              "BURROWMQ_ETCD_ENDPOINTS; default: none, single-node mode)")
    cluster.add_argument("--node-name", help="this node's name (env RABBITMQ_NODENAME; "
                         "default rabbit@<short hostname>)")
    cluster.add_argument("--cluster-name", help="the cluster's name (default: the node's)")
    cluster.add_argument("--advertise-host", help="the address other nodes and clients "
                         "reach this node at (env BURROWMQ_ADVERTISE_HOST; default: --host, "
                         "or the hostname when that is a wildcard)")
    cluster.add_argument("--replication-port", type=int,
                         help=f"port followers replicate from (env RABBITMQ_DIST_PORT; "
                              f"default {d.replication_port})")
    cluster.add_argument("--lease-ttl", type=int, help=f"seconds before a silent leader is "
                         f"replaced (default {d.lease_ttl})")
    cluster.add_argument("--min-insync", type=int, help=f"nodes (leader included) that must "
                         f"hold a message before it is confirmed (default {d.min_insync})")
    cluster.add_argument("--replica-ack-timeout", type=float,
                         help=f"seconds a follower may lag before it leaves the in-sync "
                              f"replicas (default {d.replica_ack_timeout:g})")
    cluster.add_argument("--confirm-timeout", type=float,
                         help=f"seconds a confirm waits for replicas before it becomes a "
                              f"nack (default {d.confirm_timeout:g})")
    for action in parser._actions:
        action.metavar = METAVARS.get(action.dest, action.metavar)
    return parser


METAVARS = {"config_file": "FILE", "host": "ADDRESS", "port": "PORT", "data_dir": "DIR",
            "heartbeat": "SECONDS", "frame_max": "BYTES", "channel_max": "N",
            "management_port": "PORT", "prometheus_port": "PORT", "load_definitions": "FILE",
            "ssl_port": "PORT", "ssl_certfile": "FILE", "ssl_keyfile": "FILE",
            "ssl_cacertfile": "FILE", "connection_max": "N", "disk_free_limit": "BYTES",
            "etcd_endpoints": "ENDPOINTS", "node_name": "NAME", "cluster_name": "NAME",
            "advertise_host": "HOST", "replication_port": "PORT", "lease_ttl": "SECONDS",
            "min_insync": "N", "replica_ack_timeout": "SECONDS", "confirm_timeout": "SECONDS"}


FLAGS = {action.dest: action.option_strings[-1] for action in build_parser()._actions
         if action.option_strings}


def parse_args(argv: list[str] | None = None) -> Config:
    """Every source merged; ``ConfigError`` for a bad flag, file or variable."""
    args = build_parser().parse_args(argv)
    cfg = Config(management_port=MANAGEMENT_PORT, prometheus_port=PROMETHEUS_PORT,
                 control_socket=True)
    path = args.config_file or os.environ.get("RABBITMQ_CONFIG_FILE")
    if path:
        cfg = from_file(cfg, path)
    cfg = from_env(cfg)
    for name, value in vars(args).items():
        if value is not None and name != "config_file":
            cfg = _with_origins(cfg, {name: value}, FLAGS.get(name, name))
    if not cfg.data_dir:
        cfg = replace(cfg, data_dir=default_data_dir())
    if cfg.node_name:
        cfg = replace(cfg, node_name=full_node_name(cfg.node_name))
    check(cfg)
    return replace(cfg, data_dir=os.path.abspath(os.path.expanduser(cfg.data_dir)),
                   management_port=cfg.management_port or None,
                   prometheus_port=cfg.prometheus_port or None)


def full_node_name(name: str) -> str:
    """``rabbit`` -> ``rabbit@<short hostname>``, as RABBITMQ_NODENAME is read."""
    if "@" in name:
        return name
    from broker.core.naming import host_node_name

    return f"{name}@{host_node_name().partition('@')[2]}"


def check(cfg: Config) -> None:
    """Values every source may get wrong the same way (a flag's type is argparse's)."""
    for name in ("port", "management_port", "prometheus_port", "ssl_port",
                 "replication_port"):
        value = getattr(cfg, name)
        if value is not None and not 0 <= value <= 65535:
            raise ConfigError(f"{value} is not a port number (0-65535), set by "
                              f"{origin(cfg, name) or 'default'}")
    for name in conffile.TUNING:
        try:
            conffile.check_tuning(name, getattr(cfg, name))
        except ValueError as exc:
            where = origin(cfg, name) or "default"
            raise ConfigError(f"{name}: {exc}, set by {where}",
                              EX_USAGE if where.startswith("--") else EX_CONFIG) from None
    if cfg.etcd_endpoints:
        for name, low in (("lease_ttl", 2), ("min_insync", 1)):
            if getattr(cfg, name) < low:
                raise ConfigError(f"{name} must be at least {low}, set by "
                                  f"{origin(cfg, name) or 'default'}")
        for name in ("replica_ack_timeout", "confirm_timeout"):
            if getattr(cfg, name) <= 0:
                raise ConfigError(f"{name} must be positive, set by "
                                  f"{origin(cfg, name) or 'default'}")
    known = {f.name for f in fields(Config)}
    assert all(name in known for name, _ in cfg.origins), cfg.origins

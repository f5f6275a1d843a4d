"""Settings in one frozen dataclass: defaults, then the config file, then environment variables,
then flags (each later source wins).

The config file is rabbitmq.conf's format (see ``conffile``); it is found through
``--config-file`` or ``RABBITMQ_CONFIG_FILE``. ``management_port`` / ``prometheus_port``: None
is off, 0 an ephemeral port (tests), anything else that port. The dataclass default keeps them
off (tests, embedding); ``python -m broker`` turns them on at RabbitMQ's ports, and there a
port of 0 (flag, env or file) means off, as operators expect.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from pathlib import Path

from . import conffile

MANAGEMENT_PORT = 15672
PROMETHEUS_PORT = 15692


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
    # The delivery acknowledgement timeout (ms; None: off) and how often it is checked (s).
    consumer_timeout: int | None = 1_800_000
    consumer_timeout_interval: float = 5.0


def from_file(base: Config, path: str) -> Config:
    changes = conffile.load(path)
    if "vm_memory_high_watermark_absolute" in changes and \
            "vm_memory_high_watermark_relative" not in changes:
        changes["vm_memory_high_watermark_relative"] = None
    if "disk_free_limit" in changes and "disk_free_limit_relative" not in changes:
        changes["disk_free_limit_relative"] = None
    return replace(base, config_file=path, **changes)


def from_env(base: Config) -> Config:
    env = os.environ
    changes: dict = {}
    if "BURROWMQ_DATA_DIR" in env:
        changes["data_dir"] = env["BURROWMQ_DATA_DIR"]
    for var, key in (("RABBITMQ_NODE_PORT", "port"),
                     ("RABBITMQ_MANAGEMENT_PORT", "management_port"),
                     ("RABBITMQ_PROMETHEUS_PORT", "prometheus_port")):
        if var in env:
            changes[key] = int(env[var])
    if "RABBITMQ_NODE_IP_ADDRESS" in env:
        changes["host"] = env["RABBITMQ_NODE_IP_ADDRESS"]
    for var, key in (("RABBITMQ_DEFAULT_USER", "default_user"),
                     ("RABBITMQ_DEFAULT_PASS", "default_pass"),
                     ("RABBITMQ_DEFAULT_VHOST", "default_vhost")):
        if var in env:
            changes[key] = env[var]
    return replace(base, **changes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="burrowmq",
                                     description="RabbitMQ-compatible AMQP 0-9-1 broker")
    parser.add_argument("--config-file", help="a rabbitmq.conf (env RABBITMQ_CONFIG_FILE)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="AMQP port (default 5672)")
    parser.add_argument("--data-dir", help="where durable state lives")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--heartbeat", type=int, help="heartbeat proposed to clients (s)")
    parser.add_argument("--frame-max", type=int)
    parser.add_argument("--channel-max", type=int)
    parser.add_argument("--management-port", type=int,
                        help=f"management HTTP API and UI port (default {MANAGEMENT_PORT}; "
                             "0 disables)")
    parser.add_argument("--prometheus-port", type=int,
                        help=f"Prometheus /metrics port (default {PROMETHEUS_PORT}; "
                             "0 disables)")
    parser.add_argument("--load-definitions", help="definitions JSON file imported at boot")
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
                        help="refuse connections beyond this many")
    parser.add_argument("--disk-free-limit", type=int,
                        help="block publishers below this many free bytes (default 50 MB)")
    return parser


def parse_args(argv: list[str] | None = None) -> Config:
    args = build_parser().parse_args(argv)
    cfg = Config(management_port=MANAGEMENT_PORT, prometheus_port=PROMETHEUS_PORT)
    path = args.config_file or os.environ.get("RABBITMQ_CONFIG_FILE")
    if path:
        cfg = from_file(cfg, path)
    cfg = from_env(cfg)
    changes = {k: v for k, v in vars(args).items() if v is not None and k != "config_file"}
    cfg = replace(cfg, **changes)
    if not cfg.data_dir:
        cfg = replace(cfg, data_dir=default_data_dir())
    return replace(cfg, management_port=cfg.management_port or None,
                   prometheus_port=cfg.prometheus_port or None)

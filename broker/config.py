"""Settings in one frozen dataclass: defaults, then environment variables, then flags."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from pathlib import Path


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
    frame_max: int = 131072
    channel_max: int = 2047
    heartbeat: int = 60
    max_message_size: int = 134217728
    handshake_timeout: float = 10.0
    disk_free_limit: int = 50_000_000


def from_env(base: Config) -> Config:
    env = os.environ
    changes: dict = {}
    if "BURROWMQ_DATA_DIR" in env:
        changes["data_dir"] = env["BURROWMQ_DATA_DIR"]
    if "RABBITMQ_NODE_PORT" in env:
        changes["port"] = int(env["RABBITMQ_NODE_PORT"])
    for var, key in (("RABBITMQ_DEFAULT_USER", "default_user"),
                     ("RABBITMQ_DEFAULT_PASS", "default_pass"),
                     ("RABBITMQ_DEFAULT_VHOST", "default_vhost")):
        if var in env:
            changes[key] = env[var]
    return replace(base, **changes)


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(prog="burrowmq",
                                     description="RabbitMQ-compatible AMQP 0-9-1 broker")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="AMQP port (default 5672)")
    parser.add_argument("--data-dir", help="where durable state lives")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--heartbeat", type=int, help="heartbeat proposed to clients (s)")
    parser.add_argument("--frame-max", type=int)
    parser.add_argument("--channel-max", type=int)
    parser.add_argument("--disk-free-limit", type=int,
                        help="block publishers below this many free bytes (default 50 MB)")
    args = parser.parse_args(argv)
    cfg = from_env(Config())
    changes = {k: v for k, v in vars(args).items() if v is not None}
    cfg = replace(cfg, **changes)
    if not cfg.data_dir:
        cfg = replace(cfg, data_dir=default_data_dir())
    return cfg

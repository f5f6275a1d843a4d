"""Hypothesis fuzzing of the two other doors that take documents: the rabbitmq.conf parser and
the definitions importer. Whatever the text or JSON: the parser returns settings or refuses with
one line naming the file and line (``ConfigError``); the importer imports or refuses with one
``DefinitionsError`` line, never another exception (at boot that would be a traceback; over
HTTP a 500). ``make soak`` runs the ``_soak`` twins with FUZZ_EXAMPLES examples."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st
from machine_strategies import fuzz

from broker.core import definitions_json
from broker.core.messages import priority_of
from broker.core.server import Server
from broker.node import conffile, config, sysinfo
from storage.priority import PriorityQueueStore
from storage.store import MemoryQueueStore, QueueStore

# ---- rabbitmq.conf -------------------------------------------------------------------------
KNOWN_KEYS = sorted([*conffile.SIMPLE, *conffile.PATTERNS, *sorted(conffile.ACCEPTED)[:20],
                     "listeners.tcp.other", "loopback_users.bob", "default_user_tags.monitoring",
                     "mqtt.listeners.tcp.default", "stream.listeners.tcp.1"])
conf_values = st.one_of(
    st.sampled_from(["", "0", "1", "-1", "65535", "65536", "5672", "127.0.0.1:5672", "::1:5672",
                     ":::5672", "[::1]:5672", "host:port", "true", "false", "yes", "infinity",
                     "none", "0.4", "1.5", "-0.1", "nan", "inf", "1e9", "50MB", "2GiB", "1.5GB",
                     "10 kB", "99999999999999999999999", "debug", "warn", "loud", ".*", "(",
                     "verify_peer", "/tmp/x.pem", "é", "a = b", "#", "\t"]),
    st.text(max_size=24).filter(lambda t: "\n" not in t and "\r" not in t))
conf_lines = st.one_of(
    st.tuples(st.sampled_from(KNOWN_KEYS), conf_values).map(lambda kv: f"{kv[0]} = {kv[1]}"),
    st.tuples(st.text(max_size=20), conf_values).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.sampled_from(["", "# comment", "   ", "key", "= value", "==", "a.b.c"]),
    st.text(max_size=40))


def _conf_file(lines: list[str]) -> None:
    text = "\n".join(lines)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rabbitmq.conf"
        path.write_text(text, errors="surrogateescape")
        try:
            cfg = config.from_file(config.Config(), str(path))
            config.check(cfg)
        except config.ConfigError as exc:
            message = str(exc)
            assert message.startswith(f"{path}:"), message
            assert "\n" not in message.strip(), message
            return
    # what the node derives from the settings at boot: the alarms' limits
    sysinfo.memory_limit(cfg)
    sysinfo.disk_free_limit(cfg)


test_conf_file, test_conf_file_soak = fuzz(st.lists(conf_lines, max_size=12),
                                           ci_examples=500)(_conf_file)


def test_conf_fuzz_finding_non_finite_floats_are_refused(tmp_path) -> None:  # type: ignore
    """Found by the fuzzer: ``vm_memory_high_watermark.relative = nan`` was accepted and the
    node died at boot with a traceback (int(nan) in the memory alarm)."""
    for value in ("nan", "inf", "-inf"):
        path = tmp_path / "rabbitmq.conf"
        path.write_text(f"vm_memory_high_watermark.relative = {value}\n")
        try:
            config.from_file(config.Config(), str(path))
        except config.ConfigError as exc:
            assert str(exc) == (f'{path}:1: vm_memory_high_watermark.relative: "{value}" '
                                "cannot be converted to a(n) float")
        else:
            raise AssertionError(f"{value} accepted")


# ---- definitions ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    default_user: str = "guest"
    default_vhost: str = "/"
    loopback_users: tuple[str, ...] = ("guest",)
    cluster_name: str = "rabbit@fuzz"


class Scheduler:
    def now(self) -> float:
        return 0.0

    def call_soon(self, callback: object) -> None:
        pass

    def call_later(self, delay: float, callback: object) -> object:
        class Timer:
            def cancel(self) -> None:
                pass
        return Timer()


def memory_store(vhost: str, queue: str, arguments: dict, persistent: bool) -> QueueStore:
    maximum = arguments.get("x-max-priority")
    if isinstance(maximum, int) and not isinstance(maximum, bool) and 0 <= maximum <= 255:
        return PriorityQueueStore(maximum, lambda _p: MemoryQueueStore(), priority_of)
    return MemoryQueueStore()


NAMES = ["/", "v1", "fz", "q", "x", "amq.direct", "amq.topic", "amq.foo", "", "guest", "tp"]
FIELDS = ["name", "vhost", "user", "password", "password_hash", "hashing_algorithm", "tags",
          "limits", "description", "metadata", "default_queue_type", "configure", "write",
          "read", "exchange", "pattern", "definition", "priority", "apply-to", "durable",
          "auto_delete", "internal", "type", "arguments", "source", "destination",
          "destination_type", "routing_key", "component", "value"]
scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
           | st.sampled_from(NAMES + ["direct", "topic", "fanout", "headers", "x-foo", "queue",
                                      "exchange", ".*", "(", "[", "all", "queues", "lazy",
                                      "rabbit_password_hashing_sha256", "Zm9vYmFy", "!!",
                                      "vhost-limits", "administrator"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=12) | st.sampled_from(
                               ["x-max-length", "x-message-ttl", "x-queue-type",
                                "x-max-priority", "x-dead-letter-exchange", "alternate-exchange",
                                "max-length", "max-connections", "max-queues", "message-ttl"]),
                               inner, max_size=4), max_leaves=10)
items = st.dictionaries(st.sampled_from(FIELDS), scalars | json_values, max_size=8)
documents = st.dictionaries(
    st.sampled_from(["users", "vhosts", "permissions", "topic_permissions", "policies",
                     "queues", "exchanges", "bindings", "parameters", "global_parameters",
                     "rabbit_version"]),
    st.lists(items, max_size=4) | json_values, max_size=8)


def _definitions(document: dict, per_vhost: bool) -> None:
    server = Server(Settings(), Scheduler(), memory_store)  # type: ignore[arg-type]
    server.auth.add_user("guest", "guest", ["administrator"])
    try:
        if per_vhost:
            definitions_json.import_vhost(server, "/", document)
        else:
            definitions_json.import_all(server, document)
    except definitions_json.DefinitionsError as exc:
        assert "\n" not in str(exc).strip() or str(exc).startswith("Validation failed") or \
            "Validation failed" in str(exc), str(exc)
        return
    # what was imported exports again, as JSON
    json.dumps(definitions_json.export_all(server))


test_definitions, test_definitions_soak = fuzz(documents, st.booleans(), ci_examples=500)(
    _definitions)


def _definitions_file(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "defs.json"
        path.write_bytes(raw)
        try:
            data = definitions_json.read_file(str(path))
        except definitions_json.DefinitionsError:
            return
        _definitions(data, False)


test_definitions_file, test_definitions_file_soak = fuzz(
    st.binary(max_size=64) | documents.map(lambda d: json.dumps(d).encode()),
    ci_examples=200)(_definitions_file)

"""Hypothesis fuzzing of the management API on a live broker: random methods on every route
(placeholders filled with names that exist, names that do not and hostile encodings), random
query strings, JSON bodies of every shape (typed near-misses of the real fields, nested junk,
bytes that are not JSON) and random auth headers. Whatever comes in: never a 5xx (but a
failing health check's 503), never a traceback in the log, and every 4xx RabbitMQ-shaped
(``{"error": ..., "reason": ...}``; a 405 is cowboy's empty one with an Allow header, and so
are a 400 for an Authorization header that does not parse and a 401 for none, with the Basic
challenge, as RabbitMQ 3.10.8 answers them).

The broker lives for the whole module, so what one example creates the next may trip on.
Examples that would lock the fuzzer out (the guest user, its permissions, the node control
endpoints) are skipped. ``make soak`` runs the ``_soak`` twins with FUZZ_EXAMPLES examples.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import assume
from hypothesis import strategies as st
from machine_strategies import fuzz

from broker.node.config import Config
from broker.ops.mgmt import api_admin, api_node, api_topology, conns, control, limits, shovel
from broker.ops.pytest_plugin import BrokerHandle, start_in_thread

ROUTES = sorted({(r.method, r.path) for table in (api_node.routes, api_admin.routes,
                                                  conns.routes, api_topology.routes,
                                                  control.routes, limits.routes, shovel.routes)
                 for r in table if hasattr(r, "path")})
TEMPLATES = sorted({path for _m, path in ROUTES} | {"/api/{tail}", "/api/"})
METHODS = ["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "OPTIONS"]
NAMES = ["%2F", "fz", "fz-q", "fz-x", "amq.direct", "amq.topic", "amq.default", "amq.fanout",
         "tp", "q", "e", "", "..", "%", "%zz", "%00", "%C3%A9", "a%2Fb", "*", "12", "-1",
         "99999999999999999999", "max-connections", "max-queues", "max-channels", "shovel",
         "rabbit%40localhost", "%3Cscript%3E", "guest"]
KEYS = ["durable", "auto_delete", "internal", "arguments", "type", "routing_key", "payload",
        "payload_encoding", "properties", "count", "ackmode", "encoding", "truncate",
        "configure", "write", "read", "exchange", "pattern", "definition", "priority",
        "apply-to", "password", "password_hash", "hashing_algorithm", "tags", "description",
        "default_queue_type", "name", "value", "users", "queues", "exchanges", "bindings",
        "vhosts", "permissions", "topic_permissions", "policies", "parameters", "limits",
        "metadata", "src-uri", "src-queue", "dest-uri", "dest-queue", "src-exchange",
        "dest-exchange", "username", "node", "component", "vhost", "destination",
        "destination_type", "source", "delivery_mode", "headers", "expiration", "user_id",
        "timestamp", "max-length", "x-max-length", "x-queue-type", "alternate-exchange"]
QUERY_KEYS = ["columns", "sort", "sort_reverse", "page", "page_size", "name", "use_regex",
              "if-unused", "if-empty", "download", "exchange", "lengths_age", "msg_rates_age",
              "disable_stats"]

scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=16)
           | st.sampled_from(["true", "false", "maybe", "ack_requeue_true", "string", "base64",
                              "direct", "topic", "headers", "x-consistent-hash", ".*", "(", "^$",
                              "quorum", "classic", "all", "queues", "{username}", "guest",
                              "amq.topic", "fz-q", "1", "-1", "1e3", "Zm9v", "!!!"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner,
                                        max_size=5), max_leaves=16)
near_objects = st.dictionaries(st.sampled_from(KEYS), values, max_size=7)
definitions = st.fixed_dictionaries({}, optional={
    section: st.lists(near_objects, max_size=3) | values
    for section in ("users", "vhosts", "permissions", "topic_permissions", "policies",
                    "queues", "exchanges", "bindings", "parameters")})
bodies = st.one_of(st.none(), near_objects, definitions, values,
                   st.binary(max_size=48).map(lambda b: ("raw", b)))


def _segment() -> st.SearchStrategy[str]:
    return st.sampled_from(NAMES) | st.text(max_size=10).map(lambda t: quote(t, safe=""))


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, Any, str | None]:
    template = draw(st.sampled_from(TEMPLATES))
    method = draw(st.sampled_from(METHODS))
    path = template
    while "{" in path:
        start = path.index("{")
        end = path.index("}", start)
        path = path[:start] + draw(_segment()) + path[end + 1:]
    if draw(st.booleans()):
        path += "/"
    query = draw(st.lists(st.tuples(st.sampled_from(QUERY_KEYS),
                                    st.text(max_size=8) | st.sampled_from(
                                        ["true", "1", "0", "name", "500", "x"])), max_size=3))
    if query:
        path += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query)
    auth = draw(st.sampled_from(["good"] * 8 + [None, "Basic !!!", "Bearer abc",
                                               "Basic " + base64.b64encode(b"guest:no").decode(),
                                               "Basic " + base64.b64encode(b"\xff\xfe").decode(),
                                               "Basic " + base64.b64encode(b"nobody").decode()]))
    return method, path, draw(bodies), auth


def destructive(method: str, path: str, body: Any) -> bool:
    """What would lock the fuzzer out of the broker it is fuzzing."""
    plain = path.split("?")[0].rstrip("/")
    if plain.startswith("/api/burrowmq/") and method != "GET" and \
            not plain.endswith("/authenticate"):
        return True  # stop, stop_app, reset, cluster membership
    if method in ("PUT", "DELETE") and (plain.endswith("/users/guest")
                                        or plain.startswith("/api/permissions/%2F/guest")
                                        or plain.startswith("/api/user-limits/guest")):
        return True
    text = json.dumps(body, default=str) if not isinstance(body, tuple) else ""
    return "guest" in text and ("users" in text or "bulk-delete" in plain
                                or "user-limits" in plain)


class Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerHandle, Collector]]:
    data_dir = tmp_path_factory.mktemp("http-fuzz")
    handle = start_in_thread(Config(host="127.0.0.1", port=0, data_dir=str(data_dir),
                                    management_port=0))
    collector = Collector()
    watched = [logging.getLogger(name) for name in ("broker", "aiohttp")]
    for logger in watched:
        logger.addHandler(collector)
    yield handle, collector
    for logger in watched:
        logger.removeHandler(collector)
    handle.stop()


def send(port: int, method: str, path: str, body: Any,
         auth: str | None) -> tuple[int, dict[str, str], bytes]:
    if isinstance(body, tuple):
        data: bytes | None = body[1]
    else:
        data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if auth == "good":
        headers["Authorization"] = "Basic " + base64.b64encode(b"guest:guest").decode()
    elif auth is not None:
        headers["Authorization"] = auth
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


HEALTH = ("/api/health/", "/api/aliveness-test/", "/api/healthchecks/")


def check_answer(method: str, path: str, status: int, headers: dict[str, str],
                 payload: bytes, auth: str | None = "good") -> None:
    if status >= 500:
        assert status == 503 and path.startswith(HEALTH), (method, path, status, payload)
    if method == "HEAD" or status < 400:
        return
    if status == 405:
        assert payload == b"" and "allow" in headers, (method, path, payload)
        return
    if auth is None and status == 401:  # no credentials: cowboy's bare 401 and its challenge
        assert payload == b"" and "www-authenticate" in headers, (method, path, payload)
        return
    if auth not in (None, "good") and status == 400 and not payload:  # unparsable header
        assert "content-type" not in headers, (method, path, auth)
        return
    body = json.loads(payload)
    shape = {"status", "reason"} if status == 503 else {"error", "reason"}  # health checks
    assert isinstance(body, dict) and set(body) >= shape, (path, body)
    assert "Traceback" not in payload.decode(errors="replace")


def _management_api(live: tuple[BrokerHandle, Collector],
                    request: tuple[str, str, Any, str | None]) -> None:
    handle, collector = live
    method, path, body, auth = request
    assume(not destructive(method, path, body))
    status, headers, payload = send(handle.management_port or 0, method, path, body, auth)
    check_answer(method, path, status, headers, payload, auth)
    errors = [r for r in collector.records if r.exc_info or r.levelno >= logging.ERROR]
    collector.records.clear()
    assert not errors, [collector.format(r) for r in errors]


test_management_api, test_management_api_soak = fuzz(requests(), ci_examples=400)(
    _management_api)


def test_every_route_answers_a_wrong_method_with_405(live) -> None:  # type: ignore
    handle, _collector = live
    status, headers, payload = send(handle.management_port or 0, "PATCH", "/api/overview",
                                    None, "good")
    assert (status, payload) == (405, b"")
    assert headers["allow"] == "HEAD, GET, OPTIONS"

"""Helpers for the operations tests (not a test module): a small synchronous HTTP client for
the management API (urllib, basic auth, JSON) and pika helpers bound to a plugin handle."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import pika


@dataclass
class Api:
    port: int
    user: str = "guest"
    password: str = "guest"

    def request(self, method: str, path: str, body: Any = None,
                headers: dict | None = None, raw: bool = False) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                     method=method)
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, payload = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, payload = err.code, err.read()
        if raw:
            return status, payload.decode()
        return status, json.loads(payload) if payload else None

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, (path, status, body)
        return body

    def put(self, path: str, body: Any) -> int:
        return self.request("PUT", path, body)[0]

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        return self.request("POST", path, body)

    def delete(self, path: str, headers: dict | None = None) -> int:
        return self.request("DELETE", path, headers=headers)[0]

    def as_user(self, user: str, password: str) -> Api:
        return Api(self.port, user, password)


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def connect(url: str, **overrides: Any) -> pika.BlockingConnection:
    params = pika.URLParameters(url)
    for key, value in overrides.items():
        setattr(params, key, value)
    return pika.BlockingConnection(params)


def amqp_url(handle: Any, user: str, password: str, vhost: str = "/") -> str:
    return f"amqp://{user}:{password}@127.0.0.1:{handle.port}/{quote(vhost)}"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(main: Any, *args: str) -> CliResult:
    """Run a CLI's ``main(argv)`` in this process (fast: no interpreter start per command)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return CliResult(code, out.getvalue(), err.getvalue())


def burrowctl(*args: str) -> CliResult:
    from broker.ops.ctl.__main__ import main

    return run_cli(main, *args)


def burrowmqadmin(*args: str) -> CliResult:
    from broker.ops.ctl.rabbitmqadmin import main

    return run_cli(main, *args)

"""A small management-API client for the CLI: basic auth, JSON, errors as ``CtlError`` with
rabbitmqctl's exit codes."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any  # Any: JSON values of the management API

EX_USAGE, EX_DATAERR, EX_UNAVAILABLE, EX_SOFTWARE = 64, 65, 69, 70


class CtlError(Exception):
    def __init__(self, message: str, code: int = EX_SOFTWARE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


@dataclass
class Client:
    host: str = "127.0.0.1"
    port: int = 15672
    user: str = "guest"
    password: str = "guest"
    timeout: float = 60.0
    node: str = "rabbit@localhost"

    @classmethod
    def from_env(cls, **overrides: Any) -> Client:
        env = os.environ
        values: dict[str, Any] = {
            "host": env.get("BURROWCTL_HOST", "127.0.0.1"),
            "port": int(env.get("BURROWCTL_PORT") or env.get("RABBITMQ_MANAGEMENT_PORT")
                        or 15672),
            "user": env.get("BURROWCTL_USER") or env.get("RABBITMQ_DEFAULT_USER") or "guest",
            "password": env.get("BURROWCTL_PASSWORD") or env.get("RABBITMQ_DEFAULT_PASS")
            or "guest",
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def call(self, method: str, path: str, body: Any = None,
             headers: dict | None = None, missing: str | None = None) -> Any:
        """``missing`` is the error text for a 404 (else a 404 is an error as any other)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://{self.host}:{self.port}/api{path}", data=data,
                                     method=method)
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        req.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as err:
            raise self._http_error(err, missing) from None
        except (TimeoutError, urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise CtlError(f"unable to perform an operation on node '{self.node}'. Please see "
                           f"diagnostics information and suggestions below.\n\nDIAGNOSTICS\n"
                           f"===========\n\nmanagement API at {self.host}:{self.port}: "
                           f"{reason}", EX_UNAVAILABLE) from None
        return json.loads(payload) if payload else None

    def _http_error(self, err: urllib.error.HTTPError, missing: str | None) -> CtlError:
        try:
            body = json.loads(err.read() or b"{}")
        except ValueError:
            body = {}
        reason = body.get("reason") or err.reason
        if err.code == 404 and missing:
            return CtlError(missing, EX_DATAERR)
        if err.code == 401:
            return CtlError(f"authentication to the management API failed: {reason}",
                            EX_UNAVAILABLE)
        if err.code == 503:
            return CtlError(str(reason), EX_UNAVAILABLE)
        return CtlError(str(reason), EX_DATAERR if err.code in (400, 404) else EX_SOFTWARE)

    def get(self, path: str, missing: str | None = None) -> Any:
        return self.call("GET", path, missing=missing)

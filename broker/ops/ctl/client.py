"""How the CLI reaches the node: the local control socket when it can, the management HTTP API
otherwise. Errors are ``CtlError`` carrying rabbitmqctl's exit code and message layout.

Which way (``Client.from_options``):
- ``--host`` / ``--port`` (or ``BURROWCTL_HOST`` / ``BURROWCTL_PORT``): HTTP to that address,
  with basic auth (``-u`` / ``--password``, ``BURROWCTL_USER`` / ``BURROWCTL_PASSWORD``, else
  ``RABBITMQ_DEFAULT_USER`` / ``_PASS``, else guest/guest). This is the way to a remote node.
- otherwise, when ``<data dir>/ctl.sock`` exists (``--data-dir``, ``BURROWMQ_DATA_DIR``, else
  the broker's default data directory) and this user can read ``ctl.cookie``: the socket,
  authenticated by the cookie, whatever the management port or the admin password;
- otherwise HTTP to 127.0.0.1:15672 (``RABBITMQ_MANAGEMENT_PORT`` if set).
When the socket exists but nothing answers on it, the node at that data directory is down:
that is reported (exit 69) rather than silently asking whatever listens on port 15672.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any  # Any: JSON values of the management API

from .. import localctl

EX_OK, EX_USAGE, EX_DATAERR, EX_NOUSER, EX_UNAVAILABLE, EX_SOFTWARE = 0, 64, 65, 67, 69, 70
NODE_HEADER = "x-burrowmq-node"  # which cluster node the request is for (burrowctl -n)


class CtlError(Exception):
    """``layout``: "block" prints ``Error:\\n<message>``, "inline" ``Error: <message>``,
    "bare" the message alone (rabbitmqctl uses all three)."""

    def __init__(self, message: str, code: int = EX_SOFTWARE, layout: str = "block") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.layout = layout
        self.detail = message  # the short form, for tools that print one line

    def render(self) -> str:
        if self.layout == "inline":
            return f"Error: {self.message}"
        if self.layout == "bare":
            return self.message
        return f"Error:\n{self.message}"


def q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def default_node() -> str:
    from broker.core.naming import node_name

    return node_name()


def unreachable(node: str, tried: str, reason: object) -> CtlError:
    err = CtlError(
        f"unable to perform an operation on node '{node}'. Please see diagnostics information "
        "and suggestions below.\n\nMost common reasons for this are:\n\n"
        " * Target node is not running\n"
        " * The CLI looked at another data directory than the node's (pass --data-dir)\n"
        " * For a remote node: wrong --host / --port, or the management API is off\n\n"
        "DIAGNOSTICS\n===========\n\n"
        f"attempted to contact: {tried}\n\n{tried}:\n  * {reason}",
        EX_UNAVAILABLE, "inline")
    err.detail = f"{tried}: {reason}"
    return err


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = localctl.connect(self.path, self.timeout)


@dataclass
class Client:
    host: str = "127.0.0.1"
    port: int = 15672
    user: str = "guest"
    password: str = "guest"
    timeout: float = 60.0
    node: str = field(default_factory=default_node)
    socket_path: Path | None = None
    data_dir: Path | None = None  # the local node's, when no --host / --port was given
    cookie: str | None = None
    _named: bool = False  # node came from -n: requests name it (x-burrowmq-node)
    _asked: bool = False  # node came from the node itself

    @classmethod
    def from_options(cls, *, host: str | None = None, port: int | None = None,
                     user: str | None = None, password: str | None = None,
                     data_dir: str | None = None, timeout: float = 60.0,
                     node: str | None = None) -> Client:
        env = os.environ
        host = host or env.get("BURROWCTL_HOST")
        port = port or (int(env["BURROWCTL_PORT"]) if env.get("BURROWCTL_PORT") else None)
        client = cls(timeout=timeout, node=node or default_node(), _named=node is not None)
        client.user = user or env.get("BURROWCTL_USER") or env.get("RABBITMQ_DEFAULT_USER") \
            or "guest"
        client.password = password or env.get("BURROWCTL_PASSWORD") or \
            env.get("RABBITMQ_DEFAULT_PASS") or "guest"
        if host is None and port is None:
            from broker.node.config import default_data_dir

            directory = Path(data_dir or env.get("BURROWMQ_DATA_DIR") or default_data_dir())
            client.data_dir = directory.expanduser().absolute()
            sock = client.data_dir / localctl.SOCKET_NAME
            if sock.exists():
                try:
                    client.cookie = localctl.read_cookie(sock.parent)
                    client.socket_path = sock
                except OSError:
                    pass  # another OS user's node: its socket is not ours to use either
        client.host = host or "127.0.0.1"
        client.port = port or int(env.get("RABBITMQ_MANAGEMENT_PORT") or 15672)
        return client

    @property
    def target(self) -> str:
        if self.socket_path is not None:
            return f"control socket {self.socket_path}"
        return f"management API at {self.host}:{self.port}"

    def call(self, method: str, path: str, body: Any = None, headers: dict | None = None,
             missing: str | None = None) -> Any:
        """``missing`` is the error text for a 404 (else a 404 is an error as any other)."""
        status, reason, payload = self.request(method, path, body, headers)
        if status >= 400:
            raise self._http_error(status, reason, payload, missing)
        return json.loads(payload) if payload else None

    def request(self, method: str, path: str, body: Any = None,
                headers: dict | None = None) -> tuple[int, str, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if self._named:  # -n: the node relays the request to that node when it is another
            all_headers[NODE_HEADER] = self.node
        conn: http.client.HTTPConnection
        if self.socket_path is not None:
            conn = _UnixConnection(self.socket_path, self.timeout)
            all_headers[localctl.COOKIE_HEADER] = self.cookie or ""
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            all_headers["Authorization"] = f"Basic {token}"
        try:
            conn.request(method, "/api" + path, body=data, headers=all_headers)
            resp = conn.getresponse()
            return resp.status, resp.reason, resp.read()
        except TimeoutError:
            raise unreachable(self.node, self.target,
                              f"no answer within {self.timeout:g} s") from None
        except (OSError, http.client.HTTPException) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else err
            raise unreachable(self.node, self.target, reason) from None
        finally:
            conn.close()

    def _http_error(self, status: int, reason: str, payload: bytes,
                    missing: str | None) -> CtlError:
        try:
            body = json.loads(payload or b"{}")
        except ValueError:
            body = {}
        text = str(body.get("reason") or reason)
        if status == 404 and missing:
            return CtlError(missing, EX_DATAERR)
        if status == 401:
            return CtlError(f"authentication to the {self.target} failed: {text}. On the "
                            "node's machine, burrowctl --data-dir <its data directory> uses "
                            "the control socket instead (no password)", EX_UNAVAILABLE)
        if status == 503:
            return CtlError(text, EX_UNAVAILABLE)
        return CtlError(text, EX_DATAERR if status in (400, 404) else EX_SOFTWARE)

    def node_name(self) -> str:
        """The node's own name (``-n``, else asked once: nodes on one machine differ)."""
        if not self._named and not self._asked:
            try:
                self.node = self.get("/burrowmq/node")["name"]
            except CtlError as err:
                if err.code == EX_UNAVAILABLE:
                    raise
            self._asked = True
        return self.node

    def get(self, path: str, missing: str | None = None) -> Any:
        return self.call("GET", path, missing=missing)

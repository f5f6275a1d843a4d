"""The local control channel's names, cookie and Unix-socket helpers, shared by the node's side
(``control_socket.ControlChannel``) and the CLI's (``ctl.client``): how ``burrowctl`` reaches
the node on the same machine without the management port or an HTTP password (the role the
Erlang cookie plays for rabbitmqctl).

Layout in the data directory::

    <data>/ctl.cookie   a random secret, mode 0600, created once and kept across restarts
    <data>/ctl.sock     a Unix socket, mode 0600, serving the management API for the CLI

A request on the socket is authorised by the cookie in the ``x-burrowmq-cookie`` header; it
acts as the internal CLI user ``rmq-cli`` with administrator rights (as rabbitmqctl acts as
``rmq-cli`` inside RabbitMQ). The cookie is never accepted on the TCP management listener, and
basic auth is never accepted on the socket.

Invariants:
- The socket is bound only while this process holds the data directory's lock, so an existing
  ``ctl.sock`` at start-up is stale and is replaced; ``stop`` unlinks it.
- Only the broker's OS user (and root) can read the cookie or connect to the socket; a cookie
  file that others can read is tightened to 0600 with a warning (Erlang refuses to start).
- Paths longer than a Unix socket address allows (~107 bytes, easily reached by temporary
  directories) are reached through ``/proc/self/fd/<dir fd>/ctl.sock`` on Linux.

This module imports nothing beyond the standard library: the CLI imports it and must start
fast, and the management app imports it for the cookie check.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import socket
import stat
from pathlib import Path
from typing import Any

log = logging.getLogger("broker.control")

SOCKET_NAME = "ctl.sock"
COOKIE_NAME = "ctl.cookie"
COOKIE_HEADER = "x-burrowmq-cookie"
CLI_USER = "rmq-cli"
_MAX_SUN_PATH = 100  # sockaddr_un.sun_path is 108 bytes on Linux, 104 on BSDs: keep a margin


def ensure_cookie(data_dir: str | os.PathLike[str]) -> str:
    """The node's secret, created on first start (0600) and reused afterwards."""
    path = Path(data_dir) / COOKIE_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("cookie file %s was readable by other users (mode %o); set to 0600",
                        path, mode)
            path.chmod(0o600)
        cookie = path.read_text().strip()
        if cookie:
            return cookie
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    cookie = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(cookie + "\n")
    return cookie


def read_cookie(data_dir: str | os.PathLike[str]) -> str:
    """The CLI side: OSError (PermissionError, FileNotFoundError) when it cannot be read."""
    return (Path(data_dir) / COOKIE_NAME).read_text().strip()


def cookie_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


@contextlib.contextmanager
def _short_address(path: Path) -> Any:
    """A connectable/bindable address for ``path`` even when it is too long for sun_path."""
    if len(os.fsencode(path)) <= _MAX_SUN_PATH or not Path("/proc/self/fd").is_dir():
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def connect(path: str | os.PathLike[str], timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with _short_address(Path(path)) as address:
            sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def bind(path: Path) -> socket.socket:
    """A listening socket at ``path`` (mode 0600), replacing a stale one."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _short_address(path) as address:
            sock.bind(address)
        os.chmod(path, 0o600)
        sock.listen(64)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock

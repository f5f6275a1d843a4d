"""One HTTP request passed on to another node (a follower's management API forwards to the
leader; ``-n rabbit@other`` relays to that node), prefixed with a PROXY v1 header so that the
other node sees the client's address.

HTTP/1.0 with ``Connection: close``: the answer is whatever arrives until the other side closes,
with no chunked encoding to undo. Management requests are small and rare; the simplicity is
worth a connection each.

A request a node makes for the CLI (which authenticated to it with its cookie) carries
``x-burrowmq-peer``: the node's name, the time and an HMAC of both with the method and target,
keyed by the cluster secret; the receiving node acts for the CLI when it verifies (within a
minute). The body is not signed: the secret already keeps outsiders from forging requests, and
the stamp limits replays of a captured one to that minute.

Invariants: a request that cannot be delivered raises ``ForwardError`` (the caller answers 503);
hop-by-hop headers are not passed on either way.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

from . import proxy

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade", "content-length", "host", "date",
                        "server"})
MAX_ANSWER = 256 * 1024 * 1024


class ForwardError(Exception):
    """The other node could not be reached or did not answer."""


async def forward(address: tuple[str, int], method: str, target: str,
                  headers: Mapping[str, str], body: bytes, client: Any = None,
                  local: Any = None, timeout: float = 30.0) -> tuple[int, list[tuple[str, str]],
                                                                    bytes]:
    """(status, headers, body) of ``method target`` at ``address``."""
    host, port = address
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
    except (OSError, TimeoutError) as exc:
        raise ForwardError(f"{host}:{port}: {exc or type(exc).__name__}") from None
    try:
        lines = [f"{method} {target} HTTP/1.0", f"Host: {host}:{port}", "Connection: close",
                 f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in HOP_BY_HOP]
        writer.write(proxy.header(client, local) + ("\r\n".join(lines) + "\r\n\r\n").encode()
                     + body)
        raw = await asyncio.wait_for(reader.read(MAX_ANSWER), timeout)
        while True:  # read() returns what is there: go on to EOF
            more = await asyncio.wait_for(reader.read(MAX_ANSWER), timeout)
            if not more:
                break
            raw += more
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        raise ForwardError(f"{host}:{port}: {exc or type(exc).__name__}") from None
    finally:
        writer.transport.abort()
    return parse_answer(raw, f"{host}:{port}")


def parse_answer(raw: bytes, where: str) -> tuple[int, list[tuple[str, str]], bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ForwardError(f"{where}: no complete HTTP answer")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ForwardError(f"{where}: bad status line {status_line!r}")
    out = []
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() not in HOP_BY_HOP:
            out.append((name.strip(), value.strip()))
    return int(parts[1]), out, body


# ---- requests between nodes: signed with the cluster secret ------------------------------
PEER_HEADER = "x-burrowmq-peer"  # "<node> <unix time> <hex HMAC>": a node acting for the CLI
MAX_SKEW = 60.0


def _mac(secret: bytes, node: str, stamp: str, method: str, target: str) -> str:
    text = f"{node}\n{stamp}\n{method}\n{target}".encode()
    return hmac.new(secret, text, hashlib.sha256).hexdigest()


def sign(secret: bytes, node: str, method: str, target: str) -> str:
    stamp = str(int(time.time()))
    return f"{node} {stamp} {_mac(secret, node, stamp, method, target)}"


def verify(secret: bytes, value: str, method: str, target: str) -> str | None:
    """The signing node's name, or None when the signature is wrong or stale."""
    parts = value.split(" ")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    node, stamp, mac = parts
    if abs(time.time() - int(stamp)) > MAX_SKEW:
        return None
    return node if hmac.compare_digest(mac, _mac(secret, node, stamp, method, target)) \
        else None

"""The replication protocol's frames (leader <-> follower over TCP), encoded and decoded.

A frame is ``[u32 length][u8 kind][payload]`` (length counts kind + payload, big-endian
integers, strings as ``u16 length + UTF-8``). A session::

    follower                                  leader
    HELLO(version, node, nonce_f)      ->
                                       <-     CHALLENGE(node, epoch, nonce_l, mac_l)
    AUTH(mac_f)                        ->
                                       <-     WELCOME | ERROR(text)
    LIST(path, size, digest)* LIST_END ->
                                       <-     S_WRITE(path, offset, data)* S_DELETE(path)*
                                       <-     S_END(position)
    ACK(position)                      ->
                                       <-     APPEND | TRUNCATE | REWRITE | DELETE | PING
    ACK(position)                      ->     (cumulative, after an fsync batch)

``mac_l = HMAC-SHA256(secret, "L" nonce_f nonce_l epoch leader)`` proves the leader knows the
secret and binds the epoch; ``mac_f = HMAC-SHA256(secret, "F" nonce_l nonce_f follower)`` proves
the follower does. The secret never crosses the wire.

Invariants:
- ``S_WRITE`` makes the file exactly ``offset`` bytes long, then writes ``data`` there (the
  first chunk of a replaced file has offset 0); ``APPEND`` requires the file to be exactly
  ``offset`` bytes long (else the copy has diverged: resync). ``REWRITE`` chunks fill a
  temporary file that replaces the target when ``offset + len(data) == total``.
- Every streamed change carries its position; positions only grow within a leader's life, and an
  ACK(p) means every change up to p is applied and fsynced on the follower (appends to ack
  files: applied, not fsynced, as the leader does not fsync them either).
- No frame carries more than ``CHUNK`` bytes of file data; ``MAX_FRAME`` bounds what a reader
  accepts.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import struct
from enum import IntEnum

VERSION = 1
CHUNK = 1024 * 1024
MAX_FRAME = CHUNK + 64 * 1024
NONCE = 32
DIGEST = 32  # sha256

_HEAD = struct.Struct("!IB")
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
_U64X2 = struct.Struct("!QQ")


class Kind(IntEnum):
    HELLO = 1
    CHALLENGE = 2
    AUTH = 3
    WELCOME = 4
    ERROR = 5
    LIST = 6
    LIST_END = 7
    S_WRITE = 8
    S_DELETE = 9
    S_END = 10
    APPEND = 11
    TRUNCATE = 12
    REWRITE = 13
    DELETE = 14
    PING = 15
    ACK = 16


class ProtocolError(Exception):
    """The peer sent something this protocol does not allow."""


def frame(kind: Kind, *parts: bytes) -> bytes:
    size = 1 + sum(len(p) for p in parts)
    return b"".join((_HEAD.pack(size, kind), *parts))


def s(text: str) -> bytes:
    raw = text.encode()
    return _U16.pack(len(raw)) + raw


def u64(value: int) -> bytes:
    return _U64.pack(value)


class Reader:
    """Walks one payload: ``r.u64()``, ``r.str()``, ``r.raw(n)``, ``r.rest()``."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def raw(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise ProtocolError("frame too short")
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def u16(self) -> int:
        return int(_U16.unpack(self.raw(2))[0])

    def u64(self) -> int:
        return int(_U64.unpack(self.raw(8))[0])

    def str(self) -> str:
        try:
            return self.raw(self.u16()).decode()
        except UnicodeDecodeError:
            raise ProtocolError("string is not UTF-8") from None

    def rest(self) -> bytes:
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return out

    @property
    def done(self) -> bool:
        return self.pos == len(self.data)


async def read_frame(reader: asyncio.StreamReader) -> tuple[Kind, Reader]:
    """The next frame; IncompleteReadError at EOF, ProtocolError for a bad one."""
    head = await reader.readexactly(_HEAD.size)
    size, kind = _HEAD.unpack(head)
    if size < 1 or size > MAX_FRAME:
        raise ProtocolError(f"frame of {size} bytes")
    payload = await reader.readexactly(size - 1)
    try:
        return Kind(kind), Reader(payload)
    except ValueError:
        raise ProtocolError(f"unknown frame kind {kind}") from None


# ---- frames ----------------------------------------------------------------------------
def hello(node: str, nonce: bytes) -> bytes:
    return frame(Kind.HELLO, b"BMQR", _U16.pack(VERSION), s(node), nonce)


def challenge(node: str, epoch: int, nonce: bytes, mac: bytes) -> bytes:
    return frame(Kind.CHALLENGE, s(node), u64(epoch), nonce, mac)


def error(text: str) -> bytes:
    return frame(Kind.ERROR, s(text[:1000]))


def list_entry(path: str, size: int, digest: bytes) -> bytes:
    return s(path) + u64(size) + digest


def sync_write(path: str, offset: int, data: bytes) -> bytes:
    return frame(Kind.S_WRITE, s(path), u64(offset), data)


def append(position: int, path: str, offset: int, data: bytes) -> bytes:
    return frame(Kind.APPEND, u64(position), s(path), u64(offset), data)


def truncate(position: int, path: str, size: int) -> bytes:
    return frame(Kind.TRUNCATE, u64(position), s(path), u64(size))


def rewrite(position: int, path: str, total: int, offset: int, data: bytes) -> bytes:
    return frame(Kind.REWRITE, u64(position), s(path), _U64X2.pack(total, offset), data)


def delete(position: int, path: str) -> bytes:
    return frame(Kind.DELETE, u64(position), s(path))


# ---- authentication --------------------------------------------------------------------
def leader_mac(secret: bytes, nonce_f: bytes, nonce_l: bytes, epoch: int, node: str) -> bytes:
    return hmac.new(secret, b"L" + nonce_f + nonce_l + u64(epoch) + node.encode(),
                    hashlib.sha256).digest()


def follower_mac(secret: bytes, nonce_l: bytes, nonce_f: bytes, node: str) -> bytes:
    return hmac.new(secret, b"F" + nonce_l + nonce_f + node.encode(), hashlib.sha256).digest()

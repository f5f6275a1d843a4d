"""The durable definitions document (vhosts, users, permissions, exchanges, queues, bindings,
policies): one msgpack document in one file, replaced atomically.

File layout: ``b"BMQD"`` magic, version u8, 3 reserved bytes, CRC-32 u32 of the payload, then
the msgpack payload (a map). Bytes stay bytes (password hashes), strings stay strings.

Invariants:
- ``save`` writes a temporary file, fsyncs it, renames it over the old one and fsyncs the
  directory: after a crash the file holds either the old or the new document, never a mix.
- ``load`` returns ``{}`` when there is no file, and raises ``DefinitionsError`` naming the file
  for anything it cannot trust (bad magic, newer version, CRC mismatch, undecodable payload,
  not a map). It never silently starts empty over a damaged file.
- Blocking I/O (one fsync of the file and one of the directory): call it off the loop's hot path
  or in an executor.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack

from .sync import fsync_dir

if TYPE_CHECKING:
    from .replication import ReplicationSink

MAGIC = b"BMQD"
VERSION = 1
_HEADER = struct.Struct("<4sB3xI")
# The document is the broker's to shape (broker.core.durable_topology): to storage it is any
# msgpack map, so its values are Any here.


class DefinitionsError(Exception):
    """The definitions file exists but cannot be read back."""


def encode(doc: dict[str, Any]) -> bytes:
    if not isinstance(doc, dict):
        raise TypeError("definitions must be a dict")
    payload: bytes = msgpack.packb(doc, use_bin_type=True)
    return _HEADER.pack(MAGIC, VERSION, zlib.crc32(payload)) + payload


def decode(data: bytes, path: str | os.PathLike[str] = "definitions") -> dict[str, Any]:
    def corrupt(why: str) -> DefinitionsError:
        return DefinitionsError(
            f"definitions file {path} is corrupt ({why}); restore it from a backup or move it "
            f"away to start with no durable definitions")

    if len(data) < _HEADER.size:
        raise corrupt(f"{len(data)} bytes, shorter than its header")
    magic, version, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise corrupt("bad magic")
    if version != VERSION:
        raise DefinitionsError(
            f"definitions file {path} has format version {version}; this broker reads "
            f"{VERSION}")
    payload = data[_HEADER.size:]
    if zlib.crc32(payload) != crc:
        raise corrupt("CRC mismatch")
    try:
        doc = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise corrupt(f"undecodable: {exc}") from None
    if not isinstance(doc, dict):
        raise corrupt(f"top level is {type(doc).__name__}, not a map")
    return doc


def save(path: str | os.PathLike[str], doc: dict[str, Any],
         sink: ReplicationSink | None = None) -> None:
    """Atomically replace ``path`` with ``doc`` (write temp, fsync, rename, fsync dir), then
    tell ``sink`` (from this thread)."""
    path = Path(path)
    data = encode(doc)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        written = 0
        while written < len(view):
            written += os.write(fd, view[written:])
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    if sink is not None:
        sink.rewrite(str(path), data)


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The saved document, ``{}`` when there is none; DefinitionsError when damaged."""
    path = Path(path)
    path.with_name(path.name + ".tmp").unlink(missing_ok=True)  # a save cut short by a crash
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    return decode(data, path)

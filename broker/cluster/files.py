"""Which files of a data directory are replicated, their relative names, digests, and the
node's local cluster state file.

Replicated: everything under the data directory except the lock (``LOCK``), the node's own
cluster state (``cluster.state``) and ``force_boot`` marker (``force_load``), the CLI's control
socket and cookie (``ctl.sock``, ``ctl.cookie``: each node has its own), non-durable stores
(``scratch/``), temporary files (``*.tmp``) and write probes (``.probe-*``). Names on the wire
are relative, ``/``-separated.

Invariants:
- ``safe_path`` never returns a path outside the root: a peer's name with ``..``, an absolute
  name, a NUL or an empty part is refused (``ValueError``).
- ``save_state`` (and ``save_epoch``) is atomic and durable (temp file, fsync, rename, fsync
  dir): a follower that accepted epoch E never accepts a leader with a lower one, even after a
  crash. The state document also says whether this node is a member (``member``) and whether a
  full sync that changed existing data is under way (``syncing``: the copy may then lack
  confirmed messages, so the node must not lead).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from storage.sync import fsync_dir

STATE_NAME = "cluster.state"
FORCE_NAME = "force_load"  # ``burrowctl force_boot``'s marker (RabbitMQ's file name)
_LOCAL = {"LOCK", STATE_NAME, FORCE_NAME, "ctl.sock", "ctl.cookie"}
_LOCAL_DIRS = {"scratch"}
_READ = 1024 * 1024


def replicated(rel: str) -> bool:
    first, _, _ = rel.partition("/")
    name = rel.rpartition("/")[2]
    return not (rel in _LOCAL or first in _LOCAL_DIRS or name.endswith(".tmp")
                or name.startswith(".probe-"))


def relative(root: str, path: str) -> str | None:
    """``path``'s name relative to ``root`` when it is replicated, else None."""
    if not path.startswith(root) or path[len(root):len(root) + 1] != os.sep:
        return None
    rel = path[len(root) + 1:]
    if os.sep != "/":
        rel = rel.replace(os.sep, "/")
    return rel if rel and replicated(rel) else None


def safe_path(root: Path, rel: str) -> Path:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or "\0" in rel or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"unsafe replicated path {rel!r}")
    return root.joinpath(*parts)


def scan(root: Path) -> dict[str, int]:
    """Every replicated file's size, by relative name."""
    found: dict[str, int] = {}
    stack = [(str(root), "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            continue
        for entry in entries:
            rel = prefix + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if rel not in _LOCAL_DIRS:
                        stack.append((entry.path, rel + "/"))
                elif entry.is_file(follow_symlinks=False) and replicated(rel):
                    found[rel] = entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return found


def digest_fd(fd: int, limit: int) -> bytes:
    """sha256 of the first ``limit`` bytes readable from ``fd`` (fewer if the file is shorter)."""
    h = hashlib.sha256()
    offset = 0
    while offset < limit:
        chunk = os.pread(fd, min(_READ, limit - offset), offset)
        if not chunk:
            break
        h.update(chunk)
        offset += len(chunk)
    return h.digest()


def listing(root: Path) -> list[tuple[str, int, bytes]]:
    """(name, size, sha256) of every replicated file: what a follower tells the leader.
    Blocking: run it in an executor."""
    out = []
    for rel in sorted(scan(root)):
        try:
            fd = os.open(safe_path(root, rel), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            size = os.fstat(fd).st_size
            out.append((rel, size, digest_fd(fd, size)))
        finally:
            os.close(fd)
    return out


def tree_digests(root: Path) -> dict[str, str]:
    """Hex sha256 of every replicated file: compares two data directories (tests, tools)."""
    return {rel: digest.hex() for rel, _, digest in listing(root)}


def load_state(root: Path) -> dict[str, Any]:
    """The node's local cluster state (``{}`` when there is none)."""
    try:
        doc = json.loads((root / STATE_NAME).read_text())
    except FileNotFoundError:
        return {}
    return doc if isinstance(doc, dict) else {}


_state_lock = threading.Lock()  # read-modify-write from the loop and executor threads


def save_state(root: Path, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into the state document, atomically and durably; return it."""
    with _state_lock:
        return _save_state(root, changes)


def _save_state(root: Path, changes: dict[str, Any]) -> dict[str, Any]:
    doc = load_state(root)
    doc.update(changes)
    path = root / STATE_NAME
    tmp = root / (STATE_NAME + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, json.dumps(doc, sort_keys=True).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(root)
    return doc


def force_boot_requested(root: Path) -> bool:
    return (root / FORCE_NAME).exists()


def request_force_boot(root: Path) -> None:
    """``burrowctl force_boot``: at its next start this node may lead with its own copy."""
    fd = os.open(root / FORCE_NAME, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(root)


def clear_force_boot(root: Path) -> None:
    try:
        os.unlink(root / FORCE_NAME)
    except FileNotFoundError:
        return
    fsync_dir(root)


def load_epoch(root: Path) -> int:
    return int(load_state(root).get("epoch", 0))


def save_epoch(root: Path, epoch: int) -> None:
    save_state(root, epoch=epoch)

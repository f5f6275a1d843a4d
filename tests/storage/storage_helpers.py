"""Helpers for the disk store tests: an entry factory, a simulated crash, directory sizes."""

from __future__ import annotations

import os
from pathlib import Path

from storage.message import Entry, Message
from storage.message_store import SegmentQueueStore

PERSISTENT = b"\x10\x00\x02"  # property flags: delivery-mode present; delivery_mode = 2
TRANSIENT = b"\x00\x00"


class Factory:
    """Builds entries with increasing seqs, as a queue does."""

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, body: bytes | str = b"x", persistent: bool = True, key: str = "rk",
                 exchange: str = "ex") -> Entry:
        self.seq += 1
        if isinstance(body, str):
            body = body.encode()
        props = PERSISTENT if persistent else TRANSIENT
        return Entry(self.seq, Message(exchange, key, props, body, persistent))


def crash(store: SegmentQueueStore) -> None:
    """What ``kill -9`` leaves: written bytes stay, nothing is sealed or indexed."""
    store.flush()
    store._cursor.close()
    if store._writer is not None:
        store._writer.close()
    store._acks.close(flush=False)
    store._dirh.close()
    store._closed = True


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def segment_files(path: Path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith(".seg"))


def drain(store: SegmentQueueStore, ack: bool = True) -> list[Entry]:
    out = []
    while (entry := store.shift()) is not None:
        out.append(entry)
        if ack:
            store.ack(entry)
    return out

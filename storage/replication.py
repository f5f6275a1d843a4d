"""The replication hook: every change storage makes to a data directory, told to a sink.

Cluster mode hands these calls to the replication server, which streams them to followers so
that their data directories stay byte-identical to the leader's. Storage knows nothing else
about replication: it calls the sink, when one is set, right where it changes a file.

Calls (paths are absolute ``str``; ``data`` is only valid during the call, copy it to keep it):

- ``append(path, offset, data)``: ``data`` was written at ``offset`` (the file's end); the file
  is created by the first append when it did not exist;
- ``truncate(path, size)``: the file was cut to ``size`` bytes (recovery of a torn tail);
- ``rewrite(path, data)``: the file's whole content is now ``data`` (definitions, ``.idx``,
  ``QUEUE``);
- ``delete(path)``: the file, or the directory with everything under it, is gone.

Invariants:
- A call is made after the change reached the kernel (a plain ``os.write``, no fsync), in the
  order the changes were made, so replaying the calls on a copy of the directory reproduces
  it byte for byte.
- The default is no sink (``None``): storage tests ``is not None`` once per flushed buffer, so
  a node without replication pays nothing else.
- ``rewrite`` from ``definitions_file.save`` runs on the thread that saves (an executor thread):
  a sink must accept calls from any thread. Every other call comes from the event-loop thread.
- Non-durable stores (scratch) never get a sink: their files are not replicated.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class ReplicationSink(Protocol):
    def append(self, path: str, offset: int, data: bytes) -> None: ...
    def truncate(self, path: str, size: int) -> None: ...
    def rewrite(self, path: str, data: bytes) -> None: ...
    def delete(self, path: str) -> None: ...


def unlink(path: Path, sink: ReplicationSink | None) -> bool:
    """Remove the file at ``path`` and tell ``sink``; False (and nothing told) when it was
    already gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    if sink is not None:
        sink.delete(str(path))
    return True

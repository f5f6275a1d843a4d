"""Resource alarms: while one is raised, publishing connections are blocked.

RabbitMQ's rule: a connection that publishes gets connection.blocked (when it announced the
connection.blocked capability) and the broker stops reading from it; connections that only
consume keep going, so queues can drain. When the last alarm clears, blocked connections get
connection.unblocked and reading resumes. On a timer, the disk alarm compares the data
directory's free space with ``disk_free_limit`` and the memory alarm compares resident memory
with the high watermark (relative to the cgroup limit when there is one, as RabbitMQ does).

The alarms see connections only as ``Blockable`` and the node only as ``AlarmHost`` (its
settings, its loop, the data directory's free space and the open connections).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from . import sysinfo

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger("broker.alarms")

REASONS = {"disk": "low on disk", "memory": "low on memory"}
CHECK_INTERVAL = 1.0


class Blockable(Protocol):
    """A connection as the alarms see it (``broker.amqp.session.Session``)."""

    @property
    def published(self) -> bool: ...
    def block(self, reason: str) -> None: ...
    def unblock(self) -> None: ...


class AlarmHost(Protocol):
    """What the alarms read from the node."""

    @property
    def config(self) -> Config: ...
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    def disk_free(self) -> int | None:
        """Free bytes where the data directory is; None while it is not open."""
        ...

    def connections(self) -> Iterable[Blockable]: ...


class Alarms:
    def __init__(self, host: AlarmHost) -> None:
        self.host = host
        self.active: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def reason(self) -> str:
        return " & ".join(REASONS[a] for a in sorted(self.active))

    def start(self) -> None:
        self._check()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        host = self.host
        free = host.disk_free()
        if free is None:
            return
        limit = sysinfo.disk_free_limit(host.config)
        self.set("disk", free < limit, f"free disk space {free} is below the limit {limit}")
        rss, watermark = sysinfo.rss_bytes(), sysinfo.memory_limit(host.config)
        self.set("memory", rss > watermark,
                 f"memory use {rss} is above the high watermark {watermark}")
        self._timer = host.loop.call_later(CHECK_INTERVAL, self._check)

    def set(self, name: str, raised: bool, detail: str = "") -> None:
        if raised == (name in self.active):
            return
        if raised:
            log.warning("%s alarm set: %s; publishers will be blocked", name, detail)
            self.active.add(name)
            for connection in list(self.host.connections()):
                if connection.published:
                    connection.block(self.reason)
        else:
            log.warning("%s alarm cleared; publishers unblocked", name)
            self.active.discard(name)
            if not self.active:
                for connection in list(self.host.connections()):
                    connection.unblock()

    def on_publish(self, connection: Blockable) -> None:
        """A connection published while an alarm is on: block it too."""
        if self.active:
            connection.block(self.reason)

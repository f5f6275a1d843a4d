"""Resource alarms: while one is raised, publishing connections are blocked.

RabbitMQ's rule: a connection that publishes gets connection.blocked (when it announced the
connection.blocked capability) and the broker stops reading from it; connections that only
consume keep going, so queues can drain. When the last alarm clears, blocked connections get
connection.unblocked and reading resumes. On a timer, the disk alarm compares the data
directory's free space with ``disk_free_limit`` and the memory alarm compares resident memory
with the high watermark (relative to the cgroup limit when there is one, as RabbitMQ does).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.amqp.session import Session
    from broker.core.server import Server

from . import sysinfo

log = logging.getLogger("broker.alarms")

REASONS = {"disk": "low on disk", "memory": "low on memory"}
CHECK_INTERVAL = 1.0


class Alarms:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.active: set[str] = set()
        self._timer = None

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
        server = self.server
        if server.stores is None:
            return
        free = server.stores.data.disk_free()
        limit = sysinfo.disk_free_limit(server.config)
        self.set("disk", free < limit, f"free disk space {free} is below the limit {limit}")
        rss, watermark = sysinfo.rss_bytes(), sysinfo.memory_limit(server.config)
        self.set("memory", rss > watermark,
                 f"memory use {rss} is above the high watermark {watermark}")
        self._timer = server.loop.call_later(CHECK_INTERVAL, self._check)

    def set(self, name: str, raised: bool, detail: str = "") -> None:
        if raised == (name in self.active):
            return
        if raised:
            log.warning("%s alarm set: %s; publishers will be blocked", name, detail)
            self.active.add(name)
            for session in list(self.server.sessions):
                if session.published:
                    session.block(self.reason)
        else:
            log.warning("%s alarm cleared; publishers unblocked", name)
            self.active.discard(name)
            if not self.active:
                for session in list(self.server.sessions):
                    session.unblock()

    def on_publish(self, session: Session) -> None:
        """A connection published while an alarm is on: block it too."""
        if self.active:
            session.block(self.reason)

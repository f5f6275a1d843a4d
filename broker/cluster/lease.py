"""A held etcd lease: granted, kept alive in the background, revoked on exit.

The holder must assume the lease is gone before etcd does: ``expires_at`` is computed from
when the last successful keepalive was *sent* (the TTL counts from when etcd received it,
which is later), and ``lost`` is set once ``expires_at - margin`` passes without a renewal,
when etcd says the lease is gone, or on ``revoke``. A leader stops serving when ``lost`` is set.

Invariants:
- ``lost`` is never cleared: a lost lease is not reused, a new one is granted.
- Keepalives are sent every ``ttl / 3`` seconds; after a failed one, every ``retry`` seconds
  (another endpoint may answer) until the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .etcd import EtcdClient, EtcdError, LeaseNotFound

log = logging.getLogger(__name__)


class Lease:
    def __init__(self, client: EtcdClient, lease_id: int, ttl: int, granted_at: float,
                 margin: float, retry: float = 0.2) -> None:
        self.client = client
        self.id = lease_id
        self.ttl = ttl
        self.margin = margin
        self.retry = retry
        self.expires_at = granted_at + ttl
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def grant(cls, client: EtcdClient, ttl: int, margin: float | None = None) -> Lease:
        """Grant a lease of ``ttl`` seconds and start keeping it alive. ``margin`` (default a
        fifth of the TTL, at most 1 s): how long before the computed expiry it counts as lost."""
        loop = asyncio.get_running_loop()
        sent = loop.time()
        lease_id, granted = await client.lease_grant(ttl)
        lease = cls(client, lease_id, granted, sent,
                    min(1.0, granted / 5) if margin is None else margin)
        lease._task = loop.create_task(lease._keepalive(), name=f"etcd lease {lease_id:x}")
        return lease

    @property
    def remaining(self) -> float:
        """Seconds until the lease counts as lost (negative once it does)."""
        return self.expires_at - self.margin - asyncio.get_running_loop().time()

    def _lose(self, reason: str) -> None:
        if not self.lost.is_set():
            self.lost_reason = reason
            log.warning("etcd lease %x lost: %s", self.id, reason)
            self.lost.set()

    async def _keepalive(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.lost.is_set():
            deadline = self.expires_at - self.margin
            wait = min(self.ttl / 3, deadline - loop.time())
            if wait > 0:
                try:
                    await asyncio.wait_for(self.lost.wait(), wait)
                    return
                except TimeoutError:
                    pass
            while not self.lost.is_set():
                if loop.time() >= self.expires_at - self.margin:
                    self._lose("no keepalive answered before the deadline")
                    return
                sent = loop.time()
                try:
                    ttl = await asyncio.wait_for(self.client.lease_keepalive(self.id),
                                                 max(0.05, self.expires_at - self.margin - sent))
                except LeaseNotFound:
                    self._lose("etcd says it expired")
                    return
                except (TimeoutError, EtcdError) as exc:
                    log.debug("keepalive of lease %x failed: %s", self.id, exc)
                    await asyncio.sleep(self.retry)
                    continue
                self.expires_at = sent + ttl
                break

    async def revoke(self) -> None:
        """Give the lease up now (its keys go with it); best effort when etcd is away."""
        self._lose("revoked")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(EtcdError):
            await self.client.lease_revoke(self.id)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.revoke()

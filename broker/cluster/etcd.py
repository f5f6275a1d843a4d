"""An asyncio client of etcd's v3 JSON gateway (etcd 3.4+): kv, txn, leases, watch, election.

Every call is ``POST /v3/<service>/<method>`` with a JSON body; keys and values travel as
base64, 64-bit integers as decimal strings, and zero values are left out of answers (a missing
``succeeded`` is False, a missing ``count`` is 0).

Invariants:
- Errors are mapped to exceptions, never returned: an error answer raises ``EtcdError`` (or a
  subclass chosen by etcd's message); no endpoint reachable raises ``EtcdUnavailable``.
- Requests go to the endpoint that answered last; on a transport failure the next endpoint is
  tried, each endpoint at most once per request. Only transport failures are retried: a
  request that reached etcd and got an error is not repeated (a txn must not apply twice).
- ``watch`` is an async iterator over batches of events; it resumes after a broken stream from
  the revision after the last one seen, so no event is lost or seen twice (unless etcd
  compacted that history: ``Compacted``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

Key = str | bytes


class EtcdError(Exception):
    """etcd answered with an error."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class EtcdUnavailable(EtcdError):
    """No endpoint could be reached, or etcd cannot serve now (no raft leader)."""


class LeaseNotFound(EtcdError):
    """The lease expired or was revoked."""


class NoElectionLeader(EtcdError):
    """The election has no leader."""


class Compacted(EtcdError):
    """A watch asked for history that etcd has compacted away."""


def _b(key: Key) -> bytes:
    return key.encode() if isinstance(key, str) else key


def _enc(data: Key) -> str:
    return base64.b64encode(_b(data)).decode("ascii")


def _dec(data: str | None) -> bytes:
    return base64.b64decode(data) if data else b""


def prefix_end(prefix: Key) -> bytes:
    """The ``range_end`` that makes a range cover every key starting with ``prefix``."""
    raw = bytearray(_b(prefix))
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"  # every key


def _key_range(key: Key, prefix: bool) -> dict[str, Any]:
    """The request body naming ``key``, or with ``prefix`` every key starting with it."""
    body = {"key": _enc(key)}
    if prefix:
        body["range_end"] = _enc(prefix_end(key))
    return body


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> KeyValue:
        return cls(_dec(raw.get("key")), _dec(raw.get("value")),
                   int(raw.get("create_revision", 0)), int(raw.get("mod_revision", 0)),
                   int(raw.get("version", 0)), int(raw.get("lease", 0)))


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]
    count: int
    revision: int


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # "PUT" or "DELETE"
    kv: KeyValue
    prev_kv: KeyValue | None


# ---- txn building blocks ------------------------------------------------------------------
_OPS = {"==": "EQUAL", "!=": "NOT_EQUAL", ">": "GREATER", "<": "LESS"}
_TARGETS = {"version": "VERSION", "create_revision": "CREATE", "mod_revision": "MOD",
            "value": "VALUE", "lease": "LEASE"}


@dataclass(frozen=True, slots=True)
class Compare:
    """One txn condition: ``target`` of ``key`` ``op`` ``operand``; e.g.
    ``Compare("leader", "create_revision", "==", 42)``. A missing key has every revision 0."""

    key: Key
    target: str
    op: str
    operand: int | Key

    def json(self) -> dict[str, Any]:
        field = _TARGETS[self.target]
        body: dict[str, Any] = {"key": _enc(self.key), "target": field, "result": _OPS[self.op]}
        if self.target == "value":
            assert not isinstance(self.operand, int)
            body["value"] = _enc(self.operand)
        else:
            body[self.target] = str(self.operand)
        return body

    @classmethod
    def missing(cls, key: Key) -> Compare:
        return cls(key, "create_revision", "==", 0)

    @classmethod
    def exists(cls, key: Key) -> Compare:
        return cls(key, "create_revision", ">", 0)


@dataclass(frozen=True, slots=True)
class Put:
    key: Key
    value: Key
    lease: int = 0

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": _enc(self.key), "value": _enc(self.value)}
        if self.lease:
            body["lease"] = str(self.lease)
        return body

    def json(self) -> dict[str, Any]:
        return {"request_put": self.body()}


@dataclass(frozen=True, slots=True)
class Get:
    key: Key
    prefix: bool = False

    def json(self) -> dict[str, Any]:
        return {"request_range": _key_range(self.key, self.prefix)}


@dataclass(frozen=True, slots=True)
class Delete:
    key: Key
    prefix: bool = False

    def json(self) -> dict[str, Any]:
        return {"request_delete_range": _key_range(self.key, self.prefix)}


Op = Put | Get | Delete


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[dict[str, Any]]

    def kvs(self, index: int) -> list[KeyValue]:
        """The key-values of the ``index``-th response when it was a range."""
        rng = self.responses[index].get("response_range", {})
        return [KeyValue.parse(kv) for kv in rng.get("kvs", [])]


def _raise_for(body: Any, status: int) -> None:
    """Turn an error answer (``{"error": ..., "code": n}`` or ``{"error": {...}}``) into the
    matching exception."""
    if not isinstance(body, dict):
        raise EtcdError(f"unexpected answer from etcd (HTTP {status}): {body!r:.200}")
    error = body.get("error")
    if isinstance(error, dict):
        message, code = str(error.get("message", error)), int(error.get("grpc_code", 0) or 0)
    elif error is not None:
        message, code = str(body.get("message") or error), int(body.get("code", 0) or 0)
    elif int(body.get("code", 0) or 0) > 0:
        message, code = str(body.get("message", "")), int(body["code"])
    else:
        if status >= 400:
            raise EtcdError(f"HTTP {status} from etcd: {body!r:.200}")
        return
    if "lease not found" in message:
        raise LeaseNotFound(message, code)
    if message == "election: no leader":
        raise NoElectionLeader(message, code)
    if "compacted" in message:
        raise Compacted(message, code)
    if "no leader" in message or code == 14:  # UNAVAILABLE
        raise EtcdUnavailable(message, code)
    raise EtcdError(message, code)


class EtcdClient:
    def __init__(self, endpoints: str | Sequence[str], timeout: float = 5.0) -> None:
        """``endpoints``: ``"http://127.0.0.1:2379"``, ``"host:2379,host2:2379"`` or a list."""
        if isinstance(endpoints, str):
            endpoints = endpoints.split(",")
        self.endpoints = [e.strip() if "://" in e else f"http://{e.strip()}"
                          for e in endpoints if e.strip()]
        if not self.endpoints:
            raise ValueError("no etcd endpoint given")
        self.timeout = timeout
        self._current = 0
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=False))
        return self._session

    # ---- transport -------------------------------------------------------------------
    async def _open(self, path: str, body: dict[str, Any],
                    timeout: float | None) -> aiohttp.ClientResponse:
        """POST to the current endpoint, moving on to the next ones on transport errors."""
        errors = []
        count = len(self.endpoints)
        for attempt in range(count):
            index = (self._current + attempt) % count
            url = self.endpoints[index] + path
            try:
                response = await self._http().post(
                    url, data=json.dumps(body).encode(),
                    headers={"content-type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=timeout, connect=min(self.timeout, 2.0)))
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                errors.append(f"{self.endpoints[index]}: {exc or type(exc).__name__}")
                continue
            self._current = index
            return response
        raise EtcdUnavailable("no etcd endpoint answered: " + "; ".join(errors))

    async def call(self, path: str, body: dict[str, Any],
                   timeout: float | None = -1.0) -> dict[str, Any]:
        """One request, one JSON answer; ``timeout=None`` waits forever (campaign)."""
        response = await self._open(path, body, self.timeout if timeout == -1.0 else timeout)
        try:
            raw = await response.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise EtcdUnavailable(f"{path}: {exc or type(exc).__name__}") from None
        finally:
            response.release()
        try:
            answer: dict[str, Any] = json.loads(raw)
        except ValueError:
            raise EtcdError(f"{path}: HTTP {response.status}, not JSON: {raw[:200]!r}") from None
        if "result" in answer and isinstance(answer["result"], dict) and len(answer) == 1:
            answer = answer["result"]  # one message of a streaming method (lease keepalive)
        _raise_for(answer, response.status)
        return answer

    async def stream(self, path: str,
                     body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """The messages of a streaming method, one JSON object per line, until it ends."""
        response = await self._open(path, body, None)
        try:
            if response.status != 200:
                raw = await response.read()
                try:
                    _raise_for(json.loads(raw), response.status)
                except ValueError:
                    pass
                raise EtcdError(f"{path}: HTTP {response.status}")
            buf = b""
            async for chunk in response.content.iter_any():
                buf += chunk
                while (cut := buf.find(b"\n")) >= 0:
                    line, buf = buf[:cut], buf[cut + 1:]
                    if not line.strip():
                        continue
                    message = json.loads(line)
                    _raise_for(message, 200)
                    yield message.get("result", message)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise EtcdUnavailable(f"{path} stream broke: {exc or type(exc).__name__}") from None
        finally:
            response.close()

    async def health(self) -> bool:
        try:
            await self.call("/v3/maintenance/status", {})
        except EtcdError:
            return False
        return True

    # ---- kv --------------------------------------------------------------------------
    async def range(self, key: Key, prefix: bool = False, limit: int = 0,
                    sort_by_create: bool = False, revision: int = 0) -> RangeResult:
        body = _key_range(key, prefix)
        if limit:
            body["limit"] = str(limit)
        if sort_by_create:
            body["sort_order"] = "ASCEND"
            body["sort_target"] = "CREATE"
        if revision:
            body["revision"] = str(revision)
        answer = await self.call("/v3/kv/range", body)
        return RangeResult([KeyValue.parse(kv) for kv in answer.get("kvs", [])],
                           int(answer.get("count", 0)),
                           int(answer.get("header", {}).get("revision", 0)))

    async def get(self, key: Key) -> KeyValue | None:
        kvs = (await self.range(key)).kvs
        return kvs[0] if kvs else None

    async def put(self, key: Key, value: Key, lease: int = 0) -> int:
        """Store ``value``; return the new revision. LeaseNotFound for a dead lease."""
        answer = await self.call("/v3/kv/put", Put(key, value, lease).body())
        return int(answer.get("header", {}).get("revision", 0))

    async def delete(self, key: Key, prefix: bool = False) -> int:
        """Delete ``key`` (or every key under the prefix); return how many were deleted."""
        answer = await self.call("/v3/kv/deleterange", _key_range(key, prefix))
        return int(answer.get("deleted", 0))

    async def txn(self, compare: Sequence[Compare], success: Sequence[Op] = (),
                  failure: Sequence[Op] = ()) -> TxnResult:
        """If every ``compare`` holds, apply ``success``, else ``failure``; atomically."""
        answer = await self.call("/v3/kv/txn", {
            "compare": [c.json() for c in compare],
            "success": [op.json() for op in success],
            "failure": [op.json() for op in failure]})
        return TxnResult(bool(answer.get("succeeded", False)),
                         int(answer.get("header", {}).get("revision", 0)),
                         list(answer.get("responses", [])))

    # ---- leases ----------------------------------------------------------------------
    async def lease_grant(self, ttl: int, lease_id: int = 0) -> tuple[int, int]:
        """A new lease: (id, granted TTL in seconds)."""
        body: dict[str, Any] = {"TTL": str(ttl)}
        if lease_id:
            body["ID"] = str(lease_id)
        answer = await self.call("/v3/lease/grant", body)
        return int(answer["ID"]), int(answer["TTL"])

    async def lease_keepalive(self, lease_id: int) -> int:
        """Renew the lease once; return its TTL. LeaseNotFound when it has expired."""
        answer = await self.call("/v3/lease/keepalive", {"ID": str(lease_id)})
        ttl = int(answer.get("TTL", 0))
        if ttl <= 0:
            raise LeaseNotFound(f"lease {lease_id:x} expired")
        return ttl

    async def lease_ttl(self, lease_id: int) -> int:
        """Seconds left on the lease, -1 when it is gone."""
        answer = await self.call("/v3/lease/timetolive", {"ID": str(lease_id)})
        return int(answer.get("TTL", -1))

    async def lease_revoke(self, lease_id: int) -> None:
        """Revoke the lease (its keys are deleted); an already gone lease is fine."""
        try:
            await self.call("/v3/lease/revoke", {"ID": str(lease_id)})
        except LeaseNotFound:
            pass

    # ---- watch -----------------------------------------------------------------------
    async def watch(self, key: Key, prefix: bool = False, start_revision: int = 0,
                    prev_kv: bool = False,
                    retry_delay: float = 0.2) -> AsyncGenerator[tuple[int, list[WatchEvent]], None]:
        """(revision, events) for every change of ``key`` (or under the prefix) from
        ``start_revision`` (0: from now on), resuming across broken streams."""
        next_rev = start_revision
        while True:
            body = _key_range(key, prefix)
            if next_rev:
                body["start_revision"] = str(next_rev)
            if prev_kv:
                body["prev_kv"] = True
            try:
                async for message in self.stream("/v3/watch", {"create_request": body}):
                    if message.get("canceled"):
                        reason = message.get("cancel_reason", "watch canceled")
                        compact = int(message.get("compact_revision", 0))
                        if compact:
                            raise Compacted(f"{reason} (compacted at {compact})")
                        raise EtcdError(reason)
                    revision = int(message.get("header", {}).get("revision", 0))
                    if message.get("created") and not next_rev:
                        next_rev = revision + 1  # a resumed stream starts after this
                    raw_events = message.get("events", [])
                    if not raw_events:
                        continue
                    events = [WatchEvent(e.get("type", "PUT"), KeyValue.parse(e["kv"]),
                                         KeyValue.parse(e["prev_kv"]) if "prev_kv" in e
                                         else None) for e in raw_events]
                    next_rev = events[-1].kv.mod_revision + 1
                    yield revision, events
            except EtcdUnavailable as exc:
                log.debug("watch of %r broke (%s); resuming at %d", key, exc, next_rev)
            await asyncio.sleep(retry_delay)

    # ---- election (etcd's v3election service) ----------------------------------------
    async def campaign(self, name: Key, value: Key, lease_id: int) -> dict[str, Any]:
        """Block until elected; etcd's leader key ``{name, key, rev, lease}`` (decoded)."""
        answer = await self.call("/v3/election/campaign", {
            "name": _enc(name), "value": _enc(value), "lease": str(lease_id)}, timeout=None)
        leader = answer["leader"]
        return {"name": _dec(leader.get("name")), "key": _dec(leader.get("key")),
                "rev": int(leader.get("rev", 0)), "lease": int(leader.get("lease", 0))}

    async def resign(self, name: Key, key: Key, rev: int, lease_id: int) -> None:
        await self.call("/v3/election/resign", {"leader": {
            "name": _enc(name), "key": _enc(key), "rev": str(rev), "lease": str(lease_id)}})

    async def election_leader(self, name: Key) -> KeyValue | None:
        try:
            answer = await self.call("/v3/election/leader", {"name": _enc(name)})
        except NoElectionLeader:
            return None
        return KeyValue.parse(answer["kv"]) if "kv" in answer else None

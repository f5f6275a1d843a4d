"""Broker objects -> the JSON RabbitMQ 3.13's management API returns for them.

Field names and nesting copy rabbit_mgmt_format; values that have no meaning here (Erlang
garbage-collection figures, reductions, paging) are present with neutral values so that tools
reading them keep working.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, cast  # Any: JSON values

from broker.amqp.ack_timeout import timeout_of
from broker.core import definitions_json
from broker.core.naming import cluster_name, node_name
from broker.core.stats import (
    MESSAGE_FIELDS,
    Counters,
    channel_totals,
    queue_totals,
    session_totals,
)
from broker.core.stream_queue import StreamQueue
from protocol import properties as props_codec

if TYPE_CHECKING:
    from broker.amqp.channel import Channel
    from broker.amqp.session import Session
    from broker.core.exchanges import Binding, Exchange
    from broker.core.queue import Consumer, Queue
    from broker.core.server import Server

    from .sampler import Details

EXCHANGE_TYPES = [
    {"name": "direct", "description": "AMQP direct exchange, as per the AMQP specification",
     "enabled": True},
    {"name": "fanout", "description": "AMQP fanout exchange, as per the AMQP specification",
     "enabled": True},
    {"name": "headers", "description": "AMQP headers exchange, as per the AMQP specification",
     "enabled": True},
    {"name": "topic", "description": "AMQP topic exchange, as per the AMQP specification",
     "enabled": True},
    {"name": "x-consistent-hash", "description": "Consistent Hashing Exchange",
     "enabled": True},
    {"name": "x-delayed-message", "description": "Delayed Message Exchange.",
     "enabled": True},
    {"name": "x-message-deduplication", "description": "Message Deduplication Exchange.",
     "enabled": True},
]
DISK_STATS = ("disk_reads", "disk_writes")


__all__ = ["cluster_name", "node_name"]


def rate(value: float = 0.0) -> dict:
    return {"rate": round(value, 1)}


def with_details(values: dict[str, int], rates: dict[str, float] | None = None) -> dict:
    out: dict = {}
    for key, value in values.items():
        out[key] = value
        out[f"{key}_details"] = rate((rates or {}).get(key, 0.0))
    return out


def message_stats(counters: Counters, details: Details, kind: str, key: Any) -> dict:
    """RabbitMQ's ``message_stats`` object: every count with its ``_details`` (rates and, when
    asked for, samples from the sampler)."""
    values = {name: getattr(counters, name) for name in MESSAGE_FIELDS}
    values["deliver_get"] = (counters.deliver + counters.deliver_no_ack + counters.get
                             + counters.get_no_ack)
    out = details.fill({}, kind, key, "msg", values)
    return with_details(dict.fromkeys(DISK_STATS, 0), None) | out


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


# ---- queues ----------------------------------------------------------------------------
# What a queue costs in RAM, estimated without walking it: the queue object with its dicts and
# store bookkeeping, plus per message held in RAM an Entry, its Message, the routing key and
# properties objects and a deque slot (~220 bytes measured with tracemalloc) and its body.
QUEUE_BASE_BYTES = 2048
ENTRY_BYTES = 224


def queue_memory(q: Queue) -> int:
    store = q.store
    count = len(store)
    in_ram = getattr(store, "in_memory", count)
    average_body = store.bytes / count if count else 0
    return QUEUE_BASE_BYTES + int(in_ram * (ENTRY_BYTES + average_body))


def residency(q: Queue, ready: int, pending: int) -> dict:
    """Where the messages are (RAM or paged out) and how many are persistent, from the store's
    counters only: walking the store would read a paged-out backlog from disk, on the event
    loop, for every queue the UI lists every few seconds. As in RabbitMQ only a durable
    queue's messages count as persistent; the store keeps no count of transient ones in a
    durable queue, so they are counted as persistent too. RAM bytes are estimated from the
    average message size."""
    store = q.store
    total = store.bytes
    in_ram = max(0, min(getattr(store, "in_memory", ready), ready))
    ram_bytes = total * in_ram // ready if ready else 0
    durable = q.durable
    return {"message_bytes_paged_out": total - ram_bytes,
            "message_bytes_persistent": total if durable else 0,
            "message_bytes_ram": ram_bytes, "messages_paged_out": ready - in_ram,
            "messages_persistent": ready + pending if durable else 0,
            "messages_ram": in_ram + pending, "messages_ready_ram": in_ram,
            "messages_unacknowledged_ram": pending}


def queue(server: Server, q: Queue, unacked: dict[Any, int], details: Details) -> dict:
    ready = q.message_count
    pending = unacked.get(q, 0)
    policy = q.policy_name
    owner = q.exclusive_owner
    consumers = q.consumers
    return {
        "arguments": dict(q.arguments), "auto_delete": q.auto_delete,
        "consumer_capacity": 1.0 if consumers else 0, "consumer_utilisation":
            1.0 if consumers else 0, "consumers": len(consumers), "durable": q.durable,
        "effective_policy_definition": dict(q.policy), "exclusive": q.exclusive,
        "exclusive_consumer_tag": next((c.tag for c in consumers if c.exclusive), None),
        "garbage_collection": {"fullsweep_after": 65535, "max_heap_size": 0,
                               "min_bin_vheap_size": 46422, "min_heap_size": 233,
                               "minor_gcs": 0},
        "head_message_timestamp": None, "idle_since": iso(server.started_at),
        "memory": queue_memory(q), "message_bytes": q.store.bytes,
        "message_bytes_ready": q.store.bytes, "message_bytes_unacknowledged": 0,
        **residency(q, ready, pending),
        **details.fill({}, "queue", q, "lengths",
                       {"messages": ready + pending, "messages_ready": ready,
                        "messages_unacknowledged": pending}),
        "message_stats": message_stats(queue_totals(q), details, "queue", q),
        "name": q.name, "node": node_name(), "operator_policy": q.operator_policy_name,
        "policy": policy,
        # an exclusive queue's owner is the AMQP session that declared it
        "owner_pid_details": _owner(cast("Session", owner)) if owner is not None else None,
        "recoverable_slaves": None, "reductions": 0, "reductions_details": rate(),
        "single_active_consumer_tag": None, "state": "running", "storage_version": 1,
        "type": q.arguments.get("x-queue-type", "classic"), "vhost": q.vhost,
        **(_stream(q) if isinstance(q, StreamQueue) else {}),
    }


def _stream(q: StreamQueue) -> dict:
    """What RabbitMQ 3.13 adds for a stream (members, readers, committed offset, segments),
    plus its size on disk and the range of offsets it holds."""
    log = q.log
    node = node_name()
    last = log.last_offset
    return {"members": [node], "online": [node], "leader": node,
            "readers": {node: len(q.consumers)}, "segments": log.segment_count,
            "committed_offset": last if last >= 0 else None,
            "first_offset": log.first_offset if last >= 0 else None,
            "last_offset": last if last >= 0 else None, "message_bytes": log.bytes,
            "message_bytes_ready": log.bytes, "messages_persistent": len(log)}


def _owner(session: Session) -> dict:
    host, _, port = session.peer.rpartition(":")
    return {"name": session.name, "peer_host": host, "peer_port": int(port or 0)}


# ---- exchanges and bindings ------------------------------------------------------------
def exchange(ex: Exchange, details: Details) -> dict:
    out: dict = {"arguments": dict(ex.arguments), "auto_delete": ex.auto_delete,
                 "durable": ex.durable, "internal": ex.internal, "name": ex.name,
                 "type": ex.type_name, "user_who_performed_action": "rmq-internal",
                 "vhost": ex.vhost}
    stats = exchange_stats(ex, details)
    if stats is not None:
        out["message_stats"] = stats
    delayed = getattr(ex, "messages_delayed", None)
    if delayed is not None:  # x-delayed-message: held until their time (the plugin's field)
        out["messages_delayed"] = delayed
    if ex.policy_name:  # present only when a policy applies, as in RabbitMQ
        out["policy"] = ex.policy_name
    return out


def exchange_stats(ex: Exchange, details: Details) -> dict | None:
    """RabbitMQ 3.10's exchange ``message_stats``: absent until the exchange has had a publish;
    ``publish_out`` absent while nothing it received reached a queue (all unroutable)."""
    if not ex.publish_in and not ex.publish_out:
        return None
    values = {"publish_in": ex.publish_in}
    if ex.publish_out:
        values["publish_out"] = ex.publish_out
    return details.fill({}, "exchange", ex, "msg", values)


def properties_key(routing_key: str, arguments: dict) -> str:
    quoted = routing_key.replace("%", "%25").replace("~", "%7E")
    if not arguments:
        return quoted
    import base64
    import zlib

    digest = zlib.crc32(repr(sorted(arguments.items())).encode()).to_bytes(4, "big")
    return f"{quoted}~{base64.urlsafe_b64encode(digest).decode().rstrip('=')}"


def binding(vhost: str, b: Binding) -> dict:
    out = definitions_json.binding_json(vhost, b)
    out["properties_key"] = properties_key(b.routing_key, b.arguments)
    return out


def default_binding(q: Queue) -> dict:
    return {"source": "", "vhost": q.vhost, "destination": q.name,
            "destination_type": "queue", "routing_key": q.name, "arguments": {},
            "properties_key": properties_key(q.name, {})}


# ---- connections, channels, consumers --------------------------------------------------
def connection(s: Session, details: Details) -> dict:
    host, _, port = s.peer.rpartition(":")
    local_port = s.name.rpartition(":")[2]
    m = s.machine
    st = session_totals(s)
    return {
        "auth_mechanism": m.mechanism or "PLAIN", "channel_max": m.channel_max,
        "channels": len(s.channels), "client_properties": m.client_properties,
        "connected_at": s.connected_at, "frame_max": m.frame_max,
        "garbage_collection": {"fullsweep_after": 65535, "max_heap_size": 0,
                               "min_bin_vheap_size": 46422, "min_heap_size": 233,
                               "minor_gcs": 0},
        "host": s.name.rpartition(" -> ")[2].rpartition(":")[0], "name": s.name,
        "node": node_name(), "peer_cert_issuer": None, "peer_cert_subject": None,
        "peer_cert_validity": None, "peer_host": host, "peer_port": int(port or 0),
        "port": int(local_port) if local_port.isdigit() else 0, "protocol": "AMQP 0-9-1",
        "recv_cnt": st.recv_cnt,
        **details.fill({}, "connection", s, "data", {"recv_oct": st.recv_oct,
                                                     "send_oct": st.send_oct}),
        "message_stats": message_stats(st, details, "connection", s),
        "reductions": 0, "reductions_details": rate(), "send_cnt": st.send_cnt,
        "send_pend": 0, "ssl": False,
        "ssl_cipher": None, "ssl_hash": None, "ssl_key_exchange": None, "ssl_protocol": None,
        "state": connection_state(s), "timeout": m.heartbeat,
        "type": "network", "user": s.user, "user_provided_name":
            (m.client_properties or {}).get("connection_name"),
        "user_who_performed_action": s.user,
        "vhost": s.vhost.name if s.vhost is not None else None,
        "pid": s.pid,
    }


def connection_state(s: Session) -> str:
    """RabbitMQ's connection states: ``blocked`` while a resource alarm holds a publisher,
    ``flow`` while its reading is paused for credit (and for a second after), else
    ``running`` (``Session.state``)."""
    return s.state


def channel_name(s: Session, number: int) -> str:
    return f"{s.name} ({number})"


def channel(ch: Channel, details: Details) -> dict:
    s = cast("Session", ch.session)  # a channel's owner is always a Session
    host, _, port = s.peer.rpartition(":")
    return {
        "acks_uncommitted": 0, "confirm": ch.confirms is not None,
        "connection_details": {"name": s.name, "peer_host": host, "peer_port": int(port or 0)},
        "consumer_count": len(ch.consumers),
        "garbage_collection": {"fullsweep_after": 65535, "max_heap_size": 0,
                               "min_bin_vheap_size": 46422, "min_heap_size": 233,
                               "minor_gcs": 0},
        "global_prefetch_count": ch.global_prefetch, "idle_since": iso(s.connected_at / 1000),
        "message_stats": message_stats(channel_totals(ch), details, "channel", ch),
        "messages_unacknowledged": len(ch.unacked),
        "messages_uncommitted": len(ch.tx or ()), "messages_unconfirmed": 0,
        "name": channel_name(s, ch.number), "node": node_name(), "number": ch.number,
        "pending_raft_commands": 0, "prefetch_count": ch.prefetch_count, "reductions": 0,
        "reductions_details": rate(), "state": connection_state(s) if s.blocked else "running",
        "transactional": ch.tx is not None,
        "user": s.user, "user_who_performed_action": s.user, "vhost": s.vhost.name,
    }


def consumer(c: Consumer) -> dict:
    """A consumer on a queue (not the direct reply-to one, which has none)."""
    ch = cast("Channel", c.channel)  # consumers are made by AMQP channels
    assert c.queue is not None
    s = cast("Session", ch.session)
    host, _, port = s.peer.rpartition(":")
    return {
        "ack_required": not c.no_ack, "active": True, "activity_status": "up",
        "arguments": dict(c.arguments),
        "channel_details": {"connection_name": s.name, "name": channel_name(s, ch.number),
                            "node": node_name(), "number": ch.number, "peer_host": host,
                            "peer_port": int(port or 0), "user": s.user},
        "consumer_tag": c.tag, "exclusive": c.exclusive,
        "consumer_timeout": timeout_of(c.queue, c, s.host.config.consumer_timeout) or 0,
        "prefetch_count": c.prefetch, "queue": {"name": c.queue.name, "vhost": c.queue.vhost},
    }


# ---- messages --------------------------------------------------------------------------
PROPERTY_NAMES = (("content_type", "content_type", 0x8000),
                  ("content_encoding", "content_encoding", 0x4000),
                  ("headers", "headers", 0x2000), ("delivery_mode", "delivery_mode", 0x1000),
                  ("priority", "priority", 0x0800), ("correlation_id", "correlation_id", 0x0400),
                  ("reply_to", "reply_to", 0x0200), ("expiration", "expiration", 0x0100),
                  ("message_id", "message_id", 0x0080), ("timestamp", "timestamp", 0x0040),
                  ("message_type", "type", 0x0020), ("user_id", "user_id", 0x0010),
                  ("app_id", "app_id", 0x0008), ("cluster_id", "cluster_id", 0x0004))


def message_properties(raw: bytes) -> dict:
    """The properties the publisher set (by flag bit), named as the management API names
    them."""
    flags = int.from_bytes(raw[:2], "big")
    if not flags:
        return {}
    decoded = props_codec.decode(raw)
    out: dict = {}
    for attr, key, bit in PROPERTY_NAMES:
        if not flags & bit:
            continue
        value = getattr(decoded, attr, None)
        if key == "timestamp" and isinstance(value, datetime.datetime):
            value = int(value.timestamp())
        out[key] = value
    return out


def payload(body: bytes, encoding: str, truncate: int | None) -> tuple[Any, str]:
    import base64

    data = body[:truncate] if truncate is not None else body
    if encoding == "auto":
        try:
            return data.decode("utf-8"), "string"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(data).decode(), "base64"

"""Stream queues over AMQP 0-9-1 (``x-queue-type: stream``), as RabbitMQ 3.13 serves them.

A ``StreamQueue`` is a ``Queue`` whose store is a ``storage.stream.StreamLog``: publishing
appends, consuming reads. Each consumer has its own reader, attached where its
``x-stream-offset`` argument says (``first``, ``last`` = the newest chunk, ``next`` (the
default), an offset, a timestamp, or an interval such as ``1h`` back from now) and optionally
filtered (``x-stream-filter`` values matched against each message's ``x-stream-filter-value``
header; ``x-stream-match-unfiltered`` adds the messages that have none). Every delivery carries
its offset in the ``x-stream-offset`` header, written into the stored properties once, at
append time.

What RabbitMQ answers on a stream, answered here the same way: consumers need a prefetch
(406) and manual acks (540); acks only give the consumer credit back; nack and reject close the
connection (540); basic.get and queue.purge are not implemented (540); TTL, DLX, max-length,
priorities, overflow, single active consumer, x-expires and queue-mode are refused at declare
(406 "of queue type rabbit_stream_queue"); declare-ok and the API count every message in the
stream. Unlike RabbitMQ (whose Bloom filters are per chunk and may let through messages of
other values) filtering here is exact.

Invariants:
- Nothing is ever removed by a consumer; the stream's range only moves with retention.
- Deliveries go out at most ``BUDGET`` per dispatch, round-robin over the consumers with
  credit; a filtered consumer skips at most ``SKIP_BUDGET`` records per dispatch, so a long run
  of other values cannot hold the event loop.
"""

from __future__ import annotations

import calendar
import datetime
import re
import struct
import time
from typing import TYPE_CHECKING, Any

from protocol import properties, tables
from protocol.errors import NotImplemented_, PreconditionFailed
from protocol.tables import Table
from storage.message import Entry, Message

from .dispatch import BUDGET
from .queue import Consumer, Queue

if TYPE_CHECKING:
    from storage.stream import StreamLog, StreamReader

SKIP_BUDGET = 4096
OFFSET_HEADER = "x-stream-offset"
FILTER_HEADER = "x-stream-filter-value"
_AGE = re.compile(r"([0-9]+)([YMDhms])")
_UNIT_SECONDS = {"Y": 365 * 86400, "M": 30 * 86400, "D": 86400, "h": 3600, "m": 60, "s": 1}
# Queue arguments a stream refuses (RabbitMQ: "... of queue type rabbit_stream_queue").
REFUSED_ARGS = ("x-expires", "x-message-ttl", "x-dead-letter-exchange",
                "x-dead-letter-routing-key", "x-max-length", "x-max-priority", "x-overflow",
                "x-queue-mode", "x-single-active-consumer", "x-delivery-limit",
                "x-message-deduplication")
_HEADERS_ONLY = struct.pack(">H", properties.HEADERS)
_OFFSET_KEY = bytes((len(OFFSET_HEADER),)) + OFFSET_HEADER.encode()
_LONG = struct.Struct(">q")


def parse_age(value: str) -> float | None:
    """Seconds of an x-max-age / interval string (``7D``, ``12h``, ``30m``...); None if it is
    not one (a number and one unit of Y M D h m s, greater than zero)."""
    match = _AGE.fullmatch(value)
    if match is None or int(match.group(1)) <= 0:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def with_offset(props: bytes, offset: int) -> bytes:
    """The properties with the ``x-stream-offset`` header (a long) set to ``offset``."""
    if props[:2] == b"\x00\x00":
        item = _OFFSET_KEY + b"l" + _LONG.pack(offset)
        return _HEADERS_ONLY + struct.pack(">I", len(item)) + item
    fields = properties.split(props)
    items = [(k, v) for k, v in tables.split_table(properties.headers_body(fields))
             if k != OFFSET_HEADER]
    items.append((OFFSET_HEADER, tables.long_value(offset)))
    properties.set_headers_body(fields, tables.join_table(items))
    return properties.join(fields)


def _where(queue: Queue) -> str:
    return f"queue '{queue.name}' in vhost '{queue.vhost}'"


def check_declare(name: str, vhost: str, arguments: Table) -> None:
    """Refuse the queue arguments a stream does not support."""
    for key in REFUSED_ARGS:
        if key in arguments:
            raise PreconditionFailed(f"invalid arg '{key}' for queue '{name}' in vhost "
                                     f"'{vhost}' of queue type rabbit_stream_queue")


def check_nack(unacked: dict[int, tuple[Entry, Queue, Any]], tag: int, multiple: bool) -> None:
    """nack / reject of a delivery from a stream: 540, as RabbitMQ answers."""
    if multiple:
        items = [v for t, v in unacked.items() if tag == 0 or t <= tag]
    else:
        item = unacked.get(tag)
        items = [item] if item is not None else []
    for _entry, queue, _consumer in items:
        if isinstance(queue, StreamQueue):
            raise NotImplemented_("basic.nack and basic.reject not supported by stream queues "
                                  + _where(queue))


class _Reader:
    """One consumer's position and filter."""

    __slots__ = ("reader", "filters", "match_unfiltered")

    def __init__(self, reader: StreamReader, filters: frozenset[str] | None,
                 match_unfiltered: bool) -> None:
        self.reader = reader
        self.filters = filters
        self.match_unfiltered = match_unfiltered

    def wants(self, props: bytes) -> bool:
        value = properties.headers(props).get(FILTER_HEADER) \
            if properties.has_headers(props) else None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if value is None:
            return self.match_unfiltered
        assert self.filters is not None
        return value in self.filters


def _timestamp_of(value: datetime.datetime) -> float:
    if value.tzinfo is None:  # AMQP timestamps are UTC seconds
        return float(calendar.timegm(value.utctimetuple()))
    return value.timestamp()


class StreamQueue(Queue):
    logs_everything = True  # transient messages are stored too: their confirms wait for disk

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._readers: dict[Consumer, _Reader] = {}
        self._raw: dict[str, bytes] = {}  # exchange / routing key -> wire shortstr, reused
        super().__init__(*args, **kwargs)

    def _shortstr(self, text: str) -> bytes:
        raw = self._raw.get(text)
        if raw is None:
            if len(self._raw) > 4096:
                self._raw.clear()
            data = text.encode()
            raw = self._raw[text] = bytes((len(data),)) + data
        return raw

    @property
    def log(self) -> StreamLog:
        return self.store  # type: ignore[return-value]

    # ---- settings ----------------------------------------------------------------------
    def refresh_settings(self) -> None:
        super().refresh_settings()
        self.message_ttl = self.max_length = self.expires = self.delivery_limit = None
        self._limited = False
        self.single_active = False
        age = self.setting("max-age")
        segment = self.setting("stream-max-segment-size-bytes")
        self.log.set_retention(self.max_bytes, parse_age(age) if isinstance(age, str) else None,
                               segment if isinstance(segment, int) and segment > 0 else None)

    # ---- messages ----------------------------------------------------------------------
    def publish(self, message: Message) -> bool:
        log = self.log
        log.append(message.exchange_raw, message.routing_key_raw,
                   with_offset(message.properties, log.next_offset), message.body,
                   message.persistent)
        if not self._scheduled and not self.deleted:
            self._scheduled = True
            if self.ctx is None:
                self.run_scheduled()
            else:
                self.ctx.schedule(self)
        return True

    def run_scheduled(self) -> None:
        self._scheduled = False
        self.log.end_chunk()  # what was appended in one loop turn is one chunk
        self.dispatch()

    def get(self) -> Entry | None:
        raise NotImplemented_("basic.get not supported by stream queues " + _where(self))

    def purge(self) -> int:
        raise NotImplemented_("queue.purge not supported by stream queues " + _where(self))

    def requeue(self, entry: Entry, nacked: bool = False) -> None:
        """A closing channel or basic.recover gives its deliveries back: nothing to do (the
        stream still holds them; consumers move on by offset)."""

    def ack(self, entry: Entry) -> None:
        """An ack only returns credit to the consumer (the channel does that)."""

    def reject(self, entry: Entry) -> None:
        """Refused before it gets here (``check_nack``)."""

    def check_expiry(self) -> None:
        """No TTL on a stream."""

    def cancel_timers(self) -> None:
        super().cancel_timers()
        for state in self._readers.values():  # the queue is going: close the readers
            state.reader.close()
        self._readers.clear()

    # ---- consumers ---------------------------------------------------------------------
    def check_consumer(self, prefetch: int, global_prefetch: int, no_ack: bool,
                       arguments: Table) -> None:
        """RabbitMQ's refusals of a stream consumer, in its order."""
        if not prefetch:
            raise PreconditionFailed(
                f"consumer prefetch count is not set for '{_where(self)}'")
        if no_ack:
            raise NotImplemented_("automatic acknowledgement not supported by stream queues "
                                  + _where(self))
        if global_prefetch:
            raise NotImplemented_(f"{_where(self)} does not support global qos")
        if "x-priority" in arguments:
            raise PreconditionFailed(f"invalid arg 'x-priority' for {_where(self)} of queue "
                                     "type rabbit_stream_queue")
        self._start_offset(arguments.get(OFFSET_HEADER))

    def _start_offset(self, spec: Any) -> int:
        log = self.log
        if spec is None or spec == "next":
            return log.next_offset
        if spec == "first":
            return log.first_offset
        if spec == "last":
            chunk = log.last_chunk
            return chunk if log.first_offset <= chunk < log.next_offset else log.next_offset
        if isinstance(spec, bool):
            pass
        elif isinstance(spec, int):
            return min(max(spec, log.first_offset), log.next_offset)
        elif isinstance(spec, datetime.datetime):
            return log.offset_at(_timestamp_of(spec))
        elif isinstance(spec, str):
            seconds = parse_age(spec)
            if seconds is not None:
                return log.offset_at(time.time() - seconds)
        raise PreconditionFailed(f"invalid arg '{OFFSET_HEADER}' for {_where(self)}: "
                                 f"{spec!r} is not first, last, next, an offset, a timestamp "
                                 "or an interval")

    def add_consumer(self, consumer: Consumer) -> None:
        args = consumer.arguments
        raw = args.get("x-stream-filter")
        values = [raw] if isinstance(raw, str) else \
            [v for v in raw if isinstance(v, str)] if isinstance(raw, list) else None
        filters = frozenset(values) if values is not None else None
        unfiltered = args.get("x-stream-match-unfiltered") is True if filters is not None \
            else True
        self._readers[consumer] = _Reader(
            self.log.reader(self._start_offset(args.get(OFFSET_HEADER))), filters, unfiltered)
        super().add_consumer(consumer)

    def remove_consumer(self, consumer: Consumer) -> None:
        state = self._readers.pop(consumer, None)
        if state is not None:
            state.reader.close()
        super().remove_consumer(consumer)

    def wake(self) -> None:
        if self._scheduled or self.deleted or not self.consumers:
            return
        self._scheduled = True
        if self.ctx is None:
            self.run_scheduled()
        else:
            self.ctx.schedule(self)

    def dispatch(self) -> bool:
        """Round-robin over the consumers with credit, one record each per pass. False: a
        stream keeps its records, nothing for credit flow to count (``Queue.dispatch``)."""
        if self.deleted:
            return False
        budget = BUDGET
        skips = SKIP_BUDGET
        more = False
        while budget > 0:
            progress = False
            for consumer in list(self.consumers):
                if not consumer.has_credit():
                    continue
                state = self._readers.get(consumer)
                if state is None:
                    continue
                entry, skipped = self._next(state, skips)
                skips -= skipped
                if entry is None:
                    if skips <= 0:
                        more = True
                    continue
                consumer.channel.deliver(consumer, entry)
                budget -= 1
                progress = True
                if budget <= 0:
                    more = True
                    break
            if not progress:
                break
        if more:
            self.wake()
        return False

    def _next(self, state: _Reader, skips: int) -> tuple[Entry | None, int]:
        """The consumer's next record as an entry, and how many it skipped to get there."""
        reader = state.reader
        filtered = state.filters is not None
        skipped = 0
        while True:
            record = reader.next()
            if record is None:
                return None, skipped
            if filtered and not state.wants(record.properties):
                skipped += 1
                if skipped >= skips:
                    return None, skipped
                continue
            message = Message(record.exchange, record.routing_key, record.properties,
                              record.body, record.persistent, self._shortstr(record.exchange),
                              self._shortstr(record.routing_key))
            return Entry(record.offset, message), skipped

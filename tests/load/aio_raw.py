"""A small asyncio AMQP 0-9-1 client for the load and soak tests: cheap enough to hold a
thousand connections in one process, strict enough to notice a broker that misbehaves.

Frames are built and read with pamqp. One reader task per connection dispatches: replies to
``rpc`` calls (per channel), publisher confirms (per channel, ``multiple`` honoured), and
deliveries (basic.deliver + header + body, assembled) into a per-channel asyncio.Queue.
A channel.close or connection.close from the broker fails every waiter with BrokerClosed.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from typing import Any

from pamqp import commands as C
from pamqp import frame as pframe
from pamqp import header as pheader

HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_MAX = 131072
_head = struct.Struct(">BHI")


class BrokerClosed(Exception):
    def __init__(self, what: str, code: int, text: str) -> None:
        super().__init__(f"{what} {code} {text}")
        self.code = code


@dataclass
class Delivery:
    channel: int
    delivery_tag: int
    redelivered: bool
    routing_key: str
    body: bytes = b""
    properties: Any = None
    to_replies: bool = False


@dataclass
class ChannelState:
    number: int
    replies: asyncio.Queue = field(default_factory=asyncio.Queue)
    deliveries: asyncio.Queue = field(default_factory=asyncio.Queue)
    confirming: bool = False
    next_seq: int = 1
    pending: dict[int, asyncio.Future] = field(default_factory=dict)
    closed: BaseException | None = None


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.channels: dict[int, ChannelState] = {0: ChannelState(0)}
        self.closed: BaseException | None = None
        self.frame_max = FRAME_MAX
        self._task: asyncio.Task | None = None
        self._partial: dict[int, tuple[Delivery, int, list[bytes]]] = {}
        self.close_ok = asyncio.Event()

    # ---- connect / close ----------------------------------------------------------------
    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1", timeout: float = 30.0,
                      user: str = "guest", password: str = "guest") -> Client:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        client = cls(reader, writer)
        try:
            await asyncio.wait_for(client._handshake(user, password), timeout)
        except BaseException:
            writer.close()
            raise
        return client

    async def _handshake(self, user: str, password: str) -> None:
        self.writer.write(HEADER)
        start = await self._read_method()
        assert isinstance(start, C.Connection.Start), start
        self.send(0, C.Connection.StartOk(
            client_properties={"product": "burrowmq-load-test",
                               "capabilities": {"publisher_confirms": True,
                                                "basic.nack": True,
                                                "consumer_cancel_notify": True}},
            mechanism="PLAIN", response=f"\0{user}\0{password}", locale="en_US"))
        tune = await self._read_method()
        assert isinstance(tune, C.Connection.Tune), tune
        self.frame_max = min(tune.frame_max or FRAME_MAX, FRAME_MAX)
        self.send(0, C.Connection.TuneOk(tune.channel_max, self.frame_max, 0))
        self.send(0, C.Connection.Open("/"))
        ok = await self._read_method()
        assert isinstance(ok, C.Connection.OpenOk), ok
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_frame(self) -> tuple[int, int, bytes]:
        head = await self.reader.readexactly(7)
        ftype, channel, size = _head.unpack(head)
        rest = await self.reader.readexactly(size + 1)
        if rest[-1] != 0xCE:
            raise AssertionError(f"bad frame end from the broker: type {ftype}")
        return ftype, channel, head + rest

    async def _read_method(self) -> Any:
        while True:
            ftype, channel, data = await self._read_frame()
            if ftype == 8:
                continue
            _, _, value = pframe.unmarshal(data)
            if isinstance(value, C.Connection.Close):
                raise BrokerClosed("connection.close", value.reply_code, value.reply_text)
            return value

    async def close(self, timeout: float = 10.0) -> None:
        if self.closed is None:
            try:
                self.send(0, C.Connection.Close(200, "bye", 0, 0))
                await asyncio.wait_for(self.close_ok.wait(), timeout)
            except (TimeoutError, OSError, ConnectionError):
                pass
        self.abort()

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.writer.close()
        self._fail_all(ConnectionError("closed by the client"))

    # ---- output ---------------------------------------------------------------------------
    def send(self, channel: int, method: Any) -> None:
        if self.closed is not None:
            raise self.closed
        self.writer.write(pframe.marshal(method, channel))

    async def rpc(self, channel: int, method: Any, *expect: type) -> Any:
        state = self.channels[channel]
        self.send(channel, method)
        reply = await state.replies.get()
        if isinstance(reply, BaseException):
            raise reply
        if expect and not isinstance(reply, expect):
            raise AssertionError(f"{method.name}: expected {expect}, got {reply!r}")
        return reply

    async def channel(self, number: int = 1, *, confirms: bool = False,
                      prefetch: int = 0) -> ChannelState:
        state = self.channels[number] = ChannelState(number)
        await self.rpc(number, C.Channel.Open(), C.Channel.OpenOk)
        if confirms:
            await self.rpc(number, C.Confirm.Select(), C.Confirm.SelectOk)
            state.confirming = True
        if prefetch:
            await self.rpc(number, C.Basic.Qos(prefetch_count=prefetch), C.Basic.QosOk)
        return state

    def publish(self, channel: int, exchange: str, routing_key: str, body: bytes,
                properties: C.Basic.Properties | None = None) -> asyncio.Future | None:
        """Write one message; with confirms, a future resolving to True (ack) or False
        (nack)."""
        state = self.channels[channel]
        if state.closed is not None:
            raise state.closed
        parts = [pframe.marshal(C.Basic.Publish(exchange=exchange, routing_key=routing_key),
                                channel),
                 pframe.marshal(pheader.ContentHeader(0, len(body),
                                                      properties or C.Basic.Properties()),
                                channel)]
        limit = self.frame_max - 8
        for start in range(0, len(body), limit):
            chunk = body[start:start + limit]
            parts.append(_head.pack(3, channel, len(chunk)) + chunk + b"\xce")
        if self.closed is not None:
            raise self.closed
        self.writer.write(b"".join(parts))
        if not state.confirming:
            return None
        fut = asyncio.get_running_loop().create_future()
        state.pending[state.next_seq] = fut
        state.next_seq += 1
        return fut

    def ack(self, channel: int, delivery_tag: int, multiple: bool = False) -> None:
        self.send(channel, C.Basic.Ack(delivery_tag, multiple))

    async def drain(self) -> None:
        await self.writer.drain()

    # ---- input ----------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        try:
            while True:
                ftype, channel, data = await self._read_frame()
                if ftype == 1:
                    self._on_method(channel, data)
                elif ftype == 2:
                    self._on_header(channel, data)
                elif ftype == 3:
                    self._on_body(channel, data)
        except asyncio.CancelledError:
            raise
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            self._fail_all(ConnectionError(f"connection lost: {exc!r}"))
        except BaseException as exc:  # noqa: BLE001 - surfaced to every waiter
            self._fail_all(exc)

    def _on_method(self, channel: int, data: bytes) -> None:
        _, _, method = pframe.unmarshal(data)
        state = self.channels.get(channel)
        if isinstance(method, C.Basic.Deliver | C.Basic.GetOk):
            # a get-ok's message goes to the rpc replies, a delivery to the deliveries
            delivery = Delivery(channel, method.delivery_tag, method.redelivered,
                                method.routing_key)
            delivery.to_replies = isinstance(method, C.Basic.GetOk)
            self._partial[channel] = (delivery, -1, [])
        elif isinstance(method, C.Basic.Ack | C.Basic.Nack) and state is not None:
            self._settle(state, method.delivery_tag, method.multiple,
                         isinstance(method, C.Basic.Ack))
        elif isinstance(method, C.Channel.Close):
            self.writer.write(pframe.marshal(C.Channel.CloseOk(), channel))
            if state is not None:
                self._fail_channel(state, BrokerClosed("channel.close", method.reply_code,
                                                       method.reply_text))
        elif isinstance(method, C.Connection.Close):
            self.writer.write(pframe.marshal(C.Connection.CloseOk(), 0))
            self._fail_all(BrokerClosed("connection.close", method.reply_code,
                                        method.reply_text))
        elif isinstance(method, C.Connection.CloseOk):
            self.close_ok.set()
            self._fail_all(ConnectionError("closed"))
        elif isinstance(method, C.Basic.Cancel):
            if state is not None:
                self._fail_channel(state, BrokerClosed("basic.cancel", 0, method.consumer_tag))
        elif isinstance(method, C.Connection.Blocked | C.Connection.Unblocked):
            pass
        elif state is not None:
            state.replies.put_nowait(method)

    def _on_header(self, channel: int, data: bytes) -> None:
        delivery, _, parts = self._partial[channel]
        content = pheader.ContentHeader()
        content.unmarshal(data[7:-1])
        delivery.properties = content.properties
        if content.body_size == 0:
            del self._partial[channel]
            self._deliver(delivery)
        else:
            self._partial[channel] = (delivery, content.body_size, parts)

    def _on_body(self, channel: int, data: bytes) -> None:
        delivery, size, parts = self._partial[channel]
        parts.append(data[7:-1])
        if sum(len(p) for p in parts) >= size:
            delivery.body = b"".join(parts)
            del self._partial[channel]
            self._deliver(delivery)

    def _deliver(self, delivery: Delivery) -> None:
        state = self.channels[delivery.channel]
        if delivery.to_replies:
            state.replies.put_nowait(delivery)
        else:
            state.deliveries.put_nowait(delivery)

    def _settle(self, state: ChannelState, tag: int, multiple: bool, ok: bool) -> None:
        if multiple:
            for seq in [s for s in state.pending if s <= tag]:
                fut = state.pending.pop(seq)
                if not fut.done():
                    fut.set_result(ok)
        else:
            fut = state.pending.pop(tag, None)
            if fut is not None and not fut.done():
                fut.set_result(ok)

    def _fail_channel(self, state: ChannelState, exc: BaseException) -> None:
        state.closed = exc
        for fut in state.pending.values():
            if not fut.done():
                fut.set_exception(exc)
        state.pending.clear()
        state.replies.put_nowait(exc)
        state.deliveries.put_nowait(exc)

    def _fail_all(self, exc: BaseException) -> None:
        if self.closed is None:
            self.closed = exc
        for state in self.channels.values():
            if state.closed is None:
                self._fail_channel(state, exc)


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def raise_nofile_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards ``wanted`` (at most the hard limit)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]

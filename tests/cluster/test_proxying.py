"""Clients on any node, in one process over real sockets: the PROXY v1 header, the follower's
splice, the leader's acceptor (header taken from peers only), and HTTP forwarding with signed
requests between nodes."""

from __future__ import annotations

import asyncio
import time

import pytest

from broker.cluster import httpfwd, proxy


def test_header_round_trip() -> None:
    line = proxy.header(("10.0.0.7", 51234), ("10.0.0.1", 5672))
    assert line == b"PROXY TCP4 10.0.0.7 10.0.0.1 51234 5672\r\n"
    assert proxy.parse(line + b"AMQP") == (("10.0.0.7", 51234), len(line))
    six = proxy.header(("::1", 4000), ("::1", 5672))
    assert six == b"PROXY TCP6 ::1 ::1 4000 5672\r\n"
    assert proxy.parse(six) == (("::1", 4000), len(six))
    mixed = proxy.header(("10.0.0.7", 1), ("::1", 2))
    assert mixed == b"PROXY TCP6 ::ffff:a00:7 ::1 1 2\r\n"  # one family per header
    assert proxy.header("", None) == b"PROXY UNKNOWN\r\n"  # a Unix socket's client
    assert proxy.parse(b"PROXY UNKNOWN\r\nGET /") == (None, 15)
    assert proxy.parse(b"PROXY TCP4 1.2.3.4") is None  # incomplete: wait for more


@pytest.mark.parametrize("bad", [b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
                                 b"PROXY TCP4 ::1 ::1 1 2\r\n",
                                 b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
                                 b"PROXY SCTP 1.2.3.4 5.6.7.8 1 2\r\n",
                                 b"PROXY TCP4 " + b"1" * 120])
def test_bad_headers_are_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        proxy.parse(bad)


class Recorder(asyncio.Protocol):
    """The real protocol behind the acceptor: what it saw."""

    seen: list[Recorder] = []

    def __init__(self) -> None:
        self.peer = None
        self.data = b""
        self.transport: asyncio.Transport | None = None
        Recorder.seen.append(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")

    def data_received(self, data: bytes) -> None:
        self.data += data
        assert self.transport is not None
        self.transport.write(b"echo:" + data)


async def serve(trusted: bool) -> tuple[asyncio.Server, int]:
    Recorder.seen = []
    server = await asyncio.get_running_loop().create_server(
        lambda: proxy.Acceptor(Recorder, lambda host: trusted), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_acceptor_takes_the_header_from_a_peer() -> None:
    server, port = await serve(trusted=True)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"PROXY TCP4 192.0.2.9 127.0.0.1 40000 5672\r\nAMQP")
    assert await reader.readexactly(9) == b"echo:AMQP"
    assert Recorder.seen[0].peer == ("192.0.2.9", 40000)
    assert Recorder.seen[0].data == b"AMQP"
    writer.close()
    # a peer's own client, without a header, goes through untouched
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"AMQP\x00\x00\x09\x01")
    assert await reader.readexactly(13) == b"echo:AMQP\x00\x00\x09\x01"
    assert Recorder.seen[1].peer[0] == "127.0.0.1"
    writer.close()
    server.close()


async def test_acceptor_ignores_headers_from_anyone_else() -> None:
    server, port = await serve(trusted=False)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"PROXY TCP4 192.0.2.9 127.0.0.1 40000 5672\r\n")
    await reader.readexactly(5)
    assert Recorder.seen[0].peer[0] == "127.0.0.1"  # not the claimed address
    assert Recorder.seen[0].data.startswith(b"PROXY")  # the protocol refuses it as garbage
    writer.close()
    server.close()


async def test_acceptor_drops_a_malformed_header_from_a_peer() -> None:
    server, port = await serve(trusted=True)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\n")
    assert await reader.read(100) == b""
    assert Recorder.seen == []
    writer.close()
    server.close()


async def test_splice_reaches_the_leader_with_the_clients_address() -> None:
    leader, leader_port = await serve(trusted=True)
    splices: set[proxy.Splice] = set()
    ready = asyncio.Event()

    async def resolve() -> tuple[str, int]:
        await ready.wait()  # an election in progress: the client waits, its bytes are held
        return "127.0.0.1", leader_port

    follower = await asyncio.get_running_loop().create_server(
        lambda: proxy.Splice(resolve, splices), "127.0.0.1", 0)
    port = follower.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello")
    await asyncio.sleep(0.05)
    ready.set()
    assert await reader.readexactly(10) == b"echo:hello"
    client = writer.get_extra_info("sockname")
    assert Recorder.seen[0].peer == client
    writer.write(b" again")
    assert await reader.readexactly(11) == b"echo: again"
    assert proxy.close_all(splices) == 1  # the leader changed: the client reconnects
    assert await reader.read(100) == b""
    writer.close()
    follower.close()
    leader.close()


async def test_splice_without_a_leader_closes_the_client() -> None:
    async def resolve() -> None:
        return None

    splices: set[proxy.Splice] = set()
    follower = await asyncio.get_running_loop().create_server(
        lambda: proxy.Splice(resolve, splices), "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1",
                                                   follower.sockets[0].getsockname()[1])
    assert await reader.read(100) == b""
    assert not splices
    writer.close()
    follower.close()


def test_signed_requests() -> None:
    secret = b"cluster secret"
    value = httpfwd.sign(secret, "rabbit@node2", "POST", "/api/burrowmq/stop_app")
    assert httpfwd.verify(secret, value, "POST", "/api/burrowmq/stop_app") == "rabbit@node2"
    assert httpfwd.verify(secret, value, "POST", "/api/burrowmq/reset") is None
    assert httpfwd.verify(b"other", value, "POST", "/api/burrowmq/stop_app") is None
    node, _, mac = value.split(" ")
    stale = f"{node} {int(time.time()) - 3600} {mac}"
    assert httpfwd.verify(secret, stale, "POST", "/api/burrowmq/stop_app") is None
    assert httpfwd.verify(secret, "garbage", "GET", "/") is None


async def test_forward_passes_the_answer_back() -> None:
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        seen.append(await reader.readexactly(4))
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nX-Other: 1\r\n\r\n{\"ok\": true}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    status, headers, body = await httpfwd.forward(
        ("127.0.0.1", port), "PUT", "/api/users/x?y=1", {"Authorization": "Basic eA==",
                                                       "Connection": "keep-alive"},
        b"body", ("198.51.100.4", 3333), ("127.0.0.1", 15672))
    assert (status, body) == (201, b'{"ok": true}')
    assert ("X-Other", "1") in headers and all(k != "Connection" for k, _ in headers)
    head = seen[0].decode()
    assert head.startswith("PROXY TCP4 198.51.100.4 127.0.0.1 3333 15672\r\n"
                           "PUT /api/users/x?y=1 HTTP/1.0\r\n")
    assert "Authorization: Basic eA==" in head and "keep-alive" not in head
    assert seen[1] == b"body"
    server.close()
    with pytest.raises(httpfwd.ForwardError):
        await httpfwd.forward(("127.0.0.1", port), "GET", "/", {}, b"")

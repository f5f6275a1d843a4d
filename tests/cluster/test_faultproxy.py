"""The fault-injecting proxy does what the fault tests rely on: pass, delay, blackhole, drop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from faultproxy import FaultProxy, ThreadedFaultProxy


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, int]]:
    writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield "127.0.0.1", server.sockets[0].getsockname()[1]
    server.close()
    for writer in writers:
        writer.transport.abort()
    await asyncio.sleep(0.01)  # the handlers see their connections end


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    data: bytes, timeout: float = 2.0) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), timeout)


async def test_pass_delay_blackhole_drop(echo: tuple[str, int]) -> None:
    proxy = FaultProxy(echo)
    await proxy.start()
    reader, writer = await asyncio.open_connection(*proxy.address)
    assert await roundtrip(reader, writer, b"hello") == b"hello"

    proxy.delay = 0.2
    started = asyncio.get_running_loop().time()
    assert await roundtrip(reader, writer, b"slow") == b"slow"
    assert asyncio.get_running_loop().time() - started >= 0.4  # both directions
    proxy.delay = 0

    proxy.mode = "blackhole"
    with pytest.raises(TimeoutError):
        await roundtrip(reader, writer, b"into the void", timeout=0.3)
    assert not writer.is_closing()  # no error, only silence
    proxy.mode = "pass"
    assert await roundtrip(reader, writer, b"back") == b"back"

    proxy.mode = "drop"
    assert await asyncio.wait_for(reader.read(), 2) == b""  # the connection was reset
    writer.close()
    reader, writer = await asyncio.open_connection(*proxy.address)
    assert await asyncio.wait_for(reader.read(), 2) == b""  # and new ones are refused
    writer.close()
    proxy.mode = "pass"
    reader, writer = await asyncio.open_connection(*proxy.address)
    assert await roundtrip(reader, writer, b"again") == b"again"
    writer.close()
    assert proxy.connections == 2  # the refused one never reached the target
    await proxy.stop()
    with pytest.raises(ValueError):
        proxy.mode = "flaky"


async def test_threaded_proxy_for_blocking_clients(echo: tuple[str, int]) -> None:
    proxy = ThreadedFaultProxy(echo)
    address = proxy.start()

    def talk(timeout: float) -> bytes:
        with socket.create_connection(address, timeout=timeout) as s:
            s.sendall(b"ping")
            return s.recv(4)

    assert await asyncio.to_thread(talk, 2.0) == b"ping"
    proxy.set_mode("blackhole")
    with pytest.raises(TimeoutError):
        await asyncio.to_thread(talk, 0.3)
    proxy.stop()

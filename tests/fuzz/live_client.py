"""One bad connection against a live broker: a raw socket client that does the handshake up to a
given stage, sends one malformed input and classifies the broker's answer (Plan -> Outcome).

A bad connection that gets no answer within QUIET seconds is waiting for the rest of a frame:
it then sends FILLER (frame_max + 9 bytes of 0x01), which completes any pending frame and is
itself an oversize frame, so the broker must answer with 501.
"""

from __future__ import annotations

import concurrent.futures
import logging
import socket
import struct
import time
from dataclasses import dataclass, field

from fuzz_wire import ALLOWED_CLOSE_CODES, HEADER, connection_open, method_frame, start_ok, tune_ok
from pamqp import commands as C
from pamqp import frame as pframe

FRAME_MAX = 131072
FILLER = b"\x01" * (FRAME_MAX + 9)
QUIET = 0.6            # no answer for this long: the broker waits for more bytes
ANSWER_DEADLINE = 10.0  # after the input (and filler): a close or EOF must have come
CLOSE_DEADLINE = 35.0   # after our close-ok: EOF (RabbitMQ's 30 s close-ok timeout + slack)


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")



# ---- one bad connection ------------------------------------------------------------------

@dataclass
class Plan:
    scenario: str
    stage: str            # none | header | start_ok | tuned | open | channel
    payload: bytes
    allowed: frozenset    # outcome kinds: header, eof, close:<code>, close:5xx, clean
    fill_when_quiet: bool = True


@dataclass
class Outcome:
    scenario: str
    kind: str
    detail: str = ""
    elapsed: float = 0.0
    channel_codes: list = field(default_factory=list)
    replies: list = field(default_factory=list)

    def ok(self, allowed: frozenset) -> bool:
        if self.kind in allowed:
            return True
        if self.kind.startswith("close:") and "close:5xx" in allowed:
            return int(self.kind[6:]) in ALLOWED_CLOSE_CODES
        return False


@dataclass
class OtherFrame:
    ftype: int

    @property
    def name(self) -> str:
        return f"frame-type-{self.ftype}"


class BrokerHung(AssertionError):
    pass


class BadClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _fill(self, timeout: float) -> bool:
        """Read more; False on timeout. Sets eof on close or reset."""
        self.sock.settimeout(max(0.001, timeout))
        try:
            chunk = self.sock.recv(1 << 16)
        except TimeoutError:
            return False
        except OSError:
            chunk = b""
        if not chunk:
            self.eof = True
            return True
        self.buf += chunk
        return True

    def frame(self, timeout: float):  # type: ignore[no-untyped-def]
        """(channel, frame) | "eof" | "timeout" | ("raw", bytes) for a header answer."""
        deadline = time.monotonic() + timeout
        while True:
            if self.buf[:4] == b"AMQP" and len(self.buf) >= 8:
                raw, self.buf = self.buf[:8], self.buf[8:]
                return ("raw", raw)
            if len(self.buf) >= 7 and self.buf[:4] != b"AMQP":
                size = struct.unpack_from(">I", self.buf, 3)[0]
                if len(self.buf) >= size + 8:
                    data, self.buf = self.buf[:size + 8], self.buf[size + 8:]
                    assert data[-1] == 0xCE, f"bad frame end from the server: {data!r}"
                    if data[0] != 1:  # content and heartbeats: not decoded (deep headers)
                        return struct.unpack_from(">H", data, 1)[0], OtherFrame(data[0])
                    _, channel, value = pframe.unmarshal(data)
                    return channel, value
            if self.eof:
                assert not self.buf, f"server output ends in a partial frame: {self.buf!r}"
                return "eof"
            left = deadline - time.monotonic()
            if left <= 0 or not self._fill(left):
                return "timeout"

    def expect(self, kind: type, timeout: float = 5.0):  # type: ignore[no-untyped-def]
        got = self.frame(timeout)
        if not (isinstance(got, tuple) and isinstance(got[1], kind)):
            raise AssertionError(f"handshake: expected {kind.__name__}, got {got!r}")
        return got[1]

    def close(self) -> None:
        self.sock.close()


def handshake(client: BadClient, stage: str) -> None:
    if stage == "none":
        return
    client.send(HEADER)
    client.expect(C.Connection.Start)
    if stage == "header":
        return
    client.send(start_ok(client_properties={"product": "live-fuzz"}))
    client.expect(C.Connection.Tune)
    if stage == "start_ok":
        return
    client.send(tune_ok(2047, FRAME_MAX, 0))
    if stage == "tuned":
        return
    client.send(connection_open("/"))
    client.expect(C.Connection.OpenOk)
    if stage == "open":
        return
    client.send(method_frame(1, C.Channel.Open()))
    client.expect(C.Channel.OpenOk)


def run_bad_connection(port: int, plan: Plan) -> Outcome:
    start = time.monotonic()
    out = Outcome(plan.scenario, "?")
    client = BadClient(port)
    try:
        handshake(client, plan.stage)
        client.send(plan.payload)
        filled = False
        deadline = time.monotonic() + ANSWER_DEADLINE
        raw = b""
        while True:
            wait = QUIET if (plan.fill_when_quiet and not filled) else deadline - time.monotonic()
            got = client.frame(max(0.01, wait))
            if got == "timeout":
                if plan.fill_when_quiet and not filled:
                    filled = True
                    client.send(FILLER)
                    deadline = time.monotonic() + ANSWER_DEADLINE
                    continue
                raise BrokerHung(f"{plan.scenario}: no connection.close and no EOF within "
                                 f"{ANSWER_DEADLINE}s of the input (the broker answered "
                                 f"{out.replies or 'nothing'})")
            if got == "eof":
                out.kind = "header" if raw == HEADER else "eof"
                break
            if got[0] == "raw":
                raw += got[1]
                continue
            channel, value = got
            out.replies.append(value.name)
            if isinstance(value, C.Connection.Close):
                out.kind = f"close:{value.reply_code}"
                out.detail = value.reply_text
                client.send(method_frame(0, C.Connection.CloseOk()))
                end = client.frame(CLOSE_DEADLINE)
                while isinstance(end, tuple):  # frames queued before the close
                    end = client.frame(CLOSE_DEADLINE)
                if end != "eof":
                    raise BrokerHung(f"{plan.scenario}: socket still open {CLOSE_DEADLINE}s "
                                     f"after connection.close-ok ({out.detail})")
                break
            if isinstance(value, C.Channel.Close):
                out.channel_codes.append(value.reply_code)
                client.send(method_frame(channel, C.Channel.CloseOk()))
            if not plan.fill_when_quiet and "clean" in plan.allowed:
                # a normal reply or a channel error: the connection lives; close it ourselves
                client.send(method_frame(0, C.Connection.Close(200, "bye", 0, 0)))
                end = client.frame(5.0)
                while isinstance(end, tuple) and not isinstance(end[1], C.Connection.CloseOk):
                    if isinstance(end[1], C.Connection.Close):
                        client.send(method_frame(0, C.Connection.CloseOk()))
                        out.kind = f"close:{end[1].reply_code}"
                        break
                    end = client.frame(5.0)
                else:
                    assert isinstance(end, tuple), f"no close-ok for our close: {end!r}"
                    out.kind = "clean"
                if out.kind == "clean":
                    # as RabbitMQ, the broker waits for the client to close its side first
                    client.sock.shutdown(socket.SHUT_WR)
                    assert client.frame(5.0) == "eof", "socket open after close-ok"
                break
    finally:
        client.close()
    out.elapsed = time.monotonic() - start
    return out



# ---- several bad connections at once, and what the broker logged ---------------------------

def run_plans(port: int, plans: list[Plan]) -> list[str]:
    failures = []
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = {pool.submit(run_bad_connection, port, p): p for p in plans}
        for fut in concurrent.futures.as_completed(futures):
            plan = futures[fut]
            try:
                out = fut.result()
            except Exception as exc:  # noqa: BLE001
                failures.append(f"{plan.scenario}: {type(exc).__name__}: {exc}")
                continue
            if not out.ok(plan.allowed):
                failures.append(f"{plan.scenario}: got {out.kind} {out.detail!r}, expected "
                                f"{sorted(plan.allowed)}")
    return sorted(failures)


def internal_errors(caplog) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]

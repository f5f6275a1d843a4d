"""SIGTERM: clients get 320 CONNECTION_FORCED, the process exits 0; RabbitMQ-style log lines."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pika
import pytest
from ops_helpers import connect


def read_log(handle) -> str:  # type: ignore[no-untyped-def]
    return Path(handle._extra["log"]).read_text()  # noqa: SLF001


def test_sigterm_forces_connections_closed_and_exits_zero(burrowmq_process) -> None:  # type: ignore  # noqa: E501
    handle = burrowmq_process
    polite = connect(handle.url)
    local = polite._impl._transport._sock.getsockname()[1]  # noqa: SLF001
    polite.close()
    conn = connect(handle.url)
    conn.channel()
    os.kill(handle._process.pid, signal.SIGTERM)  # noqa: SLF001
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            conn.process_data_events(0.1)
    assert (info.value.reply_code, info.value.reply_text) == (
        320, "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'")
    assert handle._process.wait(10) == 0  # noqa: SLF001
    log = read_log(handle)
    name = rf"127\.0\.0\.1:{local} -> 127\.0\.0\.1:{handle.port}"
    pid = re.search(rf"accepting AMQP connection (<0\.\d+\.0>) \({name}\)", log)
    assert pid, log
    assert f"connection {pid.group(1)} (127.0.0.1:{local} -> 127.0.0.1:{handle.port}): user " \
        "'guest' authenticated and granted access to vhost '/'" in log
    assert f"closing AMQP connection {pid.group(1)} (127.0.0.1:{local} -> " \
        f"127.0.0.1:{handle.port}, vhost: '/', user: 'guest')" in log
    assert "received SIGTERM, shutting down" in log

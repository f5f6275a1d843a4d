"""SIGTERM: clients get 320 CONNECTION_FORCED, the process exits 0; RabbitMQ-style log lines."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
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


# ---- SIGTERM during start-up --------------------------------------------------------------

def _spawn(data_dir: Path) -> subprocess.Popen:
    from broker.ops.pytest_plugin import free_port

    cmd = [sys.executable, "-m", "broker", "--host", "127.0.0.1", "--port", "0",
           "--data-dir", str(data_dir), "--management-port", str(free_port()),
           "--prometheus-port", str(free_port())]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)


# When the signal comes: at once (before the signal handlers, or while the data directory is
# opened), right after the AMQP listener opened (the services are importing aiohttp then), or
# after a few more log lines.
@pytest.mark.parametrize("after", [None, "started TCP listener", "started TCP listener",
                                   "started TCP listener", "HTTP (non-TLS) listener",
                                   "Prometheus metrics"])
def test_sigterm_during_start_up_stops_in_order(tmp_path: Path, after: str | None) -> None:
    """Start and stop are ordered: once SIGTERM is logged nothing opens (no listener, no
    control socket, no "startup complete"), everything that opened is closed, exit 0."""
    data_dir = tmp_path / "data"
    proc = _spawn(data_dir)
    assert proc.stdout is not None
    lines: list[str] = []
    if after is not None:
        for line in proc.stdout:
            lines.append(line)
            if after in line:
                break
    proc.send_signal(signal.SIGTERM)
    try:
        rest, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    lines += rest.splitlines()
    log = "".join(line.rstrip("\n") + "\n" for line in lines)
    if after is None and proc.returncode == -signal.SIGTERM:
        assert "received SIGTERM" not in log  # killed before the handlers were installed
        return
    assert proc.returncode == 0, log
    assert "Traceback" not in log and "[error]" not in log, log
    assert not (data_dir / "ctl.sock").exists(), log
    received = next(i for i, line in enumerate(lines) if "received SIGTERM" in line)
    later = lines[received + 1:]
    opened = ("listener", "control channel for the CLI", "Server startup complete")
    assert not [line for line in later if any(word in line for word in opened)], log
    assert "broker stopped" in later[-1], log

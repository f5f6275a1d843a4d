"""Fixtures of the integration tests (the broker fixtures are in tests/conftest.py).

Every test runs under a SIGALRM deadline, 20 s unless its module or the test says otherwise
with ``@pytest.mark.deadline(seconds)`` (``deadline(None)``: none, for tests that bound every
wait themselves).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pika
import pytest
from durability_helpers import BrokerPool
from pika_helpers import connect

DEFAULT_DEADLINE = 20


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"deadline(seconds): fail the test after this many seconds "
                   f"(default {DEFAULT_DEADLINE}; None: no deadline)")


@pytest.fixture(autouse=True)
def _deadline(request: pytest.FixtureRequest) -> Iterator[None]:
    """A hang fails the test instead of stalling the run."""
    marker = request.node.get_closest_marker("deadline")
    seconds = marker.args[0] if marker is not None else DEFAULT_DEADLINE
    if seconds is None:
        yield
        return

    def boom(signum, frame):  # type: ignore[no-untyped-def]  # noqa: ARG001
        raise TimeoutError(f"test exceeded its {seconds} s deadline")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def conn(broker) -> Iterator[pika.BlockingConnection]:  # type: ignore[no-untyped-def]
    c = connect(broker)
    yield c
    if c.is_open:
        c.close()


@pytest.fixture
def ch(conn):  # type: ignore[no-untyped-def]
    return conn.channel()


@pytest.fixture
def brokers(tmp_path) -> Iterator[BrokerPool]:  # type: ignore[no-untyped-def]
    """Broker subprocesses (durability tests); SIGKILLed at the end of the test."""
    pool = BrokerPool(tmp_path)
    yield pool
    pool.close()

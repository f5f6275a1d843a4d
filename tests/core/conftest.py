"""Fixtures of the core unit tests: a Server on a fake clock, with in-memory stores."""

from __future__ import annotations

import pytest
from core_fakes import FakeChannel, FakeScheduler, make_server

from broker.core.server import Server
from broker.core.vhost import VirtualHost


@pytest.fixture
def server_clock() -> tuple[Server, FakeScheduler]:
    return make_server()


@pytest.fixture
def clock(server_clock: tuple[Server, FakeScheduler]) -> FakeScheduler:
    return server_clock[1]


@pytest.fixture
def vhost(server_clock: tuple[Server, FakeScheduler]) -> VirtualHost:
    return server_clock[0].vhosts["/"]


@pytest.fixture
def channel() -> FakeChannel:
    return FakeChannel()

"""Fixtures of the cluster tests: real etcd processes and clients of them.

``etcd`` is one member shared by the whole session (tests keep apart by their own cluster
name); ``etcd3`` is a fresh three-member etcd for tests that kill members, ``etcd1`` a fresh
one-member one for a test that wipes it. etcd missing skips the tests locally, but fails them
in CI (CI=true installs etcd-server).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from brokers import BrokerCluster
from etcd_server import ETCD, EtcdCluster, start_cluster

from broker.cluster.etcd import EtcdClient
from broker.cluster.keyspace import ClusterKeys


def _need_etcd() -> None:
    if ETCD is None:
        if os.environ.get("CI") == "true":
            pytest.fail("etcd is not installed (CI installs etcd-server)")
        pytest.skip("etcd is not installed (apt-get install etcd-server)")


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    _need_etcd()
    cluster = start_cluster(tmp_path_factory.mktemp("etcd"), 1)
    yield cluster
    cluster.stop()


@pytest.fixture
def etcd3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    _need_etcd()
    cluster = start_cluster(tmp_path_factory.mktemp("etcd3"), 3)
    yield cluster
    cluster.stop()


@pytest.fixture
def etcd1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A fresh one-member etcd of the test's own (a test may wipe it)."""
    _need_etcd()
    cluster = start_cluster(tmp_path_factory.mktemp("etcd1"), 1)
    yield cluster
    cluster.stop()


_names = itertools.count(1)


@pytest.fixture
def cluster_name() -> str:
    return f"c{os.getpid()}-{next(_names)}"


@pytest.fixture
async def client(etcd: EtcdCluster) -> AsyncIterator[EtcdClient]:
    async with EtcdClient(etcd.endpoints, timeout=3.0) as c:
        yield c


@pytest.fixture
async def keys(client: EtcdClient, cluster_name: str) -> ClusterKeys:
    return ClusterKeys(client, cluster_name)


@pytest.fixture
def brokers(etcd: EtcdCluster, tmp_path: Path, cluster_name: str) -> Iterator[BrokerCluster]:
    """Three nodes of a new cluster on the shared etcd (not started: ``brokers.start()``);
    every process is stopped by PID afterwards. A failing test prints the nodes' logs."""
    cluster = BrokerCluster(tmp_path, etcd.endpoints, 3, cluster=cluster_name)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster3(brokers: BrokerCluster) -> BrokerCluster:
    """Three started nodes: a leader and two in-sync followers."""
    brokers.start()
    return brokers


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for name in ("brokers", "cluster3"):
            cluster = getattr(item, "funcargs", {}).get(name)
            if isinstance(cluster, BrokerCluster):
                report.sections.append(("cluster nodes' logs", cluster.logs(6000)))
                break

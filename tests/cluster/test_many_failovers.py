"""The checker over many leader kills (``slow``: ``pytest -m slow tests/cluster``).

Two publishers and a consumer run the whole time, reconnecting through any node; the leader is
SIGKILLed ``KILLS`` times (default 20, ``CLUSTER_KILLS`` to change), each time restarted once
a new leader confirms again. Prints the totals: kills, failover times (kill to the first
confirm through the new leader), published / confirmed / consumed / duplicates.
"""

from __future__ import annotations

import os
import statistics
import time

import pytest
from brokers import BrokerCluster
from test_failover import finish, urls
from workload import Workload

KILLS = int(os.environ.get("CLUSTER_KILLS", "20"))


@pytest.mark.slow
def test_checker_over_many_leader_kills(cluster3: BrokerCluster) -> None:
    work = Workload(urls(cluster3), publishers=2).start()
    work.wait_confirmed(200)
    failovers = []
    for kill in range(KILLS):
        leader = cluster3.wait_stable(60)
        before = work.history.confirmed()
        started = time.monotonic()
        leader.kill()
        while work.history.confirmed() <= before + 1:  # a confirm after the kill
            assert time.monotonic() - started < 60, f"kill {kill + 1}: no confirm for 60 s"
            time.sleep(0.02)
        failovers.append(time.monotonic() - started)
        leader.start()
        work.wait_confirmed(100, timeout=60)
    finish(work, cluster3)
    result = work.history.check()
    print(f"{KILLS} leader kills; failover (kill to first confirm) median "
          f"{statistics.median(failovers):.2f} s, max {max(failovers):.2f} s; "
          f"{result.summary()}")

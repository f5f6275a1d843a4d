"""A follower in a process of its own, for tests that SIGKILL it:
``python follower_main.py ROOT NODE SECRET_HEX HOST PORT``."""

from __future__ import annotations

import asyncio
import logging
import sys

from broker.cluster.follower import ReplicationClient


async def main(root: str, node: str, secret: str, host: str, port: str) -> None:
    client = ReplicationClient(root, node, bytes.fromhex(secret), (host, int(port)))
    await client.follow()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(*sys.argv[1:6]))

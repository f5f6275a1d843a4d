"""Cluster mode's node-level parts: what needs no broker internals.

- ``etcd``, ``lease``, ``election``: a small asyncio client of etcd's v3 JSON gateway (kv, txn,
  leases with keepalive, watch, leader election whose revision is the epoch);
- ``keyspace``: membership, the fenced in-sync replica set (ISR) and the cluster secret;
- ``wire``, ``files``, ``leader``, ``follower``, ``applier``, ``isr``: replication of a data
  directory from the leader to followers (full sync, then streamed changes fed by storage's
  ``ReplicationSink`` hook) and the "acked by every ISR follower" awaitable.

This package may import ``storage`` and the standard library (and aiohttp); nothing else of
``broker``: the node wires it in.
"""

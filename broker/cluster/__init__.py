"""Cluster mode's node-level parts: what needs no broker internals.

- ``etcd``, ``lease``, ``election``: a small asyncio client of etcd's v3 JSON gateway (kv, txn,
  leases with keepalive, watch, leader election whose revision is the epoch);
- ``keyspace``: membership, the fenced in-sync replica set (ISR) and the cluster secret;
- ``wire``, ``files``, ``leader``, ``follower``, ``applier``: replication of a data directory
  from the leader to followers (full sync, then streamed changes fed by storage's
  ``ReplicationSink`` hook); ``isr``: the "acked by every ISR follower" awaitable.

How a node plugs them in:

- leader: ``lease = await Lease.grant(client, ttl)``; ``won = await
  keys.election.campaign(member_name, lease)`` (``won.epoch`` is the fencing token); then
  ``tracker = IsrTracker(node, keys.isr_writer(won, node), min_insync=..., ack_deadline=...,
  initial=<previous ISR>)`` and ``server = ReplicationServer(data_dir, node, won.epoch,
  await keys.secret(), tracker, host=..., port=...)``; set ``DataDir.sink = server`` and pass
  ``sink=server`` to durable ``SegmentQueueStore``s and ``definitions_file.save``. A confirm waits
  for the local fsync (``GroupCommit.when_durable``), then ``await
  server.wait_replicated(server.position, timeout)`` (taken after the fsync callback: the flush
  that fed the sink came first); ``NotReplicated`` -> nack, ``Fenced`` -> deposed: stop
  serving. Also stop serving when ``lease.lost`` is set.
- follower: observe ``keys.election.observe()``; for a leader other than itself, run
  ``ReplicationClient(data_dir, node, secret, address).start()`` (``stop()`` on change).
  ``client.synced`` is set once its copy is whole; the leader adds it to the ISR by itself.

This package may import ``storage`` and the standard library (and aiohttp); nothing else of
``broker``: the node wires it in.
"""

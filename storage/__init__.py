"""Message storage behind one interface (``store.QueueStore``).

``store.MemoryQueueStore`` keeps everything in RAM; ``message_store.SegmentQueueStore`` (every
queue of the broker, durable or not) keeps a small window in RAM, bounded by a ``window.Window``
budget, and the rest in an append-only segment log (``record``, ``segment``, ``acks``,
``cursor``, ``recovery``; requeued messages past the budget as positions, ``requeue``), with
fsync batched by ``sync.GroupCommit``. ``priority`` composes one store per priority level.
``definitions_file`` persists the durable topology document and ``datadir`` owns the data
directory. ``message`` holds the value types (Message, Entry) that every layer above shares.
The bottom layer: nothing here imports broker/ or protocol/.
"""

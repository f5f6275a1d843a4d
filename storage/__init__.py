"""Message storage behind one interface (``store.QueueStore``).

``store.MemoryQueueStore`` keeps everything in RAM; ``message_store.SegmentQueueStore`` keeps a
small window in RAM and the rest in an append-only segment log (``record``, ``segment``,
``acks``, ``cursor``, ``recovery``), with fsync batched by ``sync.GroupCommit``.
``definitions_file`` persists the durable topology document and ``datadir`` owns the data
directory. ``message`` holds the value types (Message, Entry) that every layer above shares.
The bottom layer: nothing here imports broker/ or protocol/.
"""

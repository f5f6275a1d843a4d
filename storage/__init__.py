"""Message storage behind one interface (``QueueStore``); in-memory now, disk segments next."""

"""Sans-IO AMQP 0-9-1: bytes in, events out; commands in, bytes out.

Nothing in this package imports asyncio, sockets, files or broker code; time is an argument.
"""

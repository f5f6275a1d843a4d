"""``burrowctl`` / ``python -m broker.ops.ctl``: rabbitmqctl's commands, flags and output layout,
talking to the running broker through its management HTTP API (stdlib urllib, so the tool
starts fast and needs nothing the broker does not already ship).

Exit codes follow rabbitmqctl (sysexits): 0 ok, 64 usage, 65 data error (no such user / vhost
/ queue), 69 node unavailable, 70 internal error.
"""

"""One broker node: the only place that owns the event loop. Settings (config, conffile),
start / stop, listeners and TLS, signals, recovery at boot, the data directory and the queue
stores, resource alarms and what the process looks like (sysinfo). Imports amqp/ and core/.
"""

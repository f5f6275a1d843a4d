"""burrowmq, a RabbitMQ-compatible AMQP 0-9-1 broker. Layers, each importing only those below:

- ``broker.ops``: management API and UI, Prometheus, the CLIs, the pytest plugin, launch;
- ``broker.node``: the event loop, listeners, start / stop, recovery, config, stores, alarms;
- ``broker.amqp``: transport, sessions, channels, permissions, confirms;
- ``broker.core``: semantics (Server -> VirtualHost -> Exchange / Queue), synchronous;
- ``storage`` (queue stores, the data directory) and ``protocol`` (sans-IO AMQP) below them.

The version is ``broker.core.naming.BURROWMQ_VERSION``.
"""

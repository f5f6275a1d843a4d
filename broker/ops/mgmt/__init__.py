"""The management HTTP API (RabbitMQ 3.13's /api shapes) and its small web UI.

Imported only by ``broker.ops.http`` once the AMQP listener is up: aiohttp is not loaded on the
broker's cold path. Handlers run on the broker's event loop and read or change broker state
synchronously, like an AMQP handler would; the ``fmt`` module turns broker objects into
RabbitMQ's JSON.
"""

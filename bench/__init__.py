"""Throughput / latency / footprint benchmark for AMQP 0-9-1 brokers.

Run as ``python -m bench [options]``; see ``bench/README.md``. The package holds a
minimal blocking raw-socket AMQP client (``bench.amqp``) fast enough not to be the
bottleneck, the publisher/consumer worker processes (``bench.workers``), broker
process management (``bench.brokerproc``), shared types, worker runner and RSS
sampler (``bench.common``), scenario orchestration (``bench.scenarios``), the
lazy-backlog fill/restart/drain scenario (``bench.backlog``) and result
formatting (``bench.report``).
"""

__all__ = ["amqp", "backlog", "brokerproc", "common", "report", "scenarios", "workers"]

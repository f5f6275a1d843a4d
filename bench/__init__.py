"""Load-test AMQP 0-9-1 brokers the way users do, ours next to RabbitMQ.

Run as ``python -m bench [options]`` (``make bench``); see ``bench/README.md``. PerfTest-style
floods (``bench.flood`` workers, ``bench.rounds`` scenarios and rounds) alternate between the
brokers of one run (``bench.scenarios``: ours, a RabbitMQ of its own from ``bench.rabbit``,
URLs); ``bench.backlogrss`` measures RSS under a 1M backlog per queue kind, ``bench.backlog``
the lazy-queue fill/restart/drain; ``bench.report`` prints the tables. ``python -m
bench.profile`` profiles our broker during a flood (``bench/PROFILE.md``).
"""

__all__ = ["amqp", "backlog", "backlogrss", "brokerproc", "common", "flood", "profile",
           "rabbit", "report", "rounds", "scenarios", "workers"]

"""Exchange types: the contract and registry (``base``), the AMQP types (``standard``), and
the types RabbitMQ users add as plugins, built in: ``consistent_hash`` (x-consistent-hash),
``dedup`` (x-message-deduplication), ``delayed`` (x-delayed-message). Importing the package
registers them all; the delayed exchange is the only one that holds messages (in its own
store).
"""

from . import consistent_hash, dedup, delayed, standard
from .base import EXCHANGE_TYPES, Binding, Destination, Exchange, args_key, register

__all__ = ["EXCHANGE_TYPES", "Binding", "Destination", "Exchange", "args_key",
           "consistent_hash", "dedup", "delayed", "register", "standard"]

"""Broker semantics: plain synchronous engines (Server -> VirtualHost -> Exchange / Queue).

The only asyncio code lives in transport.py and server.py.
"""

__version__ = "0.1.0"

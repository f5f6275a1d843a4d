"""The hot path, compiled when it can be: ``_fast_c`` (Cython) or ``_fast_py`` (pure Python).

As aiohttp, yarl and msgpack do: the compiled module is built at install time when a C compiler
and Cython are there (setup.py; the build never fails for want of them) and used when it
imports; ``BURROWMQ_NO_EXTENSIONS=1`` forces the pure-Python reference. ``COMPILED`` says which
one runs. Both give the same events and the same bytes (tests/protocol/test_fast.py).
"""

from __future__ import annotations

import os

from . import _fast_py

COMPILED = False
if not os.environ.get("BURROWMQ_NO_EXTENSIONS"):
    try:
        from . import _fast_c as _impl  # type: ignore[attr-defined]
        COMPILED = True
    except ImportError:
        _impl = _fast_py
else:
    _impl = _fast_py

scan = _impl.scan
deliver_message = _impl.deliver_message

__all__ = ["COMPILED", "deliver_message", "scan"]

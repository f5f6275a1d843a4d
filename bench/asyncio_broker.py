"""Run our broker on asyncio's own event loop instead of uvloop: ``python bench/asyncio_broker.py
<broker options>`` (what ``python -m bench --with-asyncio`` spawns as ``ours-asyncio``).

``broker.__main__`` uses uvloop when it can import it; marking the module as missing makes that
import fail, so the broker falls back to ``asyncio.run`` with no change to its code. The two
loops read differently under load (libuv reads a readable socket up to 32 times per loop turn,
asyncio once), which decides how a flooding publisher and a consumer share the loop.
"""

import runpy
import sys

sys.modules["uvloop"] = None  # type: ignore[assignment]  # `import uvloop` -> ImportError
sys.argv[0] = "broker"
runpy.run_module("broker", run_name="__main__", alter_sys=True)

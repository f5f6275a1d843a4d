"""Run a function on an in-process broker's event loop from a test thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any


def call_on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any,
                 timeout: float = 10.0) -> Any:
    """fn(*args) on ``loop``; its result, or its exception raised here."""
    done = threading.Event()
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["error"] = exc
        done.set()

    loop.call_soon_threadsafe(run)
    if not done.wait(timeout):
        raise AssertionError(f"broker loop did not run the call within {timeout} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")

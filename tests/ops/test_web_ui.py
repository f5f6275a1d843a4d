"""The web UI in headless Chromium: log in, read the overview, queues, exchanges and
connections pages, publish / get / purge on a queue; what is checked is the page's visible
text, i.e. what a person sees."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from browser import Browser
from ops_helpers import Api, connect


def test_ui_overview_queue_actions(burrowmq, tmp_path) -> None:  # type: ignore
    api = Api(burrowmq.management_port)
    assert api.put("/api/queues/%2F/ui-queue", {"durable": True}) == 201
    conn = connect(burrowmq.url, client_properties={"connection_name": "ui-test"})
    shots = Path(os.environ.get("BURROWMQ_UI_SHOTS") or tmp_path)
    base = f"http://127.0.0.1:{burrowmq.management_port}/"

    async def scenario() -> None:
        async with Browser() as page:
            await page.goto(base)
            await page.wait_for_text("Log in")
            await page.type("input[name=username]", "guest")
            await page.type("input[name=password]", "wrong")
            await page.click("#login button")
            await page.wait_for_text("Not_Authorized")
            await page.type("input[name=username]", "guest")
            await page.type("input[name=password]", "guest")
            await page.click("#login button")
            text = await page.wait_for_text("Queued messages")
            assert "RabbitMQ 3.13.7 compatible" in text and "User guest" in text
            assert f"amqp\t127.0.0.1\t{burrowmq.port}" in text
            await page.screenshot(shots / "overview.png")

            await page.goto(base + "#/connections")
            text = await page.wait_for_text("User name")
            assert "guest" in text and "AMQP 0-9-1" in text

            await page.goto(base + "#/exchanges")
            text = await page.wait_for_text("amq.topic")
            assert "(AMQP default)" in text and "headers" in text

            await page.goto(base + "#/queues")
            text = await page.wait_for_text("ui-queue")
            assert "classic" in text

            await page.goto(base + "#/queues/%2F/ui-queue")
            await page.wait_for_text("Queue ui-queue")
            for body in ("hello from the browser", "second"):
                await page.type("textarea[name=payload]", body)
                await page.click("#publish button")
                await page.wait_for_text("Message published.")
            await page.wait_for_text("2\t0\t2\t0")  # ready, unacked, total, consumers
            assert api.get("/api/queues/%2F/ui-queue")["messages_ready"] == 2
            await page.type("input[name=count]", "1")
            await page.click("#get button")
            text = await page.wait_for_text("hello from the browser")
            assert "Message 1" in text and "Routing key: ui-queue" in text
            await page.screenshot(shots / "queue.png")
            await page.click("#purge")
            await page.wait_for_text("Queue purged")
            await page.wait_for_text("0\t0\t0\t0")
            assert api.get("/api/queues/%2F/ui-queue")["messages"] == 0

            await page.goto(base + "#/login/guest/guest")
            await page.wait_for_text("Queued messages")

    asyncio.run(scenario())
    conn.close()

"""Web UI, Connections and Channels tabs in Chromium: a person finds a client's connection,
opens it, reads its client properties and channels, closes it with a reason (the client gets
RabbitMQ's 320 with that reason), and reads a channel's mode, prefetch, consumers and rates."""

from __future__ import annotations

import re
import threading

import pika
import pika.exceptions
from ops_helpers import connect
from playwright.sync_api import expect
from ui_helpers import ui, ui_browser  # noqa: F401


def test_connections(ui) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    conn = connect(ui.handle.url, client_properties={"connection_name": "ui-orders-app"})
    conn.channel()
    page = ui.page
    ui.goto("connections")
    row = page.locator("#connections tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("ui-orders-app")
    expect(row.get_by_text("running")).to_be_visible()
    expect(row).to_contain_text("AMQP 0-9-1")
    ui.shot("connections")

    # The filter narrows the list; a regex that matches nothing empties it.
    page.get_by_label("Filter by name").fill("nothing-like-this")
    expect(page.locator("#connections")).to_contain_text("no connections")
    page.get_by_label("Filter by name").fill("")
    expect(row).to_have_count(1)

    row.get_by_role("link").first.click()
    expect(page.get_by_role("heading", name=re.compile("^Connection "))).to_be_visible()
    expect(ui.section("Client properties")).to_contain_text("ui-orders-app")
    expect(ui.section("Overview")).to_contain_text("guest")
    expect(ui.section("Channels").locator("tbody tr")).to_have_count(1)
    ui.shot("connection")

    closer = ui.section("Close this connection")
    closer.get_by_label("Reason").fill("maintenance window")
    closer.get_by_role("button", name="Force Close").click()
    expect(page.get_by_role("heading", name="Connections")).to_be_visible()
    expect(page.locator("#connections")).to_contain_text("no connections")
    try:
        conn.process_data_events(1)
        closed = None
    except pika.exceptions.ConnectionClosedByBroker as err:
        closed = err
    assert closed is not None
    assert (closed.reply_code, closed.reply_text) == (320, "CONNECTION_FORCED - maintenance window")


def test_channels(ui) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    conn = connect(ui.handle.url, client_properties={"connection_name": "ui-consumer"})
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_qos(prefetch_count=7)
    ch.queue_declare("chan-work")
    ch.basic_consume("chan-work", lambda c, m, p, b: c.basic_ack(m.delivery_tag))
    stop = threading.Event()

    def pump() -> None:  # about 40 a second until the test is done (at most 30 s)
        for _ in range(1200):
            if stop.is_set():
                break
            ch.basic_publish("", "chan-work", b"job")
            conn.sleep(0.025)

    worker = threading.Thread(target=pump)
    worker.start()
    try:
        page = ui.page
        ui.goto("channels")
        row = page.locator("#channels tbody tr")
        expect(row).to_have_count(1)
        expect(row.get_by_title("Confirm")).to_have_text("C")
        expect(row).to_contain_text("7")
        expect(row.locator("td").nth(8)).not_to_have_text("0/s", timeout=10_000)  # publish
        ui.shot("channels")
        row.get_by_role("link").first.click()
        expect(page.get_by_role("heading", name=re.compile("^Channel "))).to_be_visible()
        consumers = ui.section("Consumers")
        expect(consumers).to_contain_text("chan-work")
        overview = ui.section("Overview")
        expect(overview.get_by_role("row", name="Prefetch count 7")).to_be_visible()
        expect(overview.get_by_role("row", name="Mode C")).to_be_visible()
        ack = page.locator("figure[data-kind=rate] li[data-series=ack] .value")
        expect(ack).not_to_have_text("0/s", timeout=10_000)
        ui.shot("channel")
    finally:
        stop.set()
        worker.join()
    conn.close()

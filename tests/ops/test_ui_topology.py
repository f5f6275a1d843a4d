"""Web UI, Exchanges and Queues tabs in Chromium, as a person uses them: add an exchange with
an argument, bind it, publish a message with properties and headers (and see it arrive, and
see an unroutable one reported), see its message rates in / out on its page and in the list;
add queues with arguments and see their feature badges, filter, sort and page the list,
publish from a queue's page, see the queued-messages chart move, get messages with their
properties and headers, move, purge, delete."""

from __future__ import annotations

import re
import threading

from ops_helpers import connect
from playwright.sync_api import expect
from ui_helpers import ui, ui_browser  # noqa: F401


def add_argument(form, label: str, value: str, row: int) -> None:  # type: ignore
    form.get_by_role("button", name=label, exact=True).click()
    form.locator("input[name=arguments-value]").nth(row).fill(value)


def test_exchanges(ui) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ui.api.put("/api/queues/%2F/ui-bound", {"durable": True})
    page = ui.page
    ui.goto("exchanges")
    listing = page.locator("#exchanges")
    expect(listing).to_contain_text("(AMQP default)")
    expect(listing).to_contain_text("amq.topic")
    ui.shot("exchanges")

    add = page.locator("#add-exchange")
    add.get_by_label("Name", exact=True).fill("ui.events")
    add.get_by_label("Type", exact=True).select_option("topic")
    add_argument(add, "Alternate exchange", "amq.fanout", 0)
    add.get_by_role("button", name="Add exchange").click()
    expect(ui.flash()).to_contain_text("Exchange ui.events added.")
    row = listing.locator("tr", has=page.get_by_role("link", name="ui.events"))
    expect(row.get_by_title("alternate-exchange: amq.fanout")).to_have_text("AE")
    expect(row.get_by_title("durable: true")).to_have_text("D")

    row.get_by_role("link", name="ui.events").click()
    expect(page.get_by_role("heading", name="Exchange ui.events")).to_be_visible()
    bind = page.locator("#bind")
    bind.get_by_label("Destination").fill("ui-bound")
    bind.get_by_label("Routing key").fill("orders.#")
    bind.get_by_role("button", name="Bind").click()
    expect(ui.flash()).to_contain_text("Binding added.")
    bindings = ui.section("Bindings")
    expect(bindings.get_by_role("row", name=re.compile("ui-bound orders.#"))).to_be_visible()

    publish = page.locator("#publish")
    publish.get_by_label("Routing key").fill("orders.created")
    publish.locator("input[name=headers-key]").first.fill("trace")
    publish.locator("input[name=headers-value]").first.fill("42")
    publish.locator("select[name=headers-type]").first.select_option("number")
    publish.get_by_role("button", name="content_type", exact=True).click()
    publish.locator("input[name=properties-value]").first.fill("application/json")
    publish.get_by_label("Delivery mode").select_option("2")
    publish.get_by_label("Payload", exact=True).fill('{"id": 1}')
    publish.get_by_role("button", name="Publish message").click()
    expect(ui.flash()).to_have_text(re.compile("^Message published.×?$"))
    ui.shot("exchange")

    publish.get_by_label("Routing key").fill("nobody.listens")
    publish.get_by_role("button", name="Publish message").click()
    expect(ui.flash()).to_contain_text("Message published, but not routed.")

    conn = connect(ui.handle.url)
    method, props, body = conn.channel().basic_get("ui-bound", auto_ack=True)
    assert body == b'{"id": 1}' and method.routing_key == "orders.created"
    assert props.headers == {"trace": 42} and props.content_type == "application/json"
    assert props.delivery_mode == 2

    # While a client publishes to it, the exchange's rate chart and the list's "Message rate
    # in / out" columns show a rate (the sampler ticks every 200 ms in these tests).
    stop = threading.Event()
    ch = conn.channel()

    def publish() -> None:
        while not stop.is_set():
            ch.basic_publish("ui.events", "orders.tick", b"x")
            conn.process_data_events(0.01)

    worker = threading.Thread(target=publish)
    worker.start()
    try:
        moving = re.compile(r"^(?!0/s$)[\d.,]+/s$")
        chart = page.locator("figure[data-kind=rate]", has_text="Message rates")
        expect(chart.locator("li[data-series=publish_in] .value")).to_have_text(moving)
        expect(chart.locator("li[data-series=publish_out] .value")).to_have_text(moving)
        ui.shot("exchange-rates")
        ui.goto("exchanges")
        head = [t.strip() for t in listing.locator("thead th").all_inner_texts()]
        rate_in, rate_out = head.index("Message rate in"), head.index("Message rate out")
        cells = listing.locator("tr", has=page.get_by_role("link", name="ui.events")).locator(
            "td")
        expect(cells.nth(rate_in)).to_have_text(moving)
        expect(cells.nth(rate_out)).to_have_text(moving)
        idle = listing.locator("tr", has=page.get_by_role("link", name="amq.headers",
                                                          exact=True)).locator("td")
        expect(idle.nth(rate_in)).to_have_text("")  # never published to: no message_stats
        ui.shot("exchanges-rates")
    finally:
        stop.set()
        worker.join()
    conn.close()
    listing.get_by_role("link", name="ui.events").click()

    bindings.get_by_role("button", name="Unbind").click()
    expect(ui.flash()).to_contain_text("Binding removed.")
    expect(bindings.locator("table")).to_have_count(0)
    ui.section("Delete this exchange").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("heading", name="Exchanges")).to_be_visible()
    expect(listing).not_to_contain_text("ui.events")
    assert ui.api.request("GET", "/api/exchanges/%2F/ui.events")[0] == 404


def test_queue_list(ui) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    for i in range(23):
        ui.api.put(f"/api/queues/%2F/bulk-{i:02d}", {"durable": False})
    page = ui.page
    ui.goto("queues")
    add = page.locator("#add-queue")
    add.get_by_label("Name", exact=True).fill("ui-jobs")
    add_argument(add, "Max length", "100", 0)
    add_argument(add, "Message TTL", "60000", 1)
    add_argument(add, "Dead letter exchange", "dlx", 2)
    add.get_by_role("button", name="Add queue").click()
    expect(ui.flash()).to_contain_text("Queue ui-jobs added.")
    add.get_by_label("Type", exact=True).select_option("quorum")
    add.get_by_label("Name", exact=True).fill("ui-quorum")
    add.get_by_role("button", name="Add queue").click()
    expect(ui.flash()).to_contain_text("Queue ui-quorum added.")

    # Declaring it again as transient: the broker's own words come back, in red.
    add.get_by_label("Type", exact=True).select_option("classic")
    add.get_by_label("Name", exact=True).fill("ui-jobs")
    add.get_by_label("Durability").select_option("false")
    add.get_by_role("button", name="Add queue").click()
    expect(ui.flash().locator(".error")).to_contain_text(
        "inequivalent arg 'durable' for queue 'ui-jobs' in vhost '/'")

    listing = page.locator("#queues")
    page.get_by_label("Filter by name").fill("^ui-")
    page.get_by_label("Regex").check()
    rows = listing.locator("tbody tr")
    expect(rows).to_have_count(2)
    jobs = listing.locator("tr", has=page.get_by_role("link", name="ui-jobs"))
    for short, title in (("D", "durable: true"), ("Lim", "x-max-length: 100"),
                         ("TTL", "x-message-ttl: 60000"), ("DLX", 'x-dead-letter-exchange: "dlx"')):
        expect(jobs.get_by_title(title)).to_have_text(short)
    quorum = listing.locator("tr", has=page.get_by_role("link", name="ui-quorum"))
    expect(quorum.get_by_title("type: quorum")).to_have_text("quorum")
    ui.shot("queues")

    # Sorting by name, both ways; paging through 25 queues 20 at a time.
    page.get_by_label("Filter by name").fill("")
    page.get_by_label("Page size").select_option("20")
    expect(listing).to_contain_text("Page 1 of 2")
    listing.get_by_role("button", name=re.compile("^Name")).click()
    expect(rows.first).to_contain_text("bulk-00")
    listing.get_by_role("button", name=re.compile("^Name")).click()
    expect(rows.first).to_contain_text("ui-quorum")
    listing.get_by_role("button", name="Next page").click()
    expect(listing).to_contain_text("Page 2 of 2")
    expect(rows).to_have_count(5)


def test_queue_page(ui) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ui.api.put("/api/queues/%2F/ui-work", {"durable": True,
                                            "arguments": {"x-max-length": 50}})
    ui.api.put("/api/queues/%2F/ui-moved", {"durable": True})
    page = ui.page
    ui.goto("queues/%2F/ui-work")  # a deep link
    expect(page.get_by_role("heading", name="Queue ui-work")).to_be_visible()
    publish = page.locator("#publish")
    publish.locator("input[name=headers-key]").first.fill("kind")
    publish.locator("input[name=headers-value]").first.fill("demo")
    publish.get_by_label("Payload", exact=True).fill("hello from the UI")
    for _ in range(3):
        publish.get_by_role("button", name="Publish message").click()
        expect(ui.flash()).to_contain_text("Message published.")
    counts = page.locator("#queue-counts")
    expect(counts).to_have_text("Total 3 · Ready 3 · Unacked 0")
    # The queued-messages chart shows the three messages.
    total = page.locator("figure[data-kind=count] li[data-series=messages] .value")
    expect(total).to_have_text("3")
    line = page.locator("figure[data-kind=count] polyline[data-series=messages]")
    expect(line).to_have_count(1)
    ui.shot("queue")

    get = page.locator("#get")
    get.get_by_label("Messages").fill("2")
    get.get_by_role("button", name="Get Message(s)").click()
    messages = page.locator("#messages .message")
    expect(messages).to_have_count(2)
    first = messages.first
    expect(first.locator("pre.payload")).to_have_text("hello from the UI")
    expect(first.get_by_role("row", name=re.compile("^Headers kind demo"))).to_be_visible()
    expect(first.get_by_role("row", name="delivery_mode 1", exact=True)).to_be_visible()
    expect(first.get_by_role("row", name="Exchange (AMQP default)")).to_be_visible()
    first.scroll_into_view_if_needed()
    ui.shot("queue-get-messages", top=False)
    expect(counts).to_have_text("Total 3 · Ready 3 · Unacked 0")  # requeued

    move = page.locator("#move")
    move.get_by_label("Destination queue").fill("ui-moved")
    move.get_by_role("button", name="Move messages").click()
    expect(ui.flash()).to_contain_text("Messages moved to ui-moved.")
    expect(counts).to_have_text("Total 0 · Ready 0 · Unacked 0")
    assert ui.api.get("/api/queues/%2F/ui-moved")["messages"] == 3

    publish.get_by_role("button", name="Publish message").click()
    expect(counts).to_have_text("Total 1 · Ready 1 · Unacked 0")
    page.locator("#purge").get_by_role("button", name="Purge Messages").click()
    expect(ui.flash()).to_contain_text("Queue purged")
    expect(counts).to_have_text("Total 0 · Ready 0 · Unacked 0")

    page.locator("#delete-queue").get_by_role("button", name="Delete Queue").click()
    expect(page.get_by_role("heading", name="Queues and Streams")).to_be_visible()
    expect(page.locator("#queues")).not_to_contain_text("ui-work")

    ui.goto("queues/%2F/no-such-queue")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()

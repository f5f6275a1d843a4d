"""Web UI, logging in and the Overview tab, in Chromium: what a person sees. A wrong login
says "Login failed" as RabbitMQ's UI does; the overview shows totals, the node's figures and
listeners, and its charts move while a client publishes; definitions go out and come back in
from the page; the pages work with the keyboard alone and at a phone's width."""

from __future__ import annotations

import json
import re
import threading
import time

from ops_helpers import connect
from playwright.sync_api import expect
from ui_helpers import PHONE, Ui, ui, ui_browser  # noqa: F401

from broker.core.naming import node_name


def test_login(ui_browser, burrowmq_factory) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    handle = burrowmq_factory()
    page = Ui(ui_browser, handle)
    page.page.goto(page.base)
    expect(page.page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.page.locator("#nav")).to_be_hidden()  # no tabs before logging in
    page.shot("login")
    page.login("guest", "wrong")
    status = page.page.locator("#login-status")
    expect(status).to_have_text("Login failed")
    assert "Not_Authorized" not in page.main_text()
    page.shot("login-failed")

    # A user without a management tag is told why, after RabbitMQ's words.
    page.api.put("/api/users/app", {"password": "pw", "tags": ""})
    page.login("app", "pw")
    expect(status).to_contain_text("Login failed")
    expect(status).to_contain_text("Not management user")

    page.login("guest", "guest")
    expect(page.page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.page.locator("#who")).to_have_text("guest")
    page.page.get_by_role("button", name="Log out").click()
    expect(page.page.get_by_role("heading", name="Log in")).to_be_visible()
    page.close()


def test_overview(ui) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    handle = ui.handle
    stop = threading.Event()
    counts = {"sent": 0}
    conn = connect(handle.url)
    ch = conn.channel()
    ch.queue_declare("ov-work")

    def publish() -> None:
        while not stop.is_set() and counts["sent"] < 2000:
            ch.basic_publish("", "ov-work", b"x" * 100)
            counts["sent"] += 1
            conn.process_data_events(0.01)

    worker = threading.Thread(target=publish)
    worker.start()
    try:
        ui.goto("")
        page = ui.page
        totals = page.locator(".totals")
        expect(totals).to_contain_text(re.compile(r"1\s*Connections"))
        expect(totals).to_contain_text(re.compile(r"1\s*Queues"))
        nodes = ui.section("Nodes")
        expect(nodes).to_contain_text(node_name())
        expect(nodes).to_contain_text("high watermark")
        expect(nodes).to_contain_text("free")
        listeners = ui.section("Ports and contexts")
        expect(listeners.get_by_role("row", name=f"amqp 127.0.0.1 {handle.port}")).to_be_visible()
        # The message-rate chart's legend and line move while the client publishes.
        publish_rate = page.locator("figure[data-kind=rate] li[data-series=publish] .value")
        expect(publish_rate).not_to_have_text(re.compile(r"^0/s$"), timeout=10_000)
        queued = page.locator("figure[data-kind=count] li[data-series=messages] .value")
        expect(queued).not_to_have_text("0")
        # A line needs two samples 5 s apart (the chart's increment), then a page refresh.
        line = page.locator("figure[data-kind=rate] polyline[data-series=publish]")
        expect(line).to_have_count(1, timeout=15_000)
        assert _last_point_above_zero(line.get_attribute("points") or "")
        ui.shot("overview")
    finally:
        stop.set()
        worker.join()
    conn.close()


def _last_point_above_zero(points: str) -> bool:
    """The chart is 190 px high with its zero line 22 px above the bottom."""
    ys = [float(p.split(",")[1]) for p in points.split()]
    return len(ys) >= 2 and ys[-1] < 190 - 22


def test_definitions_export_and_import(ui, tmp_path) -> None:  # type: ignore  # noqa: F811
    ui.api.put("/api/queues/%2F/defs-kept", {"durable": True})
    ui.goto("")
    page = ui.page
    with page.expect_download() as download:
        ui.section("Export definitions").get_by_role(
            "button", name="Download broker definitions").click()
    exported = json.loads(open(download.value.path()).read())
    assert any(q["name"] == "defs-kept" for q in exported["queues"])
    exported["queues"].append({"name": "defs-imported", "vhost": "/", "durable": True,
                               "auto_delete": False, "arguments": {}})
    source = tmp_path / "defs.json"
    source.write_text(json.dumps(exported))
    importer = ui.section("Import definitions")
    importer.get_by_label("Definitions file").set_input_files(str(source))
    importer.get_by_role("button", name="Upload broker definitions").click()
    expect(ui.flash()).to_contain_text("imported successfully")
    assert ui.api.get("/api/queues/%2F/defs-imported")["durable"] is True


def test_keyboard_only(ui) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    page = ui.page
    ui.goto("")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    # Tab along the header and the tab bar to "Queues and Streams", then Enter.
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Queues and Streams":
            break
    else:
        raise AssertionError("the Queues tab is not reachable with Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Queues and Streams")).to_be_visible()
    # Every control on the page can take the focus and shows where it is.
    focusable = page.evaluate("""[...document.querySelectorAll(
        'main a, main button, main input, main select, main textarea')]
        .filter(e => e.offsetParent !== null && e.tabIndex < 0).length""")
    assert focusable == 0
    # Fill the add-queue form from the keyboard.
    page.get_by_label("Name", exact=True).focus()
    page.keyboard.type("kb-queue")
    page.keyboard.press("Enter")
    expect(ui.flash()).to_contain_text("Queue kb-queue added.")
    expect(page.locator("#queues")).to_contain_text("kb-queue")


def test_phone_width(ui_browser, burrowmq_factory) -> None:  # type: ignore  # noqa: F811
    handle = burrowmq_factory(collect_statistics_interval=200)
    page = Ui(ui_browser, handle, PHONE)
    page.api.put("/api/queues/%2F/phone-queue", {"durable": True,
                                                  "arguments": {"x-max-length": 10}})
    page.goto("login/guest/guest")
    page.page.wait_for_selector("#nav:not([hidden])")
    for tab, name in (("", "overview"), ("queues", "queues"),
                      ("queues/%2F/phone-queue", "queue"), ("users", "users")):
        page.goto(tab)
        time.sleep(0.3)
        # Nothing but tables (which scroll inside their box) is wider than the screen.
        wide = page.page.evaluate("document.documentElement.scrollWidth")
        assert wide <= PHONE["width"], f"{name}: page is {wide}px wide"
        page.shot(f"phone-{name}")
    # Every tab is on screen, without scrolling the tab bar.
    for link in page.page.locator("#nav a").all():
        if link.is_visible():
            box = link.bounding_box()
            assert box is not None and box["x"] + box["width"] <= PHONE["width"]
    page.close()

"""The web UI tests' browser (not a test module): Playwright for Python driving Debian's
Chromium (``playwright install`` downloads nothing here; the system browser is used through
``executable_path``).

One browser per test module (``ui_browser``, module-scoped); each test gets a fresh broker
with a fast sampler, a fresh browser context at 1280 x 800 and a logged-in page (``ui``).
Without Chromium or Playwright the tests skip with the reason, except in CI (``CI=true``),
where they fail. Screenshots go to ``build/screenshots/`` (or ``$BURROWMQ_UI_SCREENSHOTS``).
JavaScript errors on the page fail the test that caused them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ops_helpers import Api
from outside import missing, require_program

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("BURROWMQ_UI_SCREENSHOTS") or ROOT / "build" / "screenshots")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage"]
WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def ui_browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -e '.[test]')")
    chromium = require_program("chromium", "chromium-browser", package="chromium")
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
    try:
        yield browser
    finally:
        browser.close()
        playwright.stop()


class Ui:
    """A logged-in page on a fresh broker, with what a person does as methods."""

    def __init__(self, browser: Any, handle: Any, viewport: dict = WIDE) -> None:
        self.handle = handle
        self.api = Api(handle.management_port)
        self.base = f"http://127.0.0.1:{handle.management_port}/"
        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda err: self.errors.append(str(err)))
        self.page.on("dialog", lambda dialog: dialog.accept())
        self.page.set_default_timeout(10_000)

    def goto(self, hash_path: str) -> None:
        url = self.base + "#/" + hash_path
        if self.page.url == url:
            self.page.reload()  # the same hash would not route again
        else:
            self.page.goto(url)
        self.page.wait_for_selector("main h2")

    def login(self, user: str = "guest", password: str = "guest") -> None:
        self.page.goto(self.base)
        self.page.get_by_label("Username").fill(user)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Login").click()

    def main_text(self) -> str:
        return self.page.inner_text("main")

    def flash(self) -> Any:
        return self.page.locator("#flash")

    def section(self, title: str) -> Any:
        """The collapsible section with this title (scopes forms and tables)."""
        return self.page.locator("details.section", has=self.page.locator(
            "summary h3", has_text=title)).first

    def shot(self, name: str, top: bool = True) -> Path:
        """A screenshot of the viewport, from the top of the page unless ``top`` is False."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        if top:
            self.page.evaluate("window.scrollTo(0, 0)")
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.context.close()
        assert not self.errors, f"JavaScript errors on the page: {self.errors}"


@pytest.fixture
def ui(ui_browser: Any, burrowmq_factory: Any) -> Iterator[Ui]:
    handle = burrowmq_factory(collect_statistics_interval=200)
    page = Ui(ui_browser, handle)
    page.goto("login/guest/guest")
    page.page.wait_for_selector("#nav:not([hidden])")
    yield page
    page.close()

"""Debian's Chromium, driven by Playwright, for tests of the pages the proxy serves.

`browser` is one Chromium for a test module; `watched_page` gives each test its own context
(cookies, storage) and a page on which any console error, uncaught exception, failed
request, HTTP error answer or request to anything but loopback is a problem: the test
fails on it (`assert_clean()`, and again when the page is closed). Nothing leaves the
machine: DNS resolves loopback names only, and any other request is aborted (and counted).

The browser is always the system's (`CHROMIUM`), never one Playwright downloads. Without
it these tests fail, they do not skip: scripts/test.sh installs it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Request,
    Response,
    Route,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

__all__ = ["CHROMIUM", "SCREENSHOTS", "WatchedPage", "browser", "watched_page"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Only loopback names resolve: a page that reaches for the internet fails to.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
SCREENSHOTS = Path(__file__).parent / "artifacts" / "screenshots"
# Schemes that never leave the browser.
_LOCAL_SCHEMES = frozenset({"data", "blob", "about"})


def is_loopback(url: str) -> bool:
    """The URL stays on this machine (a loopback address or name, or no network at all)."""
    parts = urlsplit(url)
    if parts.scheme in _LOCAL_SCHEMES:
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class WatchedPage:
    """A page and what went wrong on it so far."""

    page: Page
    problems: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        """Fail the test if anything went wrong on the page."""
        assert not self.problems, "the page had problems:\n" + "\n".join(self.problems)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text}")

    def _page_error(self, error: PlaywrightError) -> None:
        self.problems.append(f"uncaught exception: {error.message}")

    def _failed(self, request: Request) -> None:
        if request.failure == "net::ERR_ABORTED" and request.url.endswith("/favicon.svg"):
            return  # the browser drops its icon fetch when the page moves on: not the page's
        self.problems.append(f"failed request: {request.method} {request.url} {request.failure}")

    def _answered(self, response: Response) -> None:
        if response.status >= 400:
            self.problems.append(
                f"HTTP {response.status}: {response.request.method} {response.url}"
            )

    def _route(self, route: Route) -> None:
        url = route.request.url
        if is_loopback(url):
            route.continue_()
        else:
            self.problems.append(f"request off this machine: {route.request.method} {url}")
            route.abort("blockedbyclient")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, started once per module. Not once per session:
    while Playwright's sync API is open, the main thread counts as running an event loop,
    and any later test that runs one there (the provider emulators) would fail."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def watched_page(browser: Browser) -> Iterator[WatchedPage]:
    """A page in a fresh context, watched for problems (see the module docstring)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watched = WatchedPage(page)
    context.route("**/*", watched._route)
    page.on("console", watched._console)
    page.on("pageerror", watched._page_error)
    page.on("requestfailed", watched._failed)
    page.on("response", watched._answered)
    yield watched
    context.close()
    watched.assert_clean()

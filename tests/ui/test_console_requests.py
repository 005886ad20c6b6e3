"""The console's Requests and Gallery pages in Chromium against the real proxy: calls made
with the openai client appear in the live table without a reload (thumbnails included),
a filter narrows it and lives in the link, a row opens the call's detail (its image
large, its attempts, what was sent), and the Gallery shows the images with their
prompts. The live table drops answers for filters no longer shown, misses no call of a
burst, trusts the server's clock over the browser's, and stops polling when left, even
while it loads; markup in a prompt, alias or filter stays text; the Playground shows a
provider's own image link as a link. Screenshots: requests.png, request-detail.png,
gallery.png. The `watched_page` fixture fails a test on any console error, failed
request or HTTP error in the page.

Polling is driven by Playwright's clock (`page.clock`), not by waiting: the page's
timers fire when a test runs the clock, and an in-page counter of `fetch` calls says
what the page asked for (synchronously, unlike the browser's request events)."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import quote

import httpx
import openai
import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser import SCREENSHOTS, WatchedPage
from tests.emulators import OpenAIEmulator
from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

SHOWN_MS = 15_000  # two shared cores: generous, but a broken page still fails
POLL_MS = 2000  # the live table's poll period (pages/requests.js)
REFRESH_MS = 5000  # the Models page's refresh period (pages/models.js)
# Counts the page's fetch calls by path, as they are made (an init script: before the
# console's modules run).
COUNT_FETCHES = """
window.fetchedPaths = [];
const fetchOf = window.fetch.bind(window);
window.fetch = (input, init) => {
  const url = new URL(input instanceof Request ? input.url : String(input), location.href);
  window.fetchedPaths.push(url.pathname);
  return fetchOf(input, init);
};
"""
HOSTILE = '<img src="x" onerror="window.pwned = 1">'


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIEmulator]:
    """The OpenAI emulator, started from a thread of its own: Playwright's sync API keeps
    an event loop running in the test's thread, where the emulator cannot start one."""
    emulator = OpenAIEmulator()
    starting = threading.Thread(target=emulator.start)
    starting.start()
    starting.join()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def console(
    upstream: OpenAIEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningProxy]:
    """A gateway keeping images and details: a mock group (offline) and gpt-image-1 on
    the OpenAI emulator (a real upstream request to show in the detail view)."""
    running = RunningProxy(
        {
            "model_list": [
                model("otters", "mock/otters"),
                model(
                    "painter",
                    "openai/gpt-image-1",
                    api_base=upstream.base_url + "/v1",
                    api_key=upstream.api_key,
                ),
                # Answers `url` with links of the provider's own.
                model(
                    "sketcher",
                    "openai/dall-e-3",
                    api_base=upstream.base_url + "/v1",
                    api_key=upstream.api_key,
                ),
            ],
            "general_settings": {
                "master_key": MASTER_KEY,
                "image_store": {"path": str(tmp_path_factory.mktemp("kept-images"))},
                "console": {"keep_images": True, "keep_request_details": True},
            },
        }
    ).start()
    yield running
    running.stop()


def sign_in(page: Page, proxy: RunningProxy, hash_: str = "#/requests") -> None:
    page.goto(proxy.base_url + "/ui/login")
    page.get_by_label("Key").fill(MASTER_KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation")).to_contain_text("Requests", timeout=SHOWN_MS)
    page.goto(proxy.base_url + "/ui" + hash_)


def settled(page: Page) -> None:
    """Every image in the page loaded: leaving the page (or redrawing the table) while
    one loads cancels it, which the watched page counts as a failed request."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('main img')].every((image) => image.complete)",
        timeout=SHOWN_MS,
    )


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def fetched(page: Page, path: str) -> int:
    """How many times the page fetched `path` (needs COUNT_FETCHES)."""
    count: int = page.evaluate("(path) => fetchedPaths.filter((p) => p === path).length", path)
    return count


def pause_clock(page: Page) -> None:
    """Stops the page's clock (installed before the page loaded): from now on its timers
    fire only when the test runs the clock."""
    page.clock.pause_at(page.evaluate("Date.now()") / 1000 + 0.1)


def until(page: Page, condition: Callable[[], bool]) -> None:
    """Waits for `condition`, letting Playwright deliver the page's events meanwhile."""
    deadline = time.monotonic() + SHOWN_MS / 1000
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        page.wait_for_timeout(20)


def new_key(proxy: RunningProxy, alias: str) -> str:
    made = httpx.post(
        proxy.base_url + "/key/generate",
        json={"key_alias": alias},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )
    assert made.status_code == 200, made.text
    key: str = made.json()["key"]
    return key


def refused_call(proxy: RunningProxy, key: str) -> None:
    """A call the gateway refuses (a size gpt-image-1 does not make): a row, no image."""
    refused = httpx.post(
        proxy.base_url + "/v1/images/generations",
        json={"model": "painter", "prompt": "x", "size": "7x7"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert refused.status_code == 400, refused.text


def logged(proxy: RunningProxy, alias: str, count: int) -> None:
    """Waits until the spend log holds `count` rows of the key `alias` (rows are written
    in batches, a little after their call)."""
    deadline = time.monotonic() + SHOWN_MS / 1000
    while True:
        rows = httpx.get(
            proxy.base_url + "/spend/logs",
            params={"key_alias": alias, "limit": 1000},
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
        ).json()
        if len(rows) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(rows) == count


def test_calls_appear_live_and_open_in_detail_and_gallery(
    watched_page: WatchedPage, console: RunningProxy, upstream: OpenAIEmulator
) -> None:
    page = watched_page.page
    sign_in(page, console)
    expect(page.get_by_role("heading", level=1)).to_have_text("Requests")
    expect(page.locator("main .live-status")).to_contain_text("Live", timeout=SHOWN_MS)
    tag = uuid.uuid4().hex[:6]
    prompts = [f"an otter {tag} with a {thing}" for thing in ("kite", "lantern")]
    calls = openai.OpenAI(api_key=MASTER_KEY, base_url=console.base_url + "/v1", max_retries=0)
    for prompt in prompts:
        calls.images.generate(model="otters", prompt=prompt, size="256x256")
    painted = f"a heron {tag} in the reeds"
    calls.images.generate(model="painter", prompt=painted, size="1024x1024")

    # The three rows arrive without a reload, each with its thumbnail.
    rows = page.locator("main table.requests tbody tr.clickable")
    expect(rows).to_have_count(3, timeout=SHOWN_MS)
    expect(rows.locator("img.thumb")).to_have_count(3)
    for image in rows.locator("img.thumb").all():
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("node => node.naturalWidth") > 0
    expect(rows.first).to_contain_text("painter")
    screenshot(page, "requests")

    # A filter narrows the table and goes into the link.
    page.get_by_label("Model", exact=True).select_option("otters")
    expect(rows).to_have_count(2, timeout=SHOWN_MS)
    assert "model_group=otters" in page.url
    settled(page)
    page.reload()
    expect(rows).to_have_count(2, timeout=SHOWN_MS)
    # A call opened from a filtered view leads back to that view.
    settled(page)
    rows.first.click()
    expect(page.locator("main .request-detail")).to_be_visible(timeout=SHOWN_MS)
    settled(page)
    page.get_by_role("link", name="← All requests").click()
    expect(rows).to_have_count(2, timeout=SHOWN_MS)
    assert "model_group=otters" in page.url
    settled(page)
    page.get_by_label("Model", exact=True).select_option("")
    expect(rows).to_have_count(3, timeout=SHOWN_MS)

    # A row opens the call: its image large, its prompt, what was sent upstream.
    settled(page)
    rows.filter(has_text="painter").click()
    expect(page).to_have_url(re.compile(r"#/requests\?id="), timeout=SHOWN_MS)
    detail = page.locator("main .request-detail")
    expect(detail).to_be_visible(timeout=SHOWN_MS)
    expect(detail.locator("blockquote.prompt")).to_have_text(painted)
    large = detail.locator(".detail-images img.large")
    expect(large).to_have_count(1)
    expect(large).to_have_js_property("complete", True)
    assert large.evaluate("node => node.naturalWidth") == 1024
    expect(detail).to_contain_text("Sent upstream (1)")
    expect(detail).to_contain_text(upstream.base_url + "/v1/images/generations")
    expect(detail).to_contain_text("painter@model_list[1]")
    text = detail.inner_text()
    assert upstream.api_key not in text and "Bearer" not in text
    screenshot(page, "request-detail")
    page.get_by_role("link", name="← All requests").click()
    expect(rows).to_have_count(3, timeout=SHOWN_MS)
    settled(page)

    # The Gallery: the images with their prompts; a tile opens its call.
    page.get_by_role("navigation").get_by_role("link", name="Gallery").click()
    tiles = page.locator("main figure.kept")
    expect(tiles).to_have_count(3, timeout=SHOWN_MS)
    for prompt in [*prompts, painted]:
        image = tiles.filter(has_text=prompt).locator("img")
        expect(image).to_be_visible()
        # Loaded before the tile is opened (leaving the page would cancel its load).
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("node => node.naturalWidth") > 0
    screenshot(page, "gallery")
    settled(page)
    tiles.filter(has_text=prompts[0]).locator("a").click()
    expect(page.locator("main .request-detail blockquote.prompt")).to_have_text(
        prompts[0], timeout=SHOWN_MS
    )
    watched_page.assert_clean()


def test_a_hidden_tab_stops_polling_and_a_visible_one_catches_up(
    watched_page: WatchedPage, console: RunningProxy
) -> None:
    page = watched_page.page
    made = httpx.post(
        console.base_url + "/key/generate",
        json={"key_alias": "hider"},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )
    key = made.json()["key"]
    page.add_init_script(COUNT_FETCHES)
    page.clock.install()
    sign_in(page, console, "#/requests?key_alias=hider&status=failure")
    expect(page.locator("main .live-status")).to_contain_text("Live", timeout=SHOWN_MS)
    pause_clock(page)
    page.evaluate(
        "() => { Object.defineProperty(document, 'hidden', {value: true, configurable: true});"
        " document.dispatchEvent(new Event('visibilitychange')); }"
    )
    expect(page.locator("main .live-status")).to_contain_text("Paused", timeout=SHOWN_MS)
    asked = fetched(page, "/spend/logs")
    # A failed call while hidden: not fetched until the tab shows again.
    refused_call(console, key)
    logged(console, "hider", 1)
    page.clock.run_for(3 * POLL_MS)  # three poll periods
    assert fetched(page, "/spend/logs") == asked
    rows = page.locator("main table.requests tbody tr.clickable")
    expect(rows).to_have_count(0)
    page.evaluate(
        "() => { Object.defineProperty(document, 'hidden', {value: false, configurable: true});"
        " document.dispatchEvent(new Event('visibilitychange')); }"
    )
    expect(rows).to_have_count(1, timeout=SHOWN_MS)
    expect(rows.first).to_contain_text("400")
    watched_page.assert_clean()


def test_markup_in_a_prompt_an_alias_or_a_filter_stays_text(
    watched_page: WatchedPage, console: RunningProxy
) -> None:
    """An <img> made from any of them would load /ui/x (a 404) and run its handler (a
    CSP error): the watched page fails on both; the text must show as it was sent."""
    page = watched_page.page
    alias = f"{HOSTILE} {uuid.uuid4().hex[:6]}"
    prompt = f"an otter {HOSTILE} {uuid.uuid4().hex[:6]}"
    key = new_key(console, alias)
    calls = openai.OpenAI(api_key=key, base_url=console.base_url + "/v1", max_retries=0)
    calls.images.generate(model="otters", prompt=prompt, size="64x64")
    logged(console, alias, 1)
    # Requests, filtered by the alias from the link: the filter, the row, the thumbnail.
    sign_in(page, console, f"#/requests?key_alias={quote(alias)}")
    rows = page.locator("main table.requests tbody tr.clickable")
    expect(rows).to_have_count(1, timeout=SHOWN_MS)
    expect(page.get_by_label("Key", exact=True)).to_have_value(alias)
    expect(rows.first).to_contain_text(alias)
    expect(rows.locator("img")).to_have_count(1)
    expect(rows.locator("img.thumb")).to_have_attribute("alt", f"otters: {prompt}")
    settled(page)
    # The detail: the prompt and the key as text.
    rows.first.click()
    detail = page.locator("main .request-detail")
    expect(detail.locator("blockquote.prompt")).to_have_text(prompt, timeout=SHOWN_MS)
    expect(detail.locator("dd", has_text=alias)).to_have_count(1)
    expect(detail.locator("img")).to_have_count(1)
    settled(page)
    # The Gallery: the prompt as the caption, the alias among the facts.
    page.get_by_role("navigation").get_by_role("link", name="Gallery").click()
    tile = page.locator("main figure.kept", has_text=prompt)
    expect(tile).to_have_count(1, timeout=SHOWN_MS)
    expect(tile.locator("p.caption")).to_have_text(prompt)
    expect(tile.locator("p.meta")).to_contain_text(alias)
    expect(tile.locator("img")).to_have_count(1)
    expect(page.locator("main img[src='x']")).to_have_count(0)
    settled(page)
    assert page.evaluate("window.pwned") is None
    watched_page.assert_clean()


def test_an_answer_for_filters_no_longer_shown_is_dropped(
    watched_page: WatchedPage, console: RunningProxy
) -> None:
    page = watched_page.page
    tag = uuid.uuid4().hex[:6]
    shown, dropped = f"shown-{tag}", f"dropped-{tag}"
    keys = {alias: new_key(console, alias) for alias in (shown, dropped)}
    for key in keys.values():
        refused_call(console, key)
    logged(console, shown, 1)
    logged(console, dropped, 1)
    page.add_init_script(COUNT_FETCHES)
    page.clock.install()
    sign_in(page, console, f"#/requests?key_alias={shown}")
    rows = page.locator("main table.requests tbody tr.clickable")
    expect(rows).to_have_count(1, timeout=SHOWN_MS)
    pause_clock(page)
    # The next two reads wait: the one for the other key, then the one for this key.
    held: list[Route] = []

    def hold(route: Route) -> None:
        if len(held) < 2:
            held.append(route)
        else:
            route.continue_()

    page.route(lambda url: "/spend/logs" in url, hold)
    key_filter = page.get_by_label("Key", exact=True)
    for alias in (dropped, shown):
        key_filter.fill(alias)
        key_filter.dispatch_event("change")
    expect(page.locator("main table.requests td.loading")).to_have_count(1)
    assert f"key_alias={shown}" in page.url
    until(page, lambda: len(held) == 2)
    stale, current = held
    assert dropped in stale.request.url and shown in current.request.url
    # This key's answer comes first, the other key's (out of date) last.
    current.continue_()
    expect(rows).to_have_count(1, timeout=SHOWN_MS)
    with page.expect_response(lambda response: dropped in response.url) as answer:
        stale.continue_()
    answer.value.finished()
    # A new call of this key; the next poll (after the late answer) brings it.
    refused_call(console, keys[shown])
    logged(console, shown, 2)
    page.clock.run_for(POLL_MS)
    expect(rows.filter(has_text=shown)).to_have_count(2, timeout=SHOWN_MS)
    expect(rows.filter(has_text=dropped)).to_have_count(0)
    watched_page.assert_clean()


def test_a_burst_is_shown_whole_whatever_the_browsers_clock_says(
    watched_page: WatchedPage, console: RunningProxy
) -> None:
    """More calls between two polls than one page holds, seen by a browser whose clock is
    an hour ahead of the server's: every call shows."""
    page = watched_page.page
    alias = f"burst-{uuid.uuid4().hex[:6]}"
    key = new_key(console, alias)
    refused_call(console, key)
    logged(console, alias, 1)
    page.add_init_script(COUNT_FETCHES)
    page.clock.install(time=time.time() + 3600)
    sign_in(page, console, f"#/requests?key_alias={alias}")
    rows = page.locator("main table.requests tbody tr.clickable")
    expect(rows).to_have_count(1, timeout=SHOWN_MS)
    pause_clock(page)
    burst = 105  # a page is 100 rows
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}) as client:
        for _ in range(burst):
            answer = client.post(
                console.base_url + "/v1/images/generations",
                json={"model": "painter", "prompt": "x", "size": "7x7"},
            )
            assert answer.status_code == 400
    logged(console, alias, 1 + burst)
    page.clock.run_for(POLL_MS)
    expect(rows).to_have_count(1 + burst, timeout=SHOWN_MS)
    watched_page.assert_clean()


def test_a_page_left_while_it_loads_stops_its_timers(
    watched_page: WatchedPage, console: RunningProxy
) -> None:
    """Models is left while it loads (its model list held back), for Requests, which is
    left for Spend: neither the Requests poll nor the Models refresh may go on."""
    page = watched_page.page
    page.add_init_script(COUNT_FETCHES)
    page.clock.install()
    sign_in(page, console, f"#/requests?key_alias=nobody-{uuid.uuid4().hex[:6]}")
    live = page.locator("main .live-status")
    expect(live).to_contain_text("Live", timeout=SHOWN_MS)
    pause_clock(page)
    # The table polls, and the counter sees it.
    polls = fetched(page, "/spend/logs")
    page.clock.run_for(POLL_MS)
    assert fetched(page, "/spend/logs") > polls
    held: list[Route] = []

    # A def, not held.append: Playwright tags its handlers with an attribute.
    def hold(route: Route) -> None:
        held.append(route)

    page.route("**/model/info", hold)
    nav = page.get_by_role("navigation")
    with page.expect_request("**/model/info"):
        nav.get_by_role("link", name="Models").click()
    nav.get_by_role("link", name="Requests").click()
    expect(live).to_contain_text("Live", timeout=SHOWN_MS)
    # Models finishes loading now, after it was left: its first refresh, then its timer.
    with page.expect_response("**/model/status") as status:
        held[0].continue_()
    status.value.finished()
    nav.get_by_role("link", name="Spend").click()
    expect(page.locator("main .totals")).to_contain_text("Requests", timeout=SHOWN_MS)
    polls, refreshes = fetched(page, "/spend/logs"), fetched(page, "/model/status")
    page.clock.run_for(2 * REFRESH_MS + POLL_MS)
    assert (fetched(page, "/spend/logs"), fetched(page, "/model/status")) == (polls, refreshes)
    watched_page.assert_clean()


def test_the_playground_shows_a_providers_own_link_as_a_link(
    watched_page: WatchedPage, console: RunningProxy, upstream: OpenAIEmulator
) -> None:
    """dall-e answers `url` with links of its own: the console's CSP loads images from
    the gateway only, so the page links to it rather than loading it (which would be a
    CSP error in the console)."""
    page = watched_page.page
    sign_in(page, console, "#/playground")
    page.get_by_label("Model", exact=True).select_option("sketcher")
    page.get_by_label("Prompt", exact=True).fill("a heron at dawn")
    page.get_by_label("Answer as", exact=True).select_option("url")
    page.get_by_role("button", name="Generate").click()
    link = page.locator(".results figure.provider-link a")
    expect(link).to_have_count(1, timeout=SHOWN_MS)
    assert (link.get_attribute("href") or "").startswith(upstream.base_url + "/files/")
    expect(page.locator(".results img")).to_have_count(0)
    # Asked as b64_json, the same model's image shows in the page.
    page.get_by_label("Answer as", exact=True).select_option("b64_json")
    page.get_by_role("button", name="Generate").click()
    image = page.locator(".results figure img")
    expect(image).to_have_count(1, timeout=SHOWN_MS)
    expect(image).to_have_js_property("complete", True)
    assert image.evaluate("node => node.naturalWidth") > 0
    watched_page.assert_clean()

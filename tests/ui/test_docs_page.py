"""`/docs` in Chromium against the real proxy on loopback: the page loads with no console
error, no failed request and nothing asked of another origin (only loopback resolves), it
shows the operations, and "Try it out" calls the proxy with the key given to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser import SCREENSHOTS, WatchedPage
from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

MODELS = [model("dall-e-3", "mock/dall-e-3"), model("llava-hf", "mock/llava-hf")]
# Swagger UI renders a large document: generous on a busy two-core machine.
RENDERED_MS = 30_000


@pytest.fixture(scope="module")
def open_gateway() -> Iterator[RunningProxy]:
    running = RunningProxy({"model_list": MODELS}).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def keyed() -> Iterator[RunningProxy]:
    running = RunningProxy(
        {"model_list": MODELS, "general_settings": {"master_key": MASTER_KEY}}
    ).start()
    yield running
    running.stop()


def try_list_models(page: Page) -> None:
    """Open GET /v1/models, "Try it out", "Execute", and wait for the answer shown."""
    operation = page.locator("#operations-Models-get_v1_models")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status")
    expect(status.first).to_have_text("200", timeout=RENDERED_MS)
    expect(operation.locator(".live-responses-table .microlight").first).to_contain_text("dall-e-3")


def test_the_reference_loads_offline_and_tries_a_call(
    watched_page: WatchedPage, open_gateway: RunningProxy
) -> None:
    page = watched_page.page
    # The address cannot point the page at another document or config (Swagger UI reads
    # ?url= and ?configUrl= only when told to): a request to example.invalid would be a
    # problem, as would any request off this machine.
    hostile = "/docs?url=https://example.invalid/x.json&configUrl=https://example.invalid/c"
    with page.expect_request("**/openapi.json"):
        page.goto(open_gateway.base_url + hostile)
    expect(page.locator("#operations-Images-post_v1_images_generations")).to_be_visible(
        timeout=RENDERED_MS
    )
    expect(page.locator(".info .title")).to_contain_text("prismgate")
    for tag in ("Images", "Chat", "Models", "Keys", "Virtual keys", "Spend"):
        expect(page.locator(f"#operations-tag-{tag.replace(' ', '_')}")).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "docs.png")
    # The key goes in through the Authorize dialog, as a person would give it.
    page.get_by_role("button", name="Authorize").first.click()
    bearer = page.locator(".dialog-ux .auth-container").filter(
        has=page.locator("#auth-bearer-value")
    )
    bearer.locator("#auth-bearer-value").fill("sk-reader-0001")
    bearer.get_by_role("button", name="Apply credentials").click()
    expect(bearer).to_have_count(0)  # authorized: the value is shown masked now
    page.locator(".dialog-ux .close-modal").click()
    with page.expect_request("**/v1/models") as sent:
        try_list_models(page)
    assert sent.value.headers["authorization"] == "Bearer sk-reader-0001"
    watched_page.assert_clean()


def test_a_gateway_with_a_master_key_asks_for_a_key_first(
    watched_page: WatchedPage, keyed: RunningProxy
) -> None:
    page = watched_page.page
    page.goto(keyed.base_url + "/docs")
    form = page.locator("#key-form")
    expect(form).to_be_visible()
    expect(page.locator(".opblock")).to_have_count(0)  # no document read without a key
    # A wrong key: the page says why (the browser logs the 401 too, the only problem).
    form.locator("input[name=key]").fill("sk-wrong-0001")
    form.get_by_role("button", name="Show the API").click()
    expect(page.locator("#key-problem")).to_contain_text("the API key is not valid")
    assert len(watched_page.problems) == 2
    assert all("401" in problem for problem in watched_page.problems)
    watched_page.problems.clear()
    form.locator("input[name=key]").fill(MASTER_KEY)
    form.get_by_role("button", name="Show the API").click()
    expect(page.locator("#operations-Keys-post_key_generate")).to_be_visible(timeout=RENDERED_MS)
    expect(form).to_be_hidden()
    # The key given to the page is the key "Try it out" sends.
    with page.expect_request("**/v1/models") as sent:
        try_list_models(page)
    assert sent.value.headers["authorization"] == f"Bearer {MASTER_KEY}"
    watched_page.assert_clean()

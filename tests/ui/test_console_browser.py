"""The console in Chromium against the real proxy (the issue's done-when): sign in through
the form, generate an image in the Playground and find its thumbnail in Requests and in
Gallery, make a key in Keys and teams, use it with the openai client, revoke it in the
page and see it refused; and every page renders, with a screenshot each
(tests/artifacts/screenshots/<page>.png); and the README's first command, as written,
serves a console that does the same. The `watched_page` fixture fails a test on any
console error, uncaught exception, failed request or HTTP error answer in the page."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.browser import SCREENSHOTS, WatchedPage
from tests.processes import GatewayProcess
from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"

PAGES = {
    "requests": "Requests",
    "gallery": "Gallery",
    "spend": "Spend",
    "keys": "Keys and teams",
    "models": "Models",
    "playground": "Playground",
}
# A two-core machine shared with other tests: generous, but a broken page still fails.
SHOWN_MS = 15_000


@pytest.fixture(scope="module")
def console() -> Iterator[RunningProxy]:
    """One gateway for the module: mock models (offline), the embedded SQLite, a master
    key, and the console keeping images and request details."""
    running = RunningProxy(
        {
            "model_list": [
                model("otters", "mock/otters", model_info={"supports_vision": True}),
                model("dall-e-3", "mock/dall-e-3"),
                # A second deployment of the same model, elsewhere (the Models page).
                model(
                    "otters",
                    "mock/otters",
                    api_base="http://127.0.0.1:9/west",
                    model_info={"supports_vision": True},
                ),
            ],
            "general_settings": {
                "master_key": MASTER_KEY,
                "console": {"keep_images": True, "keep_request_details": True},
            },
        }
    ).start()
    yield running
    running.stop()


def sign_in(page: Page, proxy: RunningProxy | GatewayProcess, key: str = MASTER_KEY) -> None:
    """Through the sign-in form, as a person would."""
    page.goto(proxy.base_url + "/ui")
    expect(page).to_have_url(proxy.base_url + "/ui/login")
    page.get_by_label("Key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation")).to_contain_text("Playground", timeout=SHOWN_MS)


def open_page(page: Page, name: str) -> None:
    page.get_by_role("navigation").get_by_role("link", name=PAGES[name]).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(PAGES[name])
    expect(page.locator("main .loading")).to_have_count(0, timeout=SHOWN_MS)


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def generate_in_playground(
    page: Page, prompt: str, model: str = "otters", size: str | None = "256x256"
) -> str:
    """Generate one image of `prompt` (at `size`, or the size the page offers first for a
    catalogued model); the request id the answer carried."""
    open_page(page, "playground")
    page.get_by_label("Model", exact=True).select_option(model)
    page.get_by_label("Prompt", exact=True).fill(prompt)
    if size is not None:
        page.get_by_label("Size", exact=True).fill(size)
    page.get_by_role("button", name="Generate").click()
    expect(page.locator(".results figure img")).to_have_count(1, timeout=SHOWN_MS)
    facts = page.locator(".results .facts")
    expect(facts).to_contain_text("Provider")
    expect(facts).to_contain_text("mock")
    expect(facts).to_contain_text("Cost")
    return facts.locator("dt:text-is('Request id') + dd").inner_text()


def test_the_readmes_first_command_serves_a_console_that_shows_what_was_made(
    watched_page: WatchedPage, tmp_path: Path
) -> None:
    # The README's first command as written, from a fresh folder.
    server = GatewayProcess(QUICKSTART, tmp_path).wait_ready()
    try:
        page = watched_page.page
        sign_in(page, server, key="sk-1234")  # the quickstart's example key
        prompt = f"a sea otter {uuid.uuid4().hex[:8]}"
        generate_in_playground(page, prompt, model="dall-e-3", size=None)
        open_page(page, "requests")
        thumbnail = page.locator("main table img").first
        expect(thumbnail).to_be_visible(timeout=SHOWN_MS)
        assert "/v1/images/files/" in (thumbnail.get_attribute("src") or "")
        open_page(page, "gallery")
        expect(page.locator("main figure", has_text=prompt)).to_have_count(1, timeout=SHOWN_MS)
        watched_page.assert_clean()
        # Everything it keeps is in the folder it was started from.
        assert (tmp_path / "prismgate-data").is_dir()
    finally:
        server.stop()


def test_an_image_made_in_the_playground_shows_in_requests_and_gallery(
    watched_page: WatchedPage, console: RunningProxy
) -> None:
    page = watched_page.page
    sign_in(page, console)
    prompt = f"an otter reading a map {uuid.uuid4().hex[:8]}"
    request_id = generate_in_playground(page, prompt)
    assert len(request_id) >= 16
    screenshot(page, "playground")
    # Requests: the call's row, with its thumbnail (a kept image behind a signed link).
    open_page(page, "requests")
    thumbnail = page.locator("main table img").first
    expect(thumbnail).to_be_visible(timeout=SHOWN_MS)
    assert "/v1/images/files/" in (thumbnail.get_attribute("src") or "")
    # Its detail view shows the image too.
    page.goto(f"{console.base_url}/ui#/requests?id={request_id}")
    expect(page.locator("main")).to_contain_text(request_id, timeout=SHOWN_MS)
    expect(page.locator("main img").first).to_be_visible()
    # Gallery: the image, captioned with its prompt.
    open_page(page, "gallery")
    figure = page.locator("main figure", has_text=prompt)
    expect(figure).to_have_count(1, timeout=SHOWN_MS)
    expect(figure.locator("img")).to_be_visible()
    watched_page.assert_clean()


def test_a_key_made_in_the_page_works_until_it_is_revoked_there(
    watched_page: WatchedPage, console: RunningProxy
) -> None:
    page = watched_page.page
    sign_in(page, console)
    open_page(page, "keys")
    alias = f"browser-{uuid.uuid4().hex[:6]}"
    team = f"painters-{uuid.uuid4().hex[:6]}"
    page.get_by_role("button", name="New team").click()
    page.get_by_label("Alias").fill(team)
    page.get_by_label("Budget ($)").fill("20")
    page.get_by_role("button", name="Create team").click()
    teams = page.get_by_role("region", name="Teams")
    expect(teams.locator("tr", has_text=team)).to_contain_text("$20.0000")
    page.get_by_role("button", name="New key").click()
    page.get_by_label("Alias").fill(alias)
    page.get_by_label("Team", exact=True).select_option(label=team)
    page.get_by_label("Images / min").fill("20")
    page.get_by_label("Budget ($)").fill("1.5")
    page.get_by_role("button", name="Create key").click()
    shown = page.locator(".new-key")
    expect(shown).to_contain_text("will not be shown again")
    key = shown.locator("code.secret").inner_text().strip()
    assert key.startswith("sk-")
    screenshot(page, "keys")
    # The key lives only in that box: not in the URL, nor in the page's storage.
    assert key not in page.url
    stored = page.evaluate(
        "JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})"
    )
    assert key not in stored
    row = page.get_by_role("region", name="Keys").locator("tr", has_text=alias)
    expect(row).to_contain_text("20 ipm")
    expect(row).to_contain_text("$1.5000")
    expect(row).to_contain_text(team)
    # It works with the openai client.
    client = openai.OpenAI(api_key=key, base_url=console.base_url + "/v1", max_retries=0)
    image = client.images.generate(model="otters", prompt="an otter", size="64x64")
    assert image.data
    # Changing its limits and revoking it go through the page.
    row.get_by_role("button", name="Edit").click()
    page.get_by_label("Images / min").fill("30")
    page.get_by_role("button", name="Save").click()
    expect(row).to_contain_text("30 ipm")
    # Blocking its team stops the key; unblocking lets it through again.
    team_row = teams.locator("tr", has_text=team)
    team_row.get_by_role("button", name="Block").click()
    expect(row).to_contain_text("team blocked")
    with pytest.raises(openai.AuthenticationError):
        client.images.generate(model="otters", prompt="an otter", size="64x64")
    team_row.get_by_role("button", name="Unblock").click()
    expect(row).to_contain_text("active")
    row.get_by_role("button", name="Revoke").click()
    page.get_by_role("button", name="Revoke key").click()
    expect(row).to_have_count(0)
    with pytest.raises(openai.AuthenticationError):
        client.images.generate(model="otters", prompt="an otter", size="64x64")
    # Once dismissed, the key is gone from the page.
    page.get_by_role("button", name="Done").click()
    assert key not in page.content()
    watched_page.assert_clean()


def test_the_playground_edits_and_chats_about_an_uploaded_image(
    watched_page: WatchedPage, console: RunningProxy, tmp_path: Path
) -> None:
    picture = tmp_path / "otter.png"
    Image.new("RGBA", (64, 48), (40, 120, 200, 255)).save(picture)
    page = watched_page.page
    sign_in(page, console)
    open_page(page, "playground")
    page.get_by_role("tab", name="Edit").click()
    page.get_by_label("Model", exact=True).select_option("otters")
    page.get_by_label("Image", exact=True).set_input_files(picture)
    page.get_by_label("Prompt", exact=True).fill("the same otter, in blue")
    page.get_by_label("Size", exact=True).fill("64x48")
    page.get_by_role("button", name="Edit image").click()
    expect(page.locator(".results figure img")).to_have_count(1, timeout=SHOWN_MS)
    page.get_by_role("tab", name="Chat with an image").click()
    page.get_by_label("Model", exact=True).select_option("otters")
    page.get_by_label("Image", exact=True).set_input_files(picture)
    page.get_by_label("Message", exact=True).fill("What is in this image?")
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".bubble.assistant")
    # The mock describes the image it was sent: the upload reached the model.
    expect(answer).to_contain_text("64x48 image/png", timeout=SHOWN_MS)
    screenshot(page, "playground-chat")
    watched_page.assert_clean()


def test_every_page_renders_cleanly(watched_page: WatchedPage, console: RunningProxy) -> None:
    page = watched_page.page
    sign_in(page, console)
    client = openai.OpenAI(api_key=MASTER_KEY, base_url=console.base_url + "/v1", max_retries=0)
    client.images.generate(model="otters", prompt="an otter for the charts", size="64x64")
    open_page(page, "models")
    group = page.locator("section.model-group", has_text="otters").first
    group.get_by_role("button", name="Check health").click()
    expect(group.locator("table")).to_contain_text("healthy", timeout=SHOWN_MS)
    # Each deployment's row shows its own settings (paired with its state by id).
    deployments = group.locator("table.deployments tbody tr")
    expect(deployments).to_have_count(2)
    expect(deployments.filter(has_text="model_list[0]")).to_contain_text("provider default")
    expect(deployments.filter(has_text="model_list[2]")).to_contain_text("http://127.0.0.1:9/west")
    screenshot(page, "models")
    open_page(page, "spend")
    expect(page.locator("main svg.chart").first).to_be_visible()
    expect(page.locator("main .totals")).to_contain_text("Requests")
    screenshot(page, "spend")
    for name in ("requests", "gallery"):
        open_page(page, name)
        expect(page.locator("main img").first).to_be_visible(timeout=SHOWN_MS)
        screenshot(page, name)
    # keys.png shows a new key and playground.png an answer: each from its own test.
    for name in ("keys", "playground"):
        open_page(page, name)
        expect(page.locator("main .notice.error")).to_have_count(0)
    # Names from the API are text, never markup (an <img> would also be a failed request).
    hostile = '<img src="/nothing-here" onerror="document.title=1">'
    made = httpx.post(
        console.base_url + "/key/generate",
        json={"key_alias": hostile},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )
    assert made.status_code == 200, made.text
    open_page(page, "keys")
    keys = page.get_by_role("region", name="Keys")
    expect(keys.locator("strong", has_text=hostile)).to_have_count(1)
    expect(keys.locator("img")).to_have_count(0)
    watched_page.assert_clean()

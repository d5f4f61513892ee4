"""`dit serve` in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
loads the page from a server on 127.0.0.1, searches and picks a class, generates with a tiny model,
sees the images and the protocol card, is told why a bad request fails, and takes a screenshot."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("DIT_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytest.importorskip("fastapi", reason="the serve extra is not installed")

from dit.serve.app import Limits, create_app  # noqa: E402
from dit.serve.server import load_pipeline  # noqa: E402

from tests.helpers.sample import trained_run  # noqa: E402
from tests.helpers.serve import running_server  # noqa: E402


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    ckpt = trained_run(tmp_path_factory.mktemp("browser"))
    app = create_app(load_pipeline(str(ckpt), device="cpu"), Limits(max_images=8, max_steps=50), ckpt=ckpt.name)
    with running_server(app) as base:
        yield base


@pytest.fixture(scope="module")
def page(url):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1000, "height": 700})
        outside = []  # every request must stay on 127.0.0.1 (no CDN)
        context.on("request", lambda r: None if r.url.startswith(url) else outside.append(r.url))
        pg = context.new_page()
        pg.goto(url + "/")
        yield pg
        browser.close()
        assert not outside, outside


def test_pick_a_class_generate_and_see_the_images(page, tmp_path):
    page.wait_for_selector("#class-select option")
    page.fill("#class-search", "2")  # search narrows the list to the matching class
    assert page.locator("#class-select option").count() == 1
    page.select_option("#class-select", "2")
    page.fill("#num-images", "4")
    page.select_option("#sampler", "ddim")
    page.fill("#num-steps", "20")
    page.fill("#cfg-scale", "3")
    page.fill("#seed", "11")
    page.click("#generate")
    page.wait_for_function("document.querySelectorAll('#images img').length === 4", timeout=60_000)
    page.wait_for_function(
        "[...document.querySelectorAll('#images img')].every(i => i.complete && i.naturalWidth === 8)", timeout=10_000
    )
    assert page.inner_text("#message").startswith("done: 4 image(s), 20 steps")
    assert page.get_attribute("#grid-link", "href").endswith("/grid.png")
    card = page.inner_text("#card") if page.is_visible("#card") else page.locator("#card").text_content()
    assert '"sampler": "ddim"' in card and '"seed": 11' in card
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 1000
    keep = os.environ.get("DIT_SERVE_SCREENSHOT")  # e.g. docs/serve.png, to refresh docs/serve.md's picture
    if keep:
        shutil.copy(shot, keep)


def test_a_bad_request_is_explained_on_the_page(page):
    page.wait_for_selector("#class-select option")
    page.fill("#class-search", "")
    page.fill("#num-steps", "0")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#message').className === 'error'", timeout=10_000)
    assert page.inner_text("#message") == "num_steps: Input should be greater than or equal to 1"
    page.fill("#num-steps", "51")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#message').textContent.includes('at most 50')", timeout=10_000)

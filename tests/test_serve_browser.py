"""The web page in a real browser: `vitkit serve` on a free loopback port, Debian's headless
Chromium driven by Playwright, an image chosen in the page, the top-k labels and the rollout
overlay checked, and a screenshot saved. Skipped without /usr/bin/chromium, except under CI
(env CI set), where a missing browser fails the test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.serve_helpers import CLASSES, live_server, png_bytes, tiny_checkpoint

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               "--disable-quic", "--disable-dev-shm-usage"]


def _browser_or_skip():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI is set but /usr/bin/chromium is missing: .ci/run installs Debian's "
                        "chromium package")
        pytest.skip("no /usr/bin/chromium (apt-get install chromium) for the browser test")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("playwright (Python) is not installed")
    return sync_playwright


def test_page_classifies_an_uploaded_image_in_chromium(tmp_path):
    sync_playwright = _browser_or_skip()
    pytest.importorskip("fastapi")
    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    image = tmp_path / "photo.png"
    image.write_bytes(png_bytes(4, (96, 120)))
    screenshot = tmp_path / "page.png"
    with live_server(checkpoint) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('model').textContent"
                                   ".includes('classes')", timeout=20_000)
            page.set_input_files("#file", str(image))
            page.wait_for_selector("#results .row", timeout=30_000)
            page.wait_for_function("document.getElementById('status').textContent === 'done'",
                                   timeout=30_000)
            labels = page.locator("#results .label").all_inner_texts()
            overlay_loaded = page.evaluate(
                "() => { const img = document.getElementById('overlay');"
                " return img.complete && img.naturalWidth > 0 && img.src.startsWith('data:'); }")
            input_loaded = page.evaluate(
                "() => document.getElementById('input').naturalWidth > 0")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert sorted(labels) == sorted(CLASSES)  # top-5 of 3 classes: all of them, as bars
    assert overlay_loaded and input_loaded
    assert not errors, errors
    assert screenshot.stat().st_size > 5000


ATTACK_PAGE = """<!doctype html><html><body>
<form id="f" method="post" enctype="multipart/form-data" action="{url}/v1/predict" target="sink">
<input name="file" value="x"></form><iframe name="sink"></iframe>
<script>
const png = Uint8Array.from(atob("{png}"), c => c.charCodeAt(0));
fetch("{url}/v1/predict", {{method: "POST", mode: "no-cors", body: new Blob([png])}})
  .finally(() => {{ document.title = "fetched"; document.getElementById("f").submit(); }});
</script></body></html>"""


def test_a_page_on_another_port_cannot_post_to_the_server(tmp_path):
    """Chromium on a page served from another loopback port: its no-cors fetch and its form
    post reach the server and are refused (403) before anything is processed."""
    import base64
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    sync_playwright = _browser_or_skip()
    pytest.importorskip("fastapi")
    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    site = tmp_path / "site"
    site.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    with live_server(checkpoint) as url, ThreadingHTTPServer(("127.0.0.1", 0), handler) as other:
        png = base64.b64encode(png_bytes(2)).decode()
        (site / "attack.html").write_text(ATTACK_PAGE.format(url=url, png=png))
        threading.Thread(target=other.serve_forever, daemon=True).start()
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                     headless=True, args=LAUNCH_ARGS)
                try:
                    page = browser.new_page()
                    page.goto(f"http://127.0.0.1:{other.server_address[1]}/attack.html")
                    page.wait_for_function("document.title === 'fetched'", timeout=20_000)
                    page.wait_for_timeout(1500)  # the form post lands in the iframe
                    frame_text = page.frame(name="sink").content()
                finally:
                    browser.close()
        finally:
            other.shutdown()
        metrics = httpx.get(f"{url}/metrics").text
        assert 'endpoint="/v1/predict"' not in metrics  # nothing reached the endpoint
        assert "cross-origin" in frame_text  # the form post was answered 403 with the reason
        assert httpx.post(f"{url}/v1/predict", content=png_bytes(2)).status_code == 200

"""The web UI in a real headless Chromium, against the real frontend and API containers.

Chromium is Debian's (`apt-get install chromium`), driven by Playwright's Python package;
`playwright install` is never used. The screenshot goes to artifacts/ui-prediction.png.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import API_RUN, ARTIFACTS, FRONTEND_RUN, Docker, wait_for

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing under CI: apt-get install chromium (scripts/engine.sh toolchain)")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def stack(dock: Docker) -> str:
    net = dock.network()
    dock.run("mlops/inference-api:1.0.0", *API_RUN, "--network", net, "--network-alias", "inference-api")
    fe = dock.run("mlops/frontend:1.0.0", *FRONTEND_RUN, "-e", "EXPOSE_API_DOCS=1", "--network", net, ports=(8080,))
    wait_for(fe.url(8080, "/api/ready"), timeout=90)
    return fe.url(8080)


def watched_page(browser: Any, stack: str, height: int) -> tuple[Any, list[str], list[str]]:
    """A new page that records every request leaving the stack's origin and every console error."""
    page = browser.new_page(viewport={"width": 1280, "height": height})
    outside: list[str] = []
    page.on(
        "request", lambda r: None if r.url.startswith(stack) or r.url.startswith("data:") else outside.append(r.url)
    )
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return page, outside, errors


def test_fill_the_form_and_read_the_prediction(browser: Any, stack: str, model_doc: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    page, outside, console_errors = watched_page(browser, stack, height=1400)
    try:
        page.goto(stack + "/", wait_until="domcontentloaded")
        # Status strip from /api/health and /api/ready.
        page.wait_for_selector("#status-api.ok", timeout=15_000)
        page.wait_for_selector("#status-model.ok", timeout=15_000)
        assert "1.0.0" in page.inner_text("#status-model")

        # The form comes from /api/model: thirty fields, defaults at the medians, ranges set.
        page.wait_for_selector("#f-worst_area", timeout=15_000)
        inputs = page.locator("#fields input")
        assert inputs.count() == 30
        area = next(f for f in model_doc["features"] if f["name"] == "worst_area")
        field = page.locator("#f-worst_area")
        assert float(field.input_value()) == pytest.approx(area["median"])
        assert float(field.get_attribute("max")) == pytest.approx(area["accepted_max"])
        # Defaults read as a person writes them: no floating-point noise (13.274999999999999).
        for f in model_doc["features"]:
            shown = page.locator(f"#f-{f['name']}").input_value()
            assert float(shown) == pytest.approx(f["median"], rel=1e-12), (f["name"], shown)
            assert len(shown.replace("-", "").replace(".", "").lstrip("0")) <= 8, (f["name"], shown)

        # A typical benign record (the medians) first.
        page.click("#submit")
        page.wait_for_selector("#result:not([hidden])", timeout=15_000)
        assert page.text_content("#result-prediction") == "benign"

        # Then a large, irregular mass: every "worst" and "mean" measurement at the observed maximum.
        for f in model_doc["features"]:
            if f["name"].startswith(("worst_", "mean_")):
                page.fill(f"#f-{f['name']}", str(f["observed_max"]))
        page.click("#submit")
        # A locator assertion, not wait_for_function: the page's CSP forbids eval, rightly.
        expect(page.locator("#result-prediction")).to_have_text("malignant", timeout=15_000)
        probability = page.inner_text("#result-probability")
        assert probability.endswith("%") and 50.0 <= float(probability.rstrip(" %")) <= 100.0
        assert page.inner_text("#result-version") == "1.0.0"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ui-prediction.png"), full_page=True)

        # A value beyond the accepted range is refused by the API, naming the field.
        page.fill("#f-mean_radius", "500")
        page.click("#submit")
        page.wait_for_selector("#error:not([hidden])", timeout=15_000)
        assert "mean_radius" in page.inner_text("#error-list")
        assert page.locator("#result").is_hidden()
    finally:
        page.close()
    assert outside == [], f"the UI reached outside its origin: {outside}"
    assert [e for e in console_errors if "422" not in e] == []
    assert (ARTIFACTS / "ui-prediction.png").stat().st_size > 10_000


def test_api_docs_render_through_the_frontend_offline(browser: Any, stack: str) -> None:
    """Swagger UI at /api/docs, through the frontend and its CSP, from the image's own files."""
    from playwright.sync_api import expect

    page, outside, problems = watched_page(browser, stack, height=1000)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(stack + "/api/docs", wait_until="domcontentloaded")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("mlops inference API", timeout=20_000)
        expect(page.locator(".opblock-summary-path", has_text="/predict")).to_be_visible(timeout=10_000)
        # The operation expands and shows the request body schema from /api/openapi.json.
        page.click(".opblock-post .opblock-summary")
        expect(page.locator(".opblock-post .opblock-body")).to_be_visible(timeout=10_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "api-docs.png"))
    finally:
        page.close()
    assert outside == [], f"/api/docs reached outside its origin: {outside}"
    assert problems == [], problems

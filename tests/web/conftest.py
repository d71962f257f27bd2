"""Browser fixtures: Debian's chromium driven by Playwright, a logged-in context on the
live server, script errors and CSP reports checked at the end, screenshots kept."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("CSVAULT_TEST_CHROMIUM", "/usr/bin/chromium")
#: Where the browser tests save their screenshots (a CI artifact).
ARTIFACTS = Path(os.environ.get("CSVAULT_TEST_ARTIFACTS", "test-artifacts"))


def _chromium() -> str:
    path = shutil.which(CHROMIUM)
    if path is None:
        message = f"no chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    # Playwright's sync API runs an event loop in this thread; the ORM calls in the tests
    # are plain synchronous ones all the same.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_context(browser: Any, live_server: Any) -> Iterator[Callable[..., Any]]:
    """Make browser contexts on the live server; none may see a script error."""
    errors: list[str] = []

    def make(**options: Any) -> Any:
        context = browser.new_context(base_url=live_server.url, **options)
        context.on("weberror", lambda e: errors.append(str(e.error)))
        context.on(
            "console",
            lambda m: (
                errors.append(m.text)
                if m.type == "error" and "Failed to load resource" not in m.text
                else None
            ),
        )
        return context

    yield make
    assert errors == []


def log_in(page: Any, username: str = "alice", password: str = "pw-alice") -> None:
    page.goto("/login/?next=/")
    page.fill("#login-username", username)
    page.fill("#login-password", password)
    page.click("#login button[type=submit]")
    page.wait_for_selector("body[data-ready]")  # home.js has run: its handlers are in place


@pytest.fixture
def browser_context(new_context: Callable[..., Any], user: Any) -> Any:
    """A browser context logged in as alice, with one page open on the home page."""
    context = new_context()
    log_in(context.new_page())
    return context


def screenshot(page: Any, name: str) -> Path:
    """A full-page screenshot kept as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

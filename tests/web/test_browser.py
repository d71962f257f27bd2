"""The upload page in a real browser (Debian's chromium driven by Playwright): a tus
upload survives a cut connection and a reload, and the page follows the dataset to the end."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from csvault.datasets.models import Dataset
from csvault.pipeline.ingest import dataset_ingest
from csvault.pipeline.scan import dataset_scan
from tests.csvdata import to_csv, tricky_rows
from tests.helpers import stored_rows

CHROMIUM = os.environ.get("CSVAULT_TEST_CHROMIUM", "/usr/bin/chromium")
CHUNK = 64 * 1024  # small, so the upload takes many requests and the cut lands mid-upload
ROWS = tricky_rows(50_000)
DATA = to_csv(ROWS)
#: The stats line mid-upload: percent, bytes sent of total, speed, ETA.
STATS = re.compile(r"^\d+\.\d % · [\d.]+ [KM]?B of 3\.\d MB · [\d.]+ [KM]?B/s · ETA \d+ s$")


def _chromium() -> str:
    path = shutil.which(CHROMIUM)
    if path is None:
        message = f"no chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def browser_context(live_server: Any, user: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A logged-in browser context (alice), its pages' script errors checked at the end."""
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    # Playwright's sync API runs an event loop in this thread; the ORM calls in the tests
    # are plain synchronous ones all the same.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            context = browser.new_context(base_url=live_server.url)
            errors: list[str] = []
            context.on("weberror", lambda e: errors.append(str(e.error)))
            page = context.new_page()
            page.goto("/login/?next=/")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", "pw-alice")
            page.click("#login button[type=submit]")
            page.wait_for_selector("#upload")
            yield context
            assert errors == []
        finally:
            browser.close()


def _choose(page: Any, file: Any) -> None:
    page.evaluate(f"document.getElementById('upload').dataset.chunkSize = '{CHUNK}'")
    page.set_input_files("input[name=file]", files=file)


def _wait_message(page: Any, start: str, timeout: float = 30_000) -> None:
    page.wait_for_function(
        "start => document.getElementById('upload-message').textContent.startsWith(start)",
        arg=start,
        timeout=timeout,
    )


def _wait_percent(page: Any, percent: int) -> None:
    page.wait_for_function(
        "p => document.getElementById('upload-progress').value > p", arg=percent, polling=10
    )


def _finish(page: Any, dataset: Dataset) -> None:
    """The upload completes; the page then follows the dataset through the pipeline."""
    _wait_message(page, "Upload complete", timeout=60_000)
    dataset.refresh_from_db()
    assert dataset.status == "pending", dataset.error
    assert dataset.bytes_received == dataset.size == len(DATA)
    assert (page.text_content("#upload-stats") or "").startswith("100 % · 3.")
    row = f"#d-{dataset.id}"
    page.wait_for_selector(row)
    # The upload's URL leaves localStorage once the upload is complete.
    stored = "Object.keys(localStorage).filter(k => k.startsWith('tus::'))"
    assert page.evaluate(stored) == []

    assert dataset_scan(dataset_id=dataset.id, on_clean=None).status == "queued"
    assert dataset_ingest(dataset_id=dataset.id).status == "completed"
    assert [values for _, values in stored_rows(dataset.id)] == ROWS
    # The page polls the dataset's progress and shows it completed, with its exports.
    page.wait_for_selector(f"{row} td.status-completed", timeout=15_000)
    assert page.text_content(f"{row} td:nth-child(4)") == f"{len(ROWS):,}"
    assert page.is_visible(f"{row} a:has-text('CSV')")


@pytest.mark.django_db(transaction=True)
def test_a_cut_connection_mid_upload_resumes_and_the_page_follows_the_dataset(
    browser_context: Any, user: Any
) -> None:
    (page,) = browser_context.pages
    _choose(page, [{"name": "browser.csv", "mimeType": "text/csv", "buffer": DATA}])
    page.fill("input[name=name]", "from the browser")
    page.click("#upload-start")

    # Cut the network once part of the file is on the server.
    _wait_percent(page, 10)
    browser_context.set_offline(True)
    _wait_message(page, "Offline")
    (dataset,) = Dataset.objects.filter(owner=user)
    assert dataset.status == "uploading"
    assert 0 < dataset.bytes_received < len(DATA)
    assert dataset.name == "from the browser"
    assert page.is_visible("#upload-resume")
    assert STATS.match(page.text_content("#upload-stats") or ""), page.text_content("#upload-stats")

    browser_context.set_offline(False)  # the page resumes by itself
    _finish(page, dataset)


@pytest.mark.django_db(transaction=True)
def test_a_paused_upload_resumes_after_a_reload_once_the_same_file_is_chosen(
    browser_context: Any, user: Any, tmp_path: Path
) -> None:
    (page,) = browser_context.pages
    path = tmp_path / "reload.csv"
    path.write_bytes(DATA)
    _choose(page, str(path))
    page.click("#upload-start")
    _wait_percent(page, 10)
    page.click("#upload-pause")
    _wait_message(page, "Paused")
    (dataset,) = Dataset.objects.filter(owner=user)
    assert dataset.status == "uploading"
    sent = dataset.bytes_received
    assert 0 < sent < len(DATA)

    page.reload()
    page.wait_for_selector("#upload-unfinished:has-text('reload.csv')")
    _choose(page, str(path))
    page.click("#upload-start")
    _wait_message(page, "Resuming an earlier upload")
    _finish(page, dataset)
    assert Dataset.objects.filter(owner=user).count() == 1

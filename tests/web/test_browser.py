"""The upload page in a real browser (Debian's chromium driven by Playwright): a tus
upload survives a cut connection and a reload, and the page follows the dataset to the end."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from csvault.datasets.models import Dataset
from csvault.pipeline.ingest import dataset_ingest
from csvault.pipeline.scan import dataset_scan
from tests.csvdata import to_csv, tricky_rows
from tests.helpers import stored_rows

CHUNK = 64 * 1024  # small, so the upload takes many requests and the cut lands mid-upload
ROWS = tricky_rows(50_000)
DATA = to_csv(ROWS)
#: The stats line mid-upload: percent, bytes sent of total, speed, ETA.
STATS = re.compile(r"^\d+\.\d % · [\d.]+ [KM]?B of 3\.\d MB · [\d.]+ [KM]?B/s · ETA \d+ s$")
ITEM = ".upload-item"


def _choose(page: Any, file: Any) -> None:
    """Choosing a file starts its upload (in small chunks here)."""
    page.evaluate(f"document.getElementById('upload').dataset.chunkSize = '{CHUNK}'")
    page.set_input_files("#upload-files", files=file)


def _wait_message(page: Any, start: str, timeout: float = 30_000) -> None:
    page.wait_for_function(
        "start => (document.querySelector('.upload-item .upload-message')?.textContent || '')"
        ".startsWith(start)",
        arg=start,
        timeout=timeout,
    )


def _wait_percent(page: Any, percent: int) -> None:
    page.wait_for_function(
        "p => document.querySelector('.upload-item progress').value > p", arg=percent, polling=10
    )


def _finish(page: Any, dataset: Dataset) -> None:
    """The upload completes; the page then follows the dataset through the pipeline."""
    _wait_message(page, "Uploaded. Scanning and ingesting", timeout=60_000)
    dataset.refresh_from_db()
    assert dataset.status == "pending", dataset.error
    assert dataset.bytes_received == dataset.size == len(DATA)
    assert (page.text_content(f"{ITEM} .upload-stats") or "").startswith("100 % · 3.")
    row = f"#d-{dataset.id}"
    page.wait_for_selector(row)
    # The upload's URL leaves localStorage once the upload is complete.
    stored = "Object.keys(localStorage).filter(k => k.startsWith('tus::'))"
    assert page.evaluate(stored) == []

    assert dataset_scan(dataset_id=dataset.id, on_clean=None).status == "queued"
    assert dataset_ingest(dataset_id=dataset.id).status == "completed"
    assert [values for _, values in stored_rows(dataset.id)] == ROWS
    # The page polls the dataset's progress and shows it completed, in the list and
    # in the upload's own line.
    page.wait_for_selector(f"{row} .status-completed", timeout=15_000)
    assert page.text_content(f"{row} td:nth-child(3)") == f"{len(ROWS):,}"
    _wait_message(page, f"Completed: {len(ROWS):,} rows.")


@pytest.mark.django_db(transaction=True)
def test_a_cut_connection_mid_upload_resumes_and_the_page_follows_the_dataset(
    browser_context: Any, user: Any
) -> None:
    (page,) = browser_context.pages
    page.click("#upload-options summary")
    page.fill("#upload-name", "from the browser")
    _choose(page, [{"name": "browser.csv", "mimeType": "text/csv", "buffer": DATA}])

    # Cut the network once part of the file is on the server.
    _wait_percent(page, 10)
    browser_context.set_offline(True)
    _wait_message(page, "Offline")
    (dataset,) = Dataset.objects.filter(owner=user)
    assert dataset.status == "uploading"
    assert 0 < dataset.bytes_received < len(DATA)
    assert dataset.name == "from the browser"
    assert page.is_visible(f"{ITEM} .upload-resume")
    stats = page.text_content(f"{ITEM} .upload-stats") or ""
    assert STATS.match(stats), stats

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
    _wait_percent(page, 10)
    page.click(f"{ITEM} .upload-pause")
    _wait_message(page, "Paused")
    (dataset,) = Dataset.objects.filter(owner=user)
    assert dataset.status == "uploading"
    sent = dataset.bytes_received
    assert 0 < sent < len(DATA)

    page.reload()
    page.wait_for_selector("#upload-unfinished:has-text('reload.csv')")
    _choose(page, str(path))
    _wait_message(page, "Resuming an earlier upload")
    _finish(page, dataset)
    assert Dataset.objects.filter(owner=user).count() == 1

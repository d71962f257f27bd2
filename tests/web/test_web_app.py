"""The web app as a new user meets it, in a real browser (Debian's chromium driven by
Playwright) against the live server and a real Celery worker: drag and drop, progress to
completed, the rows and the profile, a broken file's place, cancel, delete after
confirming, every dataset reachable, a phone-sized screen, a throttled login.
Screenshots of the main screens are kept (tests/web/conftest.py, ARTIFACTS)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from csvault.datasets.models import Dataset
from tests.helpers import client_for, ingest, rates, upload
from tests.web.conftest import log_in, screenshot

pytestmark = pytest.mark.django_db(transaction=True)

SALES = "id;city;amount;day\n" + "".join(
    f"{i};{['Lyon', 'Köln', 'Porto'][i % 3]};{i},5;2026-01-{1 + i % 28:02d}\n" for i in range(1, 61)
)
BROKEN = "a,b,c\n1,2,3\n4,5\n6,7,8\n"


def _drop(page: Any, files: dict[str, str]) -> None:
    """Drop files on the page as a user drags them from a file manager."""
    transfer = page.evaluate_handle(
        """files => {
            const dt = new DataTransfer();
            for (const [name, text] of Object.entries(files)) {
                dt.items.add(new File([text], name, { type: "text/csv" }));
            }
            return dt;
        }""",
        files,
    )
    page.dispatch_event("body", "dragenter", {"dataTransfer": transfer})
    assert page.is_visible("#drop-overlay")
    page.dispatch_event("body", "drop", {"dataTransfer": transfer})
    assert not page.is_visible("#drop-overlay")


def _item(name: str) -> str:
    return f".upload-item[data-file='{name}']"


def _no_horizontal_overflow(page: Any) -> None:
    """Nothing is cut off: the page is no wider than the screen, and no element
    sticks out of it (wide data tables scroll inside their own box)."""
    width = page.evaluate("innerWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    outside = page.evaluate(
        """() => Array.from(document.querySelectorAll('body *'))
            .filter(e => !e.closest('.scroll') && !e.closest('[hidden]'))
            .filter(e => { const r = e.getBoundingClientRect();
                           return r.width > 0 && (r.right > innerWidth + 1 || r.left < -1); })
            .filter(e => !e.classList.contains('skip'))
            .map(e => e.tagName + '#' + e.id + '.' + e.className)"""
    )
    assert outside == []


def test_drop_two_files_follow_them_to_the_end_then_read_the_rows_and_the_profile(
    browser_context: Any, celery_worker: Any, user: Any
) -> None:
    (page,) = browser_context.pages
    _drop(page, {"sales.csv": SALES, "broken.csv": BROKEN})

    # Each upload's line ends with the dataset's final status, not "uploaded".
    page.wait_for_selector(f"{_item('sales.csv')}[data-final=completed]", timeout=60_000)
    page.wait_for_selector(f"{_item('broken.csv')}[data-final=failed]", timeout=60_000)
    assert page.text_content(f"{_item('sales.csv')} .upload-message") == "Completed: 60 rows. Open"
    assert (page.text_content(f"{_item('sales.csv')} .upload-stats") or "").startswith(
        "100 % · 1.5 KB of 1.5 KB"
    )
    sales = Dataset.objects.get(owner=user, name="sales.csv")
    broken = Dataset.objects.get(owner=user, name="broken.csv")
    assert (sales.status, broken.status) == ("completed", "failed")

    # The list: both rows, with status, rows, size and format.
    row = f"#d-{sales.id}"
    page.wait_for_selector(f"{row} .status-completed")
    cells = page.locator(f"{row} td").all_inner_texts()
    assert cells[0] == "sales.csv"
    assert cells[1:5] == ["Completed", "60", "1.5 KB", "semicolon · utf-8"]
    assert page.is_visible(f"#d-{broken.id} .status-failed")
    screenshot(page, "home")

    # The dataset page: timeline, the rows as in the file, the profile of each column.
    page.click(f"{row} a")
    page.wait_for_selector("#preview tbody tr")
    assert page.text_content("#ds-name") == "sales.csv"
    steps = page.locator("#ds-timeline li").all_text_contents()
    assert steps == [
        "Uploaded (done)", "Scanned for malware (done)", "Ingested (done)", "Completed (done)"
    ]  # fmt: skip
    head = page.locator("#preview thead th").all_inner_texts()
    assert head == ["Row", "id", "city", "amount", "day"]
    first = page.locator("#preview tbody tr").first.locator("th, td").all_inner_texts()
    assert first == ["1", "1", "Köln", "1,5", "2026-01-02"]
    assert page.locator("#preview tbody tr").count() == 25
    assert page.text_content("#rows-range") == "Rows 1–25 of 60"
    page.click("#rows-next")
    page.wait_for_selector("#rows-range:has-text('Rows 26–50 of 60')")
    page.fill("#rows-goto-row", "59")
    page.click("#rows-goto button")
    page.wait_for_selector("#rows-range:has-text('Rows 59–60 of 60')")
    assert page.is_disabled("#rows-next")
    page.wait_for_selector("#profile tbody tr")
    profile = [r.split("\t") for r in page.locator("#profile tbody tr").all_inner_texts()]
    assert profile == [
        ["1", "id", "integer", "0", "1", "60", "60"],
        ["2", "city", "text", "0", "", "", "3"],
        ["3", "amount", "number", "0", "1.5", "60.5", "60"],
        ["4", "day", "date", "0", "2026-01-01", "2026-01-28", "28"],
    ]
    assert page.get_attribute("#ds-export-csv", "href") == (
        f"/api/datasets/{sales.id}/export/?format=csv"
    )
    assert page.is_hidden("#ds-cancel")
    screenshot(page, "dataset")

    # A phone-sized screen: nothing cut off on either page.
    page.set_viewport_size({"width": 360, "height": 780})
    _no_horizontal_overflow(page)
    screenshot(page, "dataset-360px")
    page.goto("/")
    page.wait_for_selector(f"{row} .status-completed")
    _no_horizontal_overflow(page)
    screenshot(page, "home-360px")

    # The broken file's page says where it broke.
    page.goto(f"/datasets/{broken.id}/")
    page.wait_for_selector("#ds-error:not([hidden])")
    assert page.text_content("#ds-error .error-message") == (
        "Row 2 (line 3) has 2 fields; expected 3 like the header."
    )
    assert page.text_content("#ds-error .error-place") == "Row 2, column 3, line 3"
    assert page.locator("#ds-timeline li").all_text_contents() == [
        "Uploaded (done)", "Scanned for malware (done)", "Ingested (stopped)", "Failed (stopped)"
    ]  # fmt: skip
    assert page.is_hidden("#ds-preview")
    _no_horizontal_overflow(page)
    screenshot(page, "dataset-failed-360px")


def test_cancel_a_waiting_dataset_then_delete_it_after_confirming(
    browser_context: Any, user: Any
) -> None:
    (page,) = browser_context.pages
    # No worker runs: the dataset waits for its scan, so it can be cancelled.
    page.set_input_files(
        "#upload-files", files=[{"name": "wait.csv", "mimeType": "text/csv", "buffer": b"a\n1\n"}]
    )
    page.wait_for_selector(f"{_item('wait.csv')} .upload-message:has-text('Uploaded.')")
    dataset = Dataset.objects.get(owner=user)
    page.goto(f"/datasets/{dataset.id}/")
    page.wait_for_selector("#ds-cancel:not([hidden])")
    assert page.text_content("#ds-status") == "Waiting for the scan"
    assert page.is_visible("#ds-progress")
    page.click("#ds-cancel")
    page.wait_for_selector("#ds-status:has-text('Cancelled')")
    dataset.refresh_from_db()
    assert dataset.status == "cancelled"
    assert page.is_hidden("#ds-cancel")
    assert page.is_hidden("#ds-progress")

    # Delete asks first, naming the dataset; keeping it deletes nothing.
    page.click("#ds-delete")
    assert page.is_visible("#delete-dialog")
    assert page.text_content("#delete-title") == "Delete “wait.csv”?"
    screenshot(page, "delete-confirmation")
    page.click("#delete-keep")
    assert page.is_hidden("#delete-dialog")
    dataset.refresh_from_db()
    assert dataset.deleted_at is None

    page.click("#ds-delete")
    page.click("#delete-confirm")
    page.wait_for_url("**/")
    page.wait_for_selector("#notice:has-text('Deleted “wait.csv”.')")
    dataset.refresh_from_db()
    assert dataset.deleted_at is not None
    assert page.locator("#datasets tbody tr").count() == 0
    page.wait_for_selector("#list-empty:has-text('No datasets yet')")


def test_every_dataset_is_reachable_and_the_list_filters_by_name_and_status(
    browser_context: Any, user: Any, settings: Any
) -> None:
    rates(settings, upload="1000/min")
    api = client_for(user)
    for n in range(55):
        ingest(upload(api, b"a\n1\n" if n % 11 else b"a\n1,2\n", name=f"set {n:02d}"))
    (page,) = browser_context.pages
    page.reload()
    page.wait_for_selector("#datasets tbody tr")
    names = lambda: page.locator("#datasets td.name a").all_inner_texts()  # noqa: E731
    assert len(names()) == 50
    assert names()[0] == "set 54"
    page.click("#list-more")
    page.wait_for_function("() => document.querySelectorAll('#datasets tbody tr').length === 55")
    assert names() == [f"set {n:02d}" for n in reversed(range(55))]
    assert page.is_hidden("#list-more")

    page.fill("#filter-search", "set 1")
    page.wait_for_function("() => document.querySelectorAll('#datasets tbody tr').length === 10")
    assert names() == [f"set {n}" for n in range(19, 9, -1)]
    page.select_option("#filter-status", "failed")
    page.wait_for_function("() => document.querySelectorAll('#datasets tbody tr').length === 1")
    assert names() == ["set 11"]
    page.fill("#filter-search", "")
    page.wait_for_function("() => document.querySelectorAll('#datasets tbody tr').length === 5")
    assert names() == ["set 44", "set 33", "set 22", "set 11", "set 00"]


def test_a_throttled_login_reads_as_a_sentence(
    new_context: Callable[..., Any], user: Any, settings: Any
) -> None:
    rates(settings, login="2/min")
    page = new_context().new_page()
    page.goto("/login/")
    for _ in range(2):
        page.fill("#login-username", "alice")
        page.fill("#login-password", "wrong")
        page.click("#login button[type=submit]")
        page.wait_for_selector("#login .error:has-text('Wrong user name or password.')")
    page.fill("#login-username", "alice")
    page.fill("#login-password", "pw-alice")
    page.click("#login button[type=submit]")
    message = page.text_content("#login .error") or ""
    assert message.startswith("Too many login attempts from your address. Try again in ")
    assert message.endswith(" seconds.")
    assert "{" not in (page.text_content("body") or "")
    screenshot(page, "login-throttled")


def test_an_ended_session_reads_as_a_sentence_with_a_login_link(
    new_context: Callable[..., Any], user: Any
) -> None:
    context = new_context()
    page = context.new_page()
    log_in(page)
    context.clear_cookies()
    page.fill("#filter-search", "x")
    page.wait_for_selector("#list-error:not([hidden])")
    assert page.text_content("#list-error") == (
        "Your session has ended. Log in again to go on. Log in"
    )
    assert page.get_attribute("#list-error a", "href") == "/login/?next=%2F"


def test_many_unfinished_datasets_are_polled_in_turn_within_the_read_throttle(
    browser_context: Any, user: Any, settings: Any
) -> None:
    """Thirty datasets waiting for their scan (no worker): the page polls each one's
    progress, at most eight requests a second, not thirty."""
    rates(settings, upload="1000/min")
    settings.CSVAULT_MAX_ACTIVE_DATASETS = 100
    api = client_for(user)
    ids = {upload(api, b"a\n1\n", name=f"wait {n:02d}").json()["id"] for n in range(30)}
    (page,) = browser_context.pages
    polls: list[tuple[float, str]] = []

    def count(request: Any) -> None:
        if request.url.endswith("/progress/"):
            polls.append((time.monotonic(), request.url.split("/")[-3]))

    page.on("request", count)
    page.reload()
    page.wait_for_selector("#datasets tbody tr")
    deadline = time.monotonic() + 30
    while {dataset for _, dataset in polls} != ids and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert {dataset for _, dataset in polls} == ids
    # Eight per tick of a one-second timer: at most two ticks in the first 1.5 s.
    first = polls[0][0]
    assert sum(1 for t, _ in polls if t < first + 1.5) <= 16

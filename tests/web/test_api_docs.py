"""/api/docs/ (Swagger UI), the Django admin, the browsable API and the web app's pages in
a real browser (Debian's chromium driven by Playwright) under the Content-Security-Policy:
everything comes from csvault itself (every request to another host is aborted and
counted) and no script error or policy violation happens.

The pages are opened as http://csvault.test:PORT (mapped to the live server), not as
localhost, which browsers and Swagger UI treat specially (Swagger UI's online validator,
for one, is skipped for localhost only)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.web.conftest import _chromium, log_in, screenshot

pytestmark = pytest.mark.django_db(transaction=True)

HOST = "csvault.test"
#: Runs before any script of each page (outside its policy): each violation is reported
#: on the console as well as Chromium's own "Refused to ..." line.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => console.error(
  `securitypolicyviolation: ${e.violatedDirective} blocked ${e.blockedURI || "inline code"}`
  + ` in ${e.sourceFile || e.documentURI}:${e.lineNumber}`));
"""


@dataclass
class Watch:
    """A browser context on the live server and what its pages did."""

    context: Any
    requested: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)  # requests to other hosts (aborted)
    failed: list[str] = field(default_factory=list)  # csvault's own answers >= 400
    violations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def route(self, route: Any) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname != HOST:
            self.elsewhere.append(url)
            route.abort()
        else:
            self.requested.append(url)
            route.continue_()

    def console(self, message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or text.startswith("securitypolicyviolation"):
            self.violations.append(text)
        # Failed requests are counted by URL (elsewhere, failed) instead.
        elif message.type == "error" and "Failed to load resource" not in text:
            self.errors.append(text)

    def response(self, response: Any) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.status} {response.url}")

    def open(self, page: Any, path: str) -> None:
        """Load a page and let it settle; what went wrong so far fails here, by name."""
        page.goto(path)
        page.wait_for_load_state("networkidle")
        self.assert_clean()

    def assert_clean(self) -> None:
        assert self.elsewhere == []
        assert self.violations == []
        assert self.errors == []
        assert self.failed == []


@pytest.fixture
def watch(live_server: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Watch]:
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, HOST]
    origin = f"http://{HOST}:{urlsplit(live_server.url).port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable,
            args=[
                "--no-sandbox",
                f"--host-resolver-rules=MAP {HOST} 127.0.0.1",
                # Plain http, trusted as production's https is (Secure cookies, the
                # Cross-Origin-Opener-Policy header), as Chromium trusts localhost.
                f"--unsafely-treat-insecure-origin-as-secure={origin}",
            ],
        )
        try:
            context = browser.new_context(base_url=origin)
            watched = Watch(context)
            context.route("**/*", watched.route)
            context.add_init_script(REPORT_VIOLATIONS)
            context.on("console", watched.console)
            context.on("response", watched.response)
            context.on("weberror", lambda e: watched.errors.append(str(e.error)))
            yield watched
        finally:
            browser.close()


def test_the_api_docs_render_every_operation_from_csvault_alone(watch: Watch) -> None:
    page = watch.context.new_page()
    watch.open(page, "/api/docs/")
    for path in ("/api/datasets/", "/api/datasets/{dataset_id}/rows/", "/api/uploads/{dataset_id}"):
        page.wait_for_selector(f'.opblock-summary-path[data-path="{path}"]')

    # An operation opened: its Idempotency-Key header and its error answers.
    upload = "#operations-datasets-datasets_create"
    page.click(f"{upload} .opblock-summary-control")
    page.wait_for_selector(f'{upload} tr[data-param-name="Idempotency-Key"]')
    for status in ("201", "200", "400", "401", "413", "415", "429", "503"):
        page.wait_for_selector(f'{upload} tr.response[data-code="{status}"]')
    page.wait_for_selector("#model-Error")
    page.wait_for_load_state("networkidle")
    screenshot(page, "api-docs")

    # Swagger UI's files came from csvault's static files, its init script from ?script.
    local = [urlsplit(url).path for url in watch.requested]
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in local
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css" in local
    assert "/api/schema/" in local
    watch.assert_clean()


@pytest.fixture
def admin_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw-root")


def test_the_django_admin_works_under_the_policy(watch: Watch, admin_user: Any, user: Any) -> None:
    page = watch.context.new_page()
    watch.open(page, "/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "pw-root")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    page.wait_for_load_state("networkidle")

    # A change list: selecting a row updates the actions bar (admin/js/actions.js).
    watch.open(page, "/admin/auth/user/")
    page.check(f'input.action-select[value="{user.pk}"]')
    page.wait_for_selector(".action-counter:has-text('1 of 2 selected')")

    # A change form: the two-box selector (SelectFilter2.js) and the date shortcuts
    # (DateTimeShortcuts.js) are built by scripts; "Today" fills the date in.
    watch.open(page, f"/admin/auth/user/{user.pk}/change/")
    page.wait_for_selector("#id_groups_from")
    page.fill("#id_date_joined_0", "")
    page.click("#id_date_joined_0 ~ .datetimeshortcuts a:has-text('Today')")
    assert page.input_value("#id_date_joined_0") != ""
    screenshot(page, "admin-change-form")

    watch.open(page, "/admin/audit/auditevent/")
    page.wait_for_selector("#result_list")
    watch.assert_clean()


def test_the_web_app_and_the_browsable_api_work_under_the_policy(watch: Watch, user: Any) -> None:
    page = watch.context.new_page()
    watch.open(page, "/login/")
    log_in(page)
    page.wait_for_load_state("networkidle")
    watch.open(page, "/api/datasets/")  # the browsable API, as a browser asks for it
    page.wait_for_selector(".response-info")
    watch.assert_clean()

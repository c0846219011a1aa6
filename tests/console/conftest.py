"""Browser tests of the operators' console: Playwright driving Debian's Chromium against the running service."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from tests.service import REPO_ROOT, Service

CHROMIUM = "/usr/bin/chromium"
API_KEY = "console-test-key-7f3a"
OPERATOR = ("operator", "operator-password-1")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so the page fixture knows whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="module")
def console_service(tmp_path_factory, engine_env) -> Service:
    """The service with an API key set (the console must not need it) and an operator account."""
    env = {**engine_env, "LLM_MANAGER_API_KEY": API_KEY, "LLM_MANAGER_DOWNLOAD_PART_THRESHOLD_MB": "1"}
    instance = Service(tmp_path_factory.mktemp("console"), env=env).start()
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "manage.py"), "createsuperuser", "--noinput", "--email", "ops@example.com"],
        env={**instance.env, "DJANGO_SUPERUSER_USERNAME": OPERATOR[0], "DJANGO_SUPERUSER_PASSWORD": OPERATOR[1]},
        cwd=REPO_ROOT, check=True, capture_output=True,
    )
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        yield browser
        browser.close()


def watch_errors(page, errors: list[str]) -> None:
    page.on("console", lambda message: message.type == "error"
            and errors.append(f"{message.text} at {message.location.get('url')}"))
    page.on("pageerror", lambda error: errors.append(str(error)))


@dataclass
class Console:
    """A signed-in browser page on the console, and what its JavaScript reported as errors."""

    page: object
    url: str
    errors: list[str] = field(default_factory=list)

    def new_tab(self):
        """Another page of the same signed-in browser, its script errors counted with the first's."""
        tab = self.page.context.new_page()
        watch_errors(tab, self.errors)
        return tab

    def open(self, path: str) -> None:
        self.page.goto(self.url + path)

    def message(self, level: str = "success") -> str:
        return self.page.locator(f"ul.messagelist li.{level}").last.text_content()


@pytest.fixture
def console(request, chromium, console_service, tmp_path) -> Console:
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(20_000)
    page = context.new_page()
    opened = Console(page, console_service.url)
    watch_errors(page, opened.errors)
    opened.open("/admin/login/")
    page.fill("#id_username", OPERATOR[0])
    page.fill("#id_password", OPERATOR[1])
    page.click("input[type=submit]")
    page.wait_for_url(f"{console_service.url}/admin/")
    yield opened
    report = getattr(request.node, "report_call", None)
    if report is None or report.failed:
        shot = tmp_path / "failure.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failed page: {shot}")
    context.close()

"""Plumbing of the browser tests: Debian's Chromium driven by selenium through chromium-driver,
and a live embedded node serving its dashboard (see libdcron/web/).

Chromium is started with the flags a machine with loopback only needs (no sandbox: tests may run
as root) and a fresh profile, by the driver at ``/usr/bin/chromedriver``: selenium-manager never
looks for (or downloads) a browser.  ``DCRON_TEST_CHROMIUM`` / ``DCRON_TEST_CHROMEDRIVER`` name
other binaries.  Without them, or without selenium, the tests are skipped; with ``CI`` set they
fail instead (as a missing service does: tests/conftest.py).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

import pytest

from libdcron.errors import NotFoundError
from libdcron.node import Node
from libdcron.testing import embedded_node, wait_for

CHROMIUM = os.environ.get("DCRON_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DCRON_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
#: Headless, no network but loopback, nothing started in the background, no sandbox (root).
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
)
#: Longest wait for something a page should show (a run's end takes a few seconds).
WAIT = 15.0


def missing(message: str) -> NoReturn:
    """Skip the test, or fail it in CI (``CI`` set), as tests/conftest.py does for services."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def start_chromium(user_data: str, window: str = "1280,900") -> Any:
    """A selenium driver of the local Chromium, with a fresh profile in ``user_data``."""
    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (shutil.which(binary) and os.access(binary, os.X_OK)):
            missing(f"{binary} is not installed (apt install {package}): the browser tests need it")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("selenium is not installed (pip install 'selenium>=4.20'): the browser tests need it")
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager: never download anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--window-size={window}", f"--user-data-dir={user_data}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    """One headless Chromium for the module."""
    user_data = tempfile.mkdtemp(prefix="dcron-chromium-")
    try:
        browser = start_chromium(user_data)
        try:
            browser.set_page_load_timeout(20)
            yield browser
        finally:
            browser.quit()
    finally:
        shutil.rmtree(user_data, ignore_errors=True)


# -- HTTP without the browser (selenium cannot see statuses) -----------------------------------


@dataclass
class Answer:
    status: int
    headers: Any
    body: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def fetch(
    url: str,
    token: str | None = None,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """GET ``url`` (POST ``form`` when given), with ``Authorization: Bearer token``; no redirects."""
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    data = urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, headers=sent, method="GET" if form is None else "POST")
    try:
        with _OPENER.open(request, timeout=10) as answer:
            return Answer(answer.status, answer.headers, answer.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.headers, exc.read())


# -- a node and its dashboard, in the browser --------------------------------------------------


class Site:
    """A live node's dashboard, and the browser looking at it."""

    def __init__(self, node: Node, driver: Any, root: Path) -> None:
        assert node.web is not None, "the node serves no dashboard"
        self.node, self.driver, self.root = node, driver, root
        self.base = node.web.url.rstrip("/")
        self.token = (Path(node.settings.keys_dir or root / "data" / "keys") / "http.token").read_text().strip()

    # HTTP
    def fetch(self, path: str, **kw: Any) -> Answer:
        kw.setdefault("token", self.token)
        return fetch(self.base + path, **kw)

    # the browser
    def open(self, path: str) -> None:
        """Go to ``path``, signing in first when the dashboard asks for the token."""
        self.driver.get(self.base + path)
        if self.on_sign_in_page():
            self.sign_in(self.token)
            self.wait(lambda d: not self.on_sign_in_page(), message=f"signed in, on {path}")

    def sign_out(self) -> None:
        self.driver.get(self.base + "/login")
        self.driver.delete_all_cookies()

    def on_sign_in_page(self) -> bool:
        return bool(self.all("#sign-in"))

    def sign_in(self, token: str) -> None:
        field = self.css("#token")
        field.clear()
        field.send_keys(token)
        self.css("#sign-in").click()

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def texts(self, selector: str) -> list[str]:
        return [e.text for e in self.all(selector)]

    def text(self, selector: str) -> str:
        """The text of the first element matching ``selector`` now ("" when there is none)."""
        from selenium.common.exceptions import StaleElementReferenceException

        try:
            found = self.all(selector)
            return str(found[0].text) if found else ""
        except StaleElementReferenceException:  # the page reloaded under us: ask again
            return ""

    def wait(self, condition: Callable[[Any], Any], timeout: float = WAIT, message: str = "") -> Any:
        """Poll ``condition(driver)`` every 0.1 s until it is truthy (selenium's WebDriverWait)."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        wait = WebDriverWait(
            self.driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
        )
        return wait.until(condition, message)

    # the node
    def schedule(self, name: str, text: str, schedule: str = "0 0 1 1 *", **fields: Any) -> dict[str, Any]:
        """Register ``name`` running the sh script ``text`` (through the node's API)."""
        body = {
            "name": name,
            "schedule": schedule,
            "interpreter": "sh",
            "script_content": base64.b64encode(text.encode()).decode(),
            **fields,
        }
        return dict(self.node.api.schedule(body))

    def run(self, name: str) -> str:
        """Start a manual run of ``name`` now; its execution id, once it is recorded."""
        exec_id = str(self.node.api.run({"name": name})["execution"])
        wait_for(lambda: self._recorded(exec_id), 10, message=f"{exec_id} recorded")
        return exec_id

    def _recorded(self, exec_id: str) -> bool:
        try:
            self.node.api.records.execution(exec_id)
        except NotFoundError:
            return False
        return True

    def ended(self, exec_id: str) -> dict[str, Any]:
        """The execution once it ended and its log (if it started) is uploaded."""

        def done() -> dict[str, Any] | None:
            ex = self.node.api.records.execution(exec_id)
            return ex.to_wire() if ex.status.terminal and (ex.log or ex.started is None) else None

        return wait_for(done, WAIT, message=f"{exec_id} ended")

    def log(self, exec_id: str) -> bytes:
        reply = self.node.api.logs({"execution": exec_id, "offset": 0})
        assert reply["eof"], "a test log fits in one chunk"
        return base64.b64decode(reply["data"])


def run_path(exec_id: str) -> str:
    return f"/runs/{quote(exec_id, safe='')}"


@pytest.fixture(scope="module")
def start_site(driver: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Site]]:
    """Start a node serving its dashboard (``start_site(**settings)``); stopped after the module."""
    from contextlib import ExitStack

    with ExitStack() as stack:

        def start(**settings: Any) -> Site:
            root = tmp_path_factory.mktemp("browser")
            settings.setdefault("http", "tcp://127.0.0.1:0")
            node = stack.enter_context(embedded_node(root, **settings))
            return Site(node, driver, root)

        yield start

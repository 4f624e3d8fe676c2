"""The dashboard in real headless Chromium (Debian's ``chromium`` driven through ``chromium-driver``
by selenium), against a live embedded node: sign in, follow a job to a run and its log, watch a
running log grow, filter, and use a write action.

Without Chromium or its driver these tests are skipped, and fail when ``CI`` is set (CI installs
both: scripts/install-services.sh).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libdcron.client import Client
from libdcron.node import Node
from libdcron.testing import client_for, embedded_node, wait_for

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("DCRON_TEST_CHROMIUM", "/usr/bin/chromium")
DRIVER = os.environ.get("DCRON_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
YEARLY = "0 0 1 1 *"
#: Chromium's flags for a machine with no network but loopback (and no sandbox as root).
FLAGS = [
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
    "--window-size=1280,900",
]


def chromium(user_data: str) -> Any:
    """A selenium driver of Debian's Chromium (never one selenium-manager would download)."""
    if not (shutil.which(CHROMIUM) and shutil.which(DRIVER)):
        message = f"Chromium ({CHROMIUM}) and its driver ({DRIVER}) are needed: apt install chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={user_data}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)


class Dash:
    def __init__(self, node: Node, client: Client, driver: Any, base: str, token: str) -> None:
        self.node, self.client, self.driver, self.base, self.token = node, client, driver, base, token

    def open(self, path: str, sign_in: bool = True) -> None:
        """Go to ``path``; sign in first if the browser is not yet (each test stands alone)."""
        self.driver.get(self.base + path)
        if sign_in and self.driver.title.startswith("Sign in"):
            self.sign_in(self.token)
            self.wait(lambda d: not d.title.startswith("Sign in"), message="signed in")

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def wait(self, condition: Any, timeout: float = 10, message: str = "") -> Any:
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(condition, message)

    def sign_in(self, token: str) -> None:
        self.css("#token").clear()
        self.css("#token").send_keys(token)
        self.css("#sign-in").click()


def write_job(client: Client, root: Path, name: str, text: str) -> None:
    path = root / f"{name}.sh"
    path.write_text(text)
    client.schedule(name, YEARLY, "sh", path)


def ended(client: Client, name: str, count: int = 1) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        rows = [e for e in client.executions(name, limit=50) if e["status"] != "running"]
        return rows if len(rows) >= count else None

    return wait_for(done, 15, message=f"{count} ended runs of {name}")


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    root = tmp_path_factory.mktemp("browser")
    user_data = tempfile.mkdtemp(prefix="dcron-chromium-")
    driver = chromium(user_data)
    try:
        with embedded_node(root, http="tcp://127.0.0.1:0", http_write=True) as node, client_for(node) as client:
            assert node.web is not None
            token = (root / "data" / "keys" / "http.token").read_text().strip()
            write_job(client, root, "nightly-report", "echo 'report for' \"$DCRON_JOB\"\necho done\n")
            write_job(client, root, "cleanup", "echo 'nothing to clean' >&2\nexit 2\n")
            write_job(client, root, "slow-import", "echo 'importing part 1'\nsleep 1.5\necho 'importing part 2'\nsleep 1.5\n")
            client.run("nightly-report")
            client.run("cleanup")
            ended(client, "nightly-report")
            ended(client, "cleanup")
            yield Dash(node, client, driver, node.web.url.rstrip("/"), token)
    finally:
        driver.quit()
        shutil.rmtree(user_data, ignore_errors=True)


def test_without_the_token_the_dashboard_answers_401_and_shows_the_sign_in_form(dash: Dash) -> None:
    request = urllib.request.Request(dash.base + "/jobs", headers={"Accept": "text/html"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 401
    dash.driver.delete_all_cookies()
    dash.open("/jobs", sign_in=False)
    assert dash.driver.title.startswith("Sign in")
    dash.sign_in("not-the-token")
    assert "not this node" in dash.css(".error").text
    dash.sign_in(dash.token)
    dash.wait(lambda d: d.current_url.endswith("/jobs"), message="signed in, on /jobs")
    assert [a.text for a in dash.all("a.job-link")] == ["cleanup", "nightly-report", "slow-import"]


def test_follow_a_job_to_a_run_and_its_log(dash: Dash) -> None:
    dash.open("/jobs")
    row = next(r for r in dash.all("table.jobs tbody tr") if "nightly-report" in r.text)
    assert "0 0 1 1 *" in row.text and "succeeded" in row.text
    next(a for a in dash.all("a.job-link") if a.text == "nightly-report").click()
    dash.wait(lambda d: "/jobs/nightly-report" in d.current_url)
    dash.all("a.run-link")[0].click()
    dash.wait(lambda d: "/runs/" in d.current_url)
    assert dash.css("pre#log").text == "report for nightly-report\ndone"
    assert dash.css("#run-status").text == "succeeded"
    href = dash.css("a#download").get_attribute("href")
    request = urllib.request.Request(href, headers={"Authorization": f"Bearer {dash.token}"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.headers["Content-Disposition"].startswith("attachment")
        assert answer.read() == b"report for nightly-report\ndone\n"


def test_a_running_log_grows_in_the_page_until_the_run_ends(dash: Dash) -> None:
    exec_id = dash.client.run("slow-import")["execution"]
    wait_for(lambda: dash.client.execution(exec_id), 5, message="the run is recorded")
    from urllib.parse import quote

    dash.open(f"/runs/{quote(exec_id, safe='')}")
    assert dash.css("#run-status").text == "running"
    log = dash.css("pre#log")
    dash.wait(lambda d: "importing part 1" in log.text, message="the first line, live")
    assert "importing part 2" not in log.text  # the run is still sleeping
    dash.wait(lambda d: "importing part 2" in d.find_element("id", "log").text, message="the second line")
    # When nothing more will come the page reloads and shows the finished run.
    dash.wait(lambda d: d.find_element("id", "run-status").text == "succeeded", 15, message="the end")
    assert dash.css("pre#log").text == "importing part 1\nimporting part 2"


def test_jobs_and_runs_are_found_by_name_and_status(dash: Dash) -> None:
    dash.open("/jobs")
    dash.css("#job-filter").send_keys("REPORT")
    dash.css("#job-filter").submit()
    dash.wait(lambda d: "q=REPORT" in d.current_url)
    assert [a.text for a in dash.all("a.job-link")] == ["nightly-report"]
    dash.open("/runs")
    from selenium.webdriver.support.ui import Select

    Select(dash.css("select[name=status]")).select_by_visible_text("failed")
    dash.css("form.filters button").click()
    dash.wait(lambda d: "status=failed" in d.current_url)
    jobs = {row.find_element("css selector", "td a").text for row in dash.all("table.runs tbody tr")}
    assert jobs == {"cleanup"}


def test_the_cluster_page_names_the_leader_and_this_node(dash: Dash) -> None:
    dash.open("/cluster")
    assert dash.css("#leader").text == dash.node.node_id
    rows = [r.text for r in dash.all("table.members tbody tr")]
    assert len(rows) == 1 and "leader" in rows[0]


def test_a_write_action_disables_a_job_from_its_page(dash: Dash) -> None:
    dash.open("/jobs/cleanup")
    dash.css("#action-disable").click()
    dash.wait(lambda d: d.find_elements("id", "action-enable"), message="the Enable button after disabling")
    assert dash.client.show("cleanup")["job"]["enabled"] is False
    dash.css("#action-enable").click()
    dash.wait(lambda d: d.find_elements("id", "action-disable"))
    assert dash.client.show("cleanup")["job"]["enabled"] is True

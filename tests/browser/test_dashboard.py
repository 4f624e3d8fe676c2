"""The dashboard in real headless Chromium, against a live embedded node in this process.

One Chromium and one read-only node serve the module (tests/browser/conftest.py); the write
actions get a node of their own (``http_write=True``).  Jobs run only when a test asks
(``node.api.run``), so what each page shows is known.  HTTP statuses, which selenium cannot see,
are checked with urllib; what the page shows, in the browser.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from libdcron.testing import wait_for

from .conftest import Site, run_path

pytestmark = pytest.mark.browser

SCRIPTS = {
    "nightly-report": ("30 2 1 1 *", "echo 'report for' \"$DCRON_JOB\"\necho 'rows: 42'\n"),
    "cleanup-tmp": ("0 4 1 1 *", "echo 'nothing to clean' >&2\nexit 3\n"),
    "slow-import": ("0 6 1 1 *", "echo 'importing part 1'\nsleep 1.5\necho 'importing part 2'\nsleep 1.5\n"),
}


@pytest.fixture(scope="module")
def site(start_site: Callable[..., Site]) -> Site:
    """A read-only dashboard; ``nightly-report`` succeeded once and ``cleanup-tmp`` failed once."""
    found = start_site(node_id="browser")
    for name, (schedule, text) in SCRIPTS.items():
        found.schedule(name, text, schedule)
    for name in ("nightly-report", "cleanup-tmp"):
        found.ended(found.run(name))
    return found


@pytest.fixture(scope="module")
def writable(start_site: Callable[..., Site]) -> Site:
    """A dashboard with its write actions on (``--http-write``)."""
    found = start_site(node_id="browser-write", http_write=True)
    found.schedule("rotate-logs", "echo rotated\n", "0 3 * * 0")
    return found


def test_signing_in_with_the_token(site: Site) -> None:
    answer = site.fetch("/jobs", token=None, headers={"Accept": "text/html"})
    assert answer.status == 401 and b'id="token"' in answer.body
    site.sign_out()
    site.driver.get(site.base + "/")
    assert site.on_sign_in_page() and site.driver.title.startswith("Sign in")
    assert site.css("input[name=next]").get_attribute("value") == "/"  # then / sends to /jobs
    site.sign_in("not-the-token-of-this-node")
    site.wait(lambda d: site.text("p.error"), message="the wrong token's error")
    assert site.text("p.error") == "That token is not this node's."
    assert site.on_sign_in_page()
    site.sign_in(site.token)
    site.wait(lambda d: d.current_url == site.base + "/jobs", message="signed in, on /jobs")
    assert site.text("h1") == "Jobs" and not site.on_sign_in_page()
    assert site.texts("a.job-link") == sorted(SCRIPTS)


def test_following_a_job_to_a_run_and_its_log(site: Site) -> None:
    site.open("/jobs")
    rows = {r.find_element("css selector", "a.job-link").text: r for r in site.all("table.jobs tbody tr")}
    report = rows["nightly-report"].text
    assert "30 2 1 1 *" in report and "enabled" in report and "succeeded" in report
    assert "failed" in rows["cleanup-tmp"].text and "never ran" in rows["slow-import"].text
    rows["nightly-report"].find_element("css selector", "a.job-link").click()
    site.wait(lambda d: d.current_url.endswith("/jobs/nightly-report"), message="the job's page")
    assert site.text("h1").startswith("nightly-report") and "30 2 1 1 *" in site.text("dl.facts")
    links = site.all("a.run-link")
    assert len(links) == 1
    links[0].click()
    site.wait(lambda d: "/runs/nightly-report" in d.current_url, message="the run's page")
    exec_id = site.node.api.records.executions("nightly-report", limit=1)[0].id
    assert site.driver.current_url == site.base + run_path(exec_id)
    assert site.text("#run-status") == "succeeded"
    expected = site.log(exec_id)
    assert expected == b"report for nightly-report\nrows: 42\n"
    assert site.text("pre#log") == expected.decode().strip()
    href = site.css("a#download").get_attribute("href")
    assert href.startswith(site.base + "/")
    download = site.fetch(href.removeprefix(site.base))
    assert download.status == 200 and download.body == expected
    assert download.headers["Content-Disposition"].startswith("attachment; filename=")


def test_a_running_log_grows_in_the_page_until_the_run_ends(site: Site) -> None:
    exec_id = site.run("slow-import")
    site.open(run_path(exec_id))
    assert site.text("#run-status") == "running" and site.all("#live-note")
    site.wait(lambda d: "importing part 1" in site.text("pre#log"), message="the first line, live")
    assert "importing part 2" not in site.text("pre#log"), "the run sleeps 1.5 s before its second line"
    site.wait(lambda d: "importing part 2" in site.text("pre#log"), message="the second line, live")
    assert site.text("#run-status") == "running"
    # Nothing more will come once the run ended and its log is uploaded: the page reloads.
    site.wait(lambda d: site.text("#run-status") == "succeeded", message="the finished run, after a reload")
    assert not site.all("#live-note") and site.css("pre#log").get_attribute("data-tail") is None
    assert site.text("pre#log") == "importing part 1\nimporting part 2"
    assert site.log(exec_id) == b"importing part 1\nimporting part 2\n"


def test_jobs_are_found_by_name_and_runs_by_status(site: Site) -> None:
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    site.open("/jobs")
    site.css("input#job-filter").send_keys("REPORT", Keys.ENTER)
    site.wait(lambda d: "q=REPORT" in d.current_url, message="the filtered jobs")
    assert site.texts("a.job-link") == ["nightly-report"]
    assert site.css("input#job-filter").get_attribute("value") == "REPORT"
    site.css("input#job-filter").clear()
    site.css("input#job-filter").send_keys("no-such-job", Keys.ENTER)
    site.wait(lambda d: "q=no-such-job" in d.current_url)
    assert site.texts("a.job-link") == [] and "No job whose name contains" in site.text("table.jobs")

    site.open("/runs")
    assert {"nightly-report", "cleanup-tmp"} <= set(site.texts("table.runs tbody td:first-child a"))
    Select(site.css("select[name=status]")).select_by_value("failed")
    site.css("form.filters button[type=submit]").click()
    site.wait(lambda d: "status=failed" in d.current_url, message="the failed runs")
    assert site.texts("table.runs tbody td:first-child a") == ["cleanup-tmp"]
    assert site.texts("table.runs .status") == ["failed"]
    Select(site.css("select[name=status]")).select_by_value("succeeded")
    site.css("form.filters input[name=q]").send_keys("report")
    site.css("form.filters button[type=submit]").click()
    site.wait(lambda d: "status=succeeded" in d.current_url and "q=report" in d.current_url)
    assert site.texts("table.runs tbody td:first-child a") == ["nightly-report"]


def test_the_cluster_page_shows_the_leader_and_this_node(site: Site) -> None:
    site.open("/jobs")
    site.css("#nav-cluster").click()
    site.wait(lambda d: d.current_url.endswith("/cluster"), message="the cluster page")
    assert site.text("#leader") == "browser"
    rows = site.all("table.members tbody tr")
    assert len(rows) == 1
    cells = [td.text for td in rows[0].find_elements("css selector", "td")]
    assert cells[0] == "browser" and cells[1] == site.node.endpoint and cells[2] == "leader"
    assert cells[3] == str(site.node.settings.capacity)


def test_a_read_only_dashboard_has_no_actions_and_refuses_them(site: Site) -> None:
    site.open("/jobs/cleanup-tmp")
    assert site.text("h1").startswith("cleanup-tmp")
    assert not site.all(".actions") and not site.all("[id^=action-]")
    assert "read-only" in site.text("header .node")
    from libdcron.web.auth import Credentials

    csrf = Credentials(site.token).csrf
    refused = site.fetch("/jobs/cleanup-tmp/disable", form={"csrf": csrf})
    assert refused.status == 403 and b"read-only" in refused.body
    assert site.node.api.show({"name": "cleanup-tmp"})["job"]["enabled"] is True


def test_write_actions_disable_a_job_and_need_the_csrf_value(writable: Site) -> None:
    writable.open("/jobs/rotate-logs")
    assert "read-only" not in writable.text("header .node")
    assert [b.text for b in writable.all(".actions button")] == ["Disable", "Run now"]
    writable.css("#action-disable").click()
    writable.wait(lambda d: writable.all("#action-enable"), message="the Enable button, after Disable")
    assert writable.node.api.show({"name": "rotate-logs"})["job"]["enabled"] is False
    assert "disabled" in writable.text("h1 .state")
    refused = writable.fetch("/jobs/rotate-logs/enable", form={})
    assert refused.status == 403 and b"CSRF" in refused.body
    forged = writable.fetch("/jobs/rotate-logs/enable", form={"csrf": "0" * 64})
    assert forged.status == 403
    assert writable.node.api.show({"name": "rotate-logs"})["job"]["enabled"] is False
    writable.css("#action-enable").click()
    writable.wait(lambda d: writable.all("#action-disable"), message="the Disable button, after Enable")
    assert writable.node.api.show({"name": "rotate-logs"})["job"]["enabled"] is True


def test_run_now_starts_a_run_from_the_job_page(writable: Site) -> None:
    writable.open("/jobs/rotate-logs")
    writable.css("#action-run").click()
    runs = wait_for(lambda: writable.node.api.records.executions("rotate-logs", limit=1), 10, message="the run")
    exec_id = runs[0].id
    assert writable.ended(exec_id)["status"] == "succeeded"
    writable.open("/jobs/rotate-logs")
    assert writable.texts("a.run-link") and writable.text("table.runs .tag") == "manual"
    assert writable.text("table.runs .status") == "succeeded"
    assert writable.log(exec_id) == b"rotated\n"

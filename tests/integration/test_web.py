"""The dashboard's every route over real HTTP, on a live embedded node (see libdcron/web/pages.py).

One node serves the module (read-only); the write actions get a node of their own.  Jobs run only
when asked to (``dcron run``), so what the pages and ``/metrics`` show is known exactly.
"""

from __future__ import annotations

import json
import re
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from prometheus_client.parser import text_string_to_metric_families

from libdcron.client import Client
from libdcron.daemon import _http_default
from libdcron.errors import UnavailableError, ValidationError
from libdcron.node import Node
from libdcron.records import Records
from libdcron.testing import client_for, embedded_node, wait_for
from libdcron.web import load_token, parse_bind
from libdcron.web.auth import COOKIE, Credentials, safe_next

YEARLY = "0 0 1 1 *"
SCRIPTS = {
    "report-daily": "echo 'report <b>ready</b> & <script>alert(1)</script>'\n",
    "report-weekly": "echo weekly\n",
    "backup": "echo backing up >&2; exit 4\n",
}


@dataclass
class Response:
    status: int
    headers: Any
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def fetch(
    url: str,
    token: str | None = None,
    data: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    body = urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(
        url, data=body, headers=all_headers, method="POST" if data is not None else "GET"
    )
    try:
        with OPENER.open(request, timeout=10) as answer:
            return Response(answer.status, answer.headers, answer.read())
    except urllib.error.HTTPError as exc:
        return Response(exc.code, exc.headers, exc.read())


@dataclass
class Site:
    node: Node
    client: Client
    base: str
    token: str

    def get(self, path: str, **kw: Any) -> Response:
        kw.setdefault("token", self.token)
        return fetch(self.base + path, **kw)

    def post(self, path: str, data: dict[str, str], **kw: Any) -> Response:
        kw.setdefault("token", self.token)
        return fetch(self.base + path, data=data, **kw)


def finished(client: Client, name: str, count: int) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        rows = [e for e in client.executions(name, limit=100) if e["status"] != "running"]
        return rows if len(rows) >= count else None

    return wait_for(done, 15, message=f"{count} ended executions of {name}")


def start_site(tmp_path: Path, **settings: Any) -> Iterator[Site]:
    with embedded_node(tmp_path, http="tcp://127.0.0.1:0", **settings) as node, client_for(node) as client:
        assert node.web is not None
        token = (Path(node.settings.keys_dir or "") / "http.token").read_text().strip()
        yield Site(node, client, node.web.url.rstrip("/"), token)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp_path = tmp_path_factory.mktemp("web")
    for found in start_site(tmp_path):
        for name, text in SCRIPTS.items():
            path = tmp_path / f"{name}.sh"
            path.write_text(text)
            found.client.schedule(name, YEARLY, "sh", path)
        found.client.disable("report-weekly")
        found.client.run("report-daily")
        found.client.run("backup")
        finished(found.client, "report-daily", 1)
        finished(found.client, "backup", 1)
        yield found


def test_every_page_needs_the_token(site: Site) -> None:
    for path in ("/jobs", "/jobs/backup", "/runs", "/cluster", "/metrics", "/runs/x/tail", "/runs/x/log"):
        for token in (None, "not-the-token-at-all"):
            answer = site.get(path, token=token)
            assert answer.status == 401, path
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    page = site.get("/jobs", token=None, headers={"Accept": "text/html"})
    assert page.status == 401
    assert 'name="token"' in page.text and 'value="/jobs"' in page.text  # the sign-in form, back to /jobs
    assert site.get("/static/dashboard.css", token=None).status == 200  # what the form needs


def test_signing_in_sets_a_strict_http_only_cookie_and_signing_out_needs_the_csrf_value(site: Site) -> None:
    assert site.get("/login", token=None).status == 200
    wrong = site.post("/login", {"token": "wrong", "next": "/runs"}, token=None)
    assert wrong.status == 401 and "not this node" in wrong.text
    right = site.post("/login", {"token": site.token, "next": "/runs?status=failed"}, token=None)
    assert right.status == 303 and right.headers["Location"] == "/runs?status=failed"
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and site.token not in cookie
    session = re.search(rf"{COOKIE}=([^;]+)", cookie)
    assert session is not None
    jar = {"Cookie": f"{COOKIE}={session.group(1)}"}
    assert site.get("/jobs", token=None, headers=jar).status == 200
    assert (
        site.post("/login", {"token": site.token, "next": "//evil.example/"}, token=None).headers["Location"]
        == "/jobs"
    )
    assert site.post("/logout", {}, token=None, headers=jar).status == 403
    csrf = Credentials(site.token).csrf
    out = site.post("/logout", {"csrf": csrf}, token=None, headers=jar)
    assert out.status == 303 and f"{COOKIE}=" in out.headers["Set-Cookie"]


def test_pages_carry_security_headers_and_the_root_goes_to_jobs(site: Site) -> None:
    root = site.get("/")
    assert root.status == 302 and root.headers["Location"] == "/jobs"
    page = site.get("/jobs")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"


def test_jobs_show_state_schedule_next_fire_time_and_last_result(site: Site) -> None:
    page = site.get("/jobs").text
    for name in SCRIPTS:
        assert f'href="/jobs/{name}"' in page
    row = page.split('href="/jobs/backup"', 1)[1].split("</tr>", 1)[0]
    assert "enabled" in row and "0 0 1 1 *" in row and "UTC" in row and "status-failed" in row
    weekly = page.split('href="/jobs/report-weekly"', 1)[1].split("</tr>", 1)[0]
    assert "disabled" in weekly and "never ran" in weekly
    next_year = str(int(site.node.api.ping({})["time"][:4]) + 1)
    assert f"{next_year}-01-01 00:00:00 UTC" in row


def test_jobs_are_found_by_name_and_state_and_paged(site: Site) -> None:
    found = site.get("/jobs?q=REPORT").text
    assert "report-daily" in found and "report-weekly" in found and "/jobs/backup" not in found
    assert "/jobs/report-weekly" not in site.get("/jobs?state=enabled").text
    assert "/jobs/report-weekly" in site.get("/jobs?state=disabled").text
    first = site.get("/jobs?limit=2").text
    cursor = re.search(r'id="next-page" href="([^"]+)"', first)
    assert cursor is not None
    second = site.get(cursor.group(1).replace("&amp;", "&")).text
    assert "/jobs/report-weekly" in second and "/jobs/backup" not in second
    assert 'id="next-page"' not in second
    assert "No job whose name contains" in site.get("/jobs?q=nothing-like-it").text
    assert site.get("/jobs?limit=0").status == 400
    assert site.get("/jobs?state=sideways").status == 400


def test_a_name_search_by_state_goes_on_past_pages_that_hold_none_of_that_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A page by state compares at most LIST_SCAN jobs (5,000): made 2 here, so that the jobs
    # "a0".."a5" (disabled) fill the first pages by state "enabled" with nothing, cursor ahead.
    original = Records.list_jobs

    def list_jobs(
        self: Records, limit: int, after: str | None = None, enabled: bool | None = None, scan: int = 2
    ) -> tuple[list[Any], str | None]:
        return original(self, limit, after, enabled, scan)

    monkeypatch.setattr(Records, "list_jobs", list_jobs)
    script = tmp_path / "job.sh"
    script.write_text("true\n")
    for site in start_site(tmp_path / "node"):
        for name in [f"a{i}" for i in range(6)] + ["zz-enabled", "zz-disabled"]:
            site.client.schedule(name, YEARLY, "sh", script)
        for name in [f"a{i}" for i in range(6)] + ["zz-disabled"]:
            site.client.disable(name)
        first = site.client.list_page(state="enabled")
        assert first["jobs"] == [] and first["next"], "a first page of none, and a next one"
        found = site.get("/jobs?q=zz&state=enabled").text
        assert "/jobs/zz-enabled" in found and "/jobs/zz-disabled" not in found
        found = site.get("/jobs?q=zz&state=disabled").text
        assert "/jobs/zz-disabled" in found and "/jobs/zz-enabled" not in found


def test_a_job_page_lists_its_executions_filtered_by_status(site: Site) -> None:
    page = site.get("/jobs/backup").text
    assert "0 0 1 1 *" in page and "status-failed" in page and 'class="run-link"' in page
    assert "No executions." in site.get("/jobs/backup?status=succeeded").text
    assert "status-failed" in site.get("/jobs/backup?status=failed").text
    assert site.get("/jobs/no-such-job").status == 404
    assert site.get("/jobs/backup?status=bogus").status == 400
    assert 'id="action-disable"' not in page  # read-only


def test_runs_are_found_by_status_and_job_name(site: Site) -> None:
    failed = site.get("/runs?status=failed").text
    assert "/jobs/backup" in failed and "/jobs/report-daily" not in failed
    named = site.get("/runs?q=daily").text
    assert "/jobs/report-daily" in named and "/jobs/backup" not in named


def test_a_run_page_shows_its_facts_and_its_log_escaped(site: Site) -> None:
    ex = finished(site.client, "report-daily", 1)[0]
    url = f"/runs/{quote(ex['id'], safe='')}"
    page = site.get(url).text
    assert "status-succeeded" in page and "embedded" in page
    assert "report &lt;b&gt;ready&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    raw = site.get(url + "/log")
    assert raw.body == site.client.logs(ex["id"])
    assert raw.headers["Content-Type"].startswith("text/plain")
    download = site.get(url + "/log?download=1")
    assert download.body == raw.body and download.headers["Content-Disposition"].startswith("attachment;")
    assert site.get("/runs/report-daily@2000-01-01T00:00:00Z%231").status == 404


def test_a_failed_run_keeps_its_exit_code_and_stderr(site: Site) -> None:
    ex = finished(site.client, "backup", 1)[0]
    page = site.get(f"/runs/{quote(ex['id'], safe='')}").text
    assert "<dd>4</dd>" in page and "backing up" in page


def test_the_tail_of_a_finished_run_is_its_whole_log(site: Site) -> None:
    ex = finished(site.client, "report-daily", 1)[0]
    answer = site.get(f"/runs/{quote(ex['id'], safe='')}/tail?offset=0")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("application/json")
    body = json.loads(answer.body)
    assert body["running"] is False and body["eof"] is True
    assert body["text"].encode() == site.client.logs(ex["id"])
    assert body["next"] == len(body["text"].encode())
    assert site.get(f"/runs/{quote(ex['id'], safe='')}/tail?offset=-1").status == 400


def test_the_cluster_page_shows_leader_members_capacity_and_outbox(site: Site) -> None:
    page = site.get("/cluster").text
    assert '<dd id="leader">embedded</dd>' in page
    row = page.split("<td>embedded</td>", 1)[1].split("</tr>", 1)[0]
    assert "leader" in row and f"<td>{site.node.worker.capacity}</td>" in row


def test_metrics_count_the_known_runs(site: Site) -> None:
    answer = site.get("/metrics")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }
    assert samples[("dcron_runs_total", (("job", "report-daily"), ("status", "succeeded")))] == 1
    assert samples[("dcron_runs_total", (("job", "backup"), ("status", "failed")))] == 1
    assert samples[("dcron_run_start_lag_seconds_count", ())] == 2
    assert samples[("dcron_is_leader", ())] == 1
    assert samples[("dcron_jobs_loaded", ())] == 2  # the disabled job is not in the schedule


def test_write_actions_are_off_unless_turned_on(site: Site) -> None:
    csrf = Credentials(site.token).csrf
    refused = site.post("/jobs/backup/disable", {"csrf": csrf})
    assert refused.status == 403 and "--http-write" in refused.text
    assert site.client.show("backup")["job"]["enabled"] is True


def test_write_actions_need_the_credentials_and_the_csrf_value(tmp_path: Path) -> None:
    for found in start_site(tmp_path, http_write=True):
        script = tmp_path / "tidy.sh"
        script.write_text("echo tidy\n")
        found.client.schedule("tidy", YEARLY, "sh", script)
        csrf = Credentials(found.token).csrf
        assert 'id="action-disable"' in found.get("/jobs/tidy").text
        assert found.post("/jobs/tidy/disable", {"csrf": csrf}, token=None).status == 401
        assert found.post("/jobs/tidy/disable", {}).status == 403
        assert found.client.show("tidy")["job"]["enabled"] is True
        done = found.post("/jobs/tidy/disable", {"csrf": csrf})
        assert done.status == 303 and done.headers["Location"] == "/jobs/tidy"
        assert found.client.show("tidy")["job"]["enabled"] is False
        assert found.post("/jobs/tidy/enable", {"csrf": csrf}).status == 303
        assert found.post("/jobs/tidy/run", {"csrf": csrf}).status == 303
        assert [e["status"] for e in finished(found.client, "tidy", 1)] == ["succeeded"]
        assert found.post("/jobs/tidy/explode", {"csrf": csrf}).status == 400


def test_the_token_file_is_made_once_private_and_a_configured_token_is_used(tmp_path: Path) -> None:
    token, path, created = load_token(tmp_path / "keys", None)
    assert created and path is not None and len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_token(tmp_path / "keys", None) == (token, path, False)
    given = tmp_path / "given.token"
    given.write_text("a-token-from-a-file-of-mine\n")
    assert load_token(tmp_path / "keys", str(given))[0] == "a-token-from-a-file-of-mine"
    assert load_token(tmp_path / "keys", "a-long-enough-token-text")[0] == "a-long-enough-token-text"
    with pytest.raises(ValidationError, match="at least"):
        load_token(tmp_path / "keys", "short")
    with pytest.raises(ValidationError, match="not a file"):
        load_token(tmp_path / "keys", str(tmp_path / "missing" / "file"))


def test_http_addresses_and_the_embedded_default() -> None:
    assert parse_bind("tcp://127.0.0.1:8571") == ("127.0.0.1", 8571)
    assert parse_bind("localhost:9000") == ("localhost", 9000)
    for bad in ("tcp://127.0.0.1", "ftp://h:1", "tcp://h:99999", "tcp://h:1/x"):
        with pytest.raises(ValidationError, match=r"tcp://127\.0\.0\.1:8571"):
            parse_bind(bad)
    assert _http_default({}) == "tcp://127.0.0.1:8571"
    assert _http_default({"listen": "tcp://127.0.0.1:7572"}) == "tcp://127.0.0.1:8572"
    assert _http_default({"store": "http://couch:5984/dcron"}) is None  # cluster mode: off
    assert _http_default({"http": "off"}) is None
    assert _http_default({"http": "tcp://0.0.0.0:9000", "store": "x"}) == "tcp://0.0.0.0:9000"
    assert safe_next("/runs?x=1") == "/runs?x=1"
    assert safe_next("https://evil") == "/jobs" and safe_next("/\\evil") == "/jobs"


def test_a_taken_http_address_fails_the_start_with_a_clear_error(tmp_path: Path, site: Site) -> None:
    taken = site.base.replace("http://", "tcp://")
    with (
        pytest.raises(UnavailableError, match="cannot serve the dashboard"),
        embedded_node(tmp_path, http=taken, timeout=5),
    ):
        pass


def test_a_second_nodes_dashboard_shows_both_members_and_tails_a_run_on_the_other(tmp_path: Path) -> None:
    """Two nodes of one cluster (one host, one data folder): the non-leader's dashboard asks the
    leader for its STATUS, and follows a run in progress on whichever node runs it."""
    from libdcron.config import NodeSettings

    with embedded_node(tmp_path, node_id="web-a") as a, client_for(a) as client:
        b = Node(
            NodeSettings(
                data_dir=tmp_path / "data",
                listen="tcp://127.0.0.1:0",
                node_id="web-b",
                http="tcp://127.0.0.1:0",
            )
        )
        try:
            b.start()
            for n in (a, b):
                wait_for(lambda n=n: len(n.election.members()) == 2, 10, message="both nodes are members")
            assert b.web is not None
            second = Site(
                b,
                client,
                b.web.url.rstrip("/"),
                (tmp_path / "data" / "keys" / "http.token").read_text().strip(),
            )
            page = second.get("/cluster").text
            assert '<dd id="leader">web-a</dd>' in page and "unreachable" not in page
            for name in ("web-a", "web-b"):
                assert f"<td>{name}</td>" in page
            script = tmp_path / "slow.sh"
            script.write_text("echo first; sleep 2; echo second\n")
            client.schedule("slow", YEARLY, "sh", script)
            exec_id = client.run("slow")["execution"]
            url = f"/runs/{quote(exec_id, safe='')}"

            def first_line() -> dict[str, Any] | None:
                answer = second.get(url + "/tail")
                body: dict[str, Any] = json.loads(answer.body) if answer.status == 200 else {}
                return body if body.get("text") else None

            live = wait_for(first_line, 10, message="the first line, live")
            assert live["text"] == "first\n" and live["running"] is True
            assert 'data-tail="' in second.get(url).text  # the page follows it
            assert "runs in progress" in second.get("/cluster").text.lower()
            followed = second.get(url + "/log")  # a running run's log: streamed until it ends
            assert followed.status == 200 and followed.body == b"first\nsecond\n"
            finished(client, "slow", 1)
            done = json.loads(second.get(url + "/tail").body)
            assert done["running"] is False and done["text"] == "first\nsecond\n"
        finally:
            b.stop(grace=3)

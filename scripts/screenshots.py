"""Screenshots of the dashboard for the README: a live embedded node with a few jobs, in headless
Chromium (Debian's ``chromium`` and ``chromium-driver``).

    python3 scripts/screenshots.py docs/screenshots

Writes login.png, jobs.png, job.png, run.png (a finished run and its log), run-live.png (a running
job's log as it grows) and cluster.png.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from libdcron.testing import client_for, embedded_node, wait_for  # noqa: E402
from tests.browser.test_chromium import chromium  # noqa: E402

JOBS = {
    "billing-export": ("*/15 * * * *", "echo 'exporting invoices'\necho '1,284 invoices written to s3://billing/2026-12'\n"),
    "cache-warmup": ("*/5 * * * *", "echo 'warming 48 cache keys'\nfor i in 1 2 3; do echo \"key batch $i ok\"; done\n"),
    "nightly-report": ("30 2 * * *", "echo 'report for' \"$DCRON_JOB\" at \"$DCRON_FIRE_TIME\"\necho 'rows: 18,204'\necho done\n"),
    "db-vacuum": ("0 4 * * 0", "echo 'vacuum: relation \"events\" is locked' >&2\nexit 3\n"),
    "search-reindex": ("0 */6 * * *", "for i in 1 2 3 4 5 6 7 8; do echo \"reindexing shard $i of 8\"; sleep 0.7; done\n"),
    "legacy-sync": ("0 1 * * *", "echo retired\n"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the PNG files")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dcron-shots-"))
    user_data = tempfile.mkdtemp(prefix="dcron-chromium-")
    driver = chromium(user_data)
    driver.set_window_size(1280, 800)
    try:
        with embedded_node(work, node_id="node-1", http="tcp://127.0.0.1:0") as node, client_for(node) as client:
            assert node.web is not None
            base = node.web.url.rstrip("/")
            for name, (cron, text) in JOBS.items():
                script = work / f"{name}.sh"
                script.write_text(text)
                client.schedule(name, cron, "sh", script, tz="Europe/Berlin" if name == "nightly-report" else "UTC")
            client.disable("legacy-sync")
            for name in ("billing-export", "cache-warmup", "nightly-report", "db-vacuum", "nightly-report"):
                exec_id = client.run(name)["execution"]
                wait_for(lambda e=exec_id: (x := client.execution(e)) and x["status"] != "running", 20)
                time.sleep(1.1)  # distinct fire times
            token = (work / "data" / "keys" / "http.token").read_text().strip()

            def shot(path: str, name: str) -> None:
                driver.get(base + path)
                time.sleep(0.3)
                driver.save_screenshot(str(out / name))
                print(f"wrote {out / name}")

            shot("/jobs", "login.png")
            driver.find_element("id", "token").send_keys(token)
            driver.find_element("id", "sign-in").click()
            time.sleep(0.3)
            shot("/jobs", "jobs.png")
            shot("/jobs/nightly-report", "job.png")
            last = client.executions("nightly-report", limit=1)[0]
            shot(f"/runs/{quote(last['id'], safe='')}", "run.png")
            live = client.run("search-reindex")["execution"]
            wait_for(lambda: client.execution(live), 5)
            driver.get(f"{base}/runs/{quote(live, safe='')}")
            time.sleep(2.6)  # a few lines in
            driver.save_screenshot(str(out / "run-live.png"))
            print(f"wrote {out / 'run-live.png'}")
            shot("/cluster", "cluster.png")
            wait_for(lambda: (x := client.execution(live)) and x["status"] != "running", 20)
    finally:
        driver.quit()
        shutil.rmtree(user_data, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The README's screenshots of the web dashboard, taken in headless Chromium.

    python3 scripts/screenshots.py docs/screenshots

Starts an embedded node (in a temporary folder, dashboard on a free loopback port) with a handful
of jobs: a few that succeeded, one that failed, one running with a growing log, one disabled.
Then it signs in with Debian's Chromium (``/usr/bin/chromium`` through ``/usr/bin/chromedriver``,
or ``DCRON_TEST_CHROMIUM`` / ``DCRON_TEST_CHROMEDRIVER``) at 1280x800 and saves ``login.png``,
``jobs.png``, ``job.png``, ``run.png``, ``cluster.png`` and ``run-live.png`` in the given folder.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from libdcron.node import Node
from libdcron.testing import embedded_node, wait_for

CHROMIUM = os.environ.get("DCRON_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DCRON_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
WIDTH, HEIGHT = 1280, 800
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
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    f"--window-size={WIDTH},{HEIGHT}",
)

BACKUP = """\
echo "$(date -u +%H:%M:%S) pg_dump orders@db-1 -> s3://backups/orders/$(date -u +%F).dump"
echo "$(date -u +%H:%M:%S) dumped 14 tables, 2,318,402 rows (412 MiB, zstd -> 97 MiB)"
echo "$(date -u +%H:%M:%S) upload: 97 MiB in 4.1 s"
echo "$(date -u +%H:%M:%S) pruning dumps older than 30 days: 2 removed"
echo "$(date -u +%H:%M:%S) done"
"""
REPORT = """\
echo "building the daily sales report for $(date -u +%F)"
echo "  EU: 1,204 orders, 86,310.40 EUR"
echo "  US: 2,077 orders, 151,902.15 USD"
echo "mailed to sales@example.com"
"""
SYNC = """\
echo "fetching the warehouse feed (3 warehouses)"
echo "updated 318 SKUs, 4 out of stock"
"""
CLEANUP = """\
echo "removing files older than 7 days from /var/tmp/cache"
echo "find: '/var/tmp/cache/uploads': Permission denied" >&2
exit 1
"""
IMPORT = """\
echo "importing orders from the shop API (120 batches of 250)"
i=1
while [ $i -le 120 ]; do
  echo "$(date -u +%H:%M:%S) batch $i/120: 250 orders imported, 0 rejected"
  i=$((i + 1))
  sleep 0.4
done
echo "done: 30,000 orders"
"""
EXPORT = 'echo "exporting to the legacy FTP server"\n'

#: name: (schedule, time zone, script, runs before the screenshots)
JOBS: dict[str, tuple[str, str, str, int]] = {
    "backup-db": ("15 2 * * *", "UTC", BACKUP, 3),
    "report-daily": ("0 7 * * 1-5", "Europe/Paris", REPORT, 2),
    "sync-inventory": ("*/10 * * * *", "UTC", SYNC, 3),
    "cleanup-tmp": ("30 3 * * *", "UTC", CLEANUP, 2),
    "import-orders": ("0 * * * *", "UTC", IMPORT, 0),
    "legacy-export": ("0 1 * * 0", "UTC", EXPORT, 1),
}


def schedule(node: Node, name: str, expression: str, tz: str, text: str, update: bool = False) -> None:
    node.api.schedule(
        {
            "name": name,
            "schedule": expression,
            "tz": tz,
            "interpreter": "sh",
            "script_content": base64.b64encode(text.encode()).decode(),
            "update": update,
        }
    )


def ended_runs(node: Node, name: str) -> int:
    return sum(1 for ex in node.api.records.executions(name, limit=50) if ex.status.terminal and ex.log)


def make_jobs(node: Node) -> str:
    """Register the jobs with past runs (fired every second, then given their real schedule)."""
    for name, (_, _, text, runs) in JOBS.items():
        schedule(node, name, "* * * * * *" if runs else JOBS[name][0], JOBS[name][1], text)
    for name, (expression, tz, text, runs) in JOBS.items():
        if runs:
            wait_for(lambda name=name, runs=runs: ended_runs(node, name) >= runs, 30, message=f"runs of {name}")
            schedule(node, name, expression, tz, text, update=True)
    time.sleep(1.2)  # a run sent ahead before the update still starts at its fire time
    wait_for(lambda: not node.api.status({})["running"], 15, message="the past runs to end")
    node.api.disable({"name": "legacy-export"})
    exec_id = str(node.api.run({"name": "import-orders"})["execution"])
    wait_for(lambda: node.api.status({})["running"], 10, message="import-orders to start")
    return exec_id


def chromium(user_data: str) -> Any:
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={user_data}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    # The page's viewport exactly WIDTH x HEIGHT (a headless window's size includes no chrome,
    # but set it anyway so the screenshots do not depend on the Chromium version).
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    return driver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the PNGs (e.g. docs/screenshots)")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(binary):
            print(f"error: {binary} is not installed (apt install chromium chromium-driver)", file=sys.stderr)
            return 1
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with tempfile.TemporaryDirectory(prefix="dcron-screenshots-") as tmp:
        root = Path(tmp)
        with embedded_node(root, node_id="cron-1", capacity=8, http="tcp://127.0.0.1:0", grace=0.5) as node:
            assert node.web is not None
            base = node.web.url.rstrip("/")
            token = (root / "data" / "keys" / "http.token").read_text().strip()
            live = make_jobs(node)
            driver = chromium(str(root / "chromium"))
            try:

                def until(condition: Callable[[Any], Any], timeout: float = 15) -> Any:
                    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)

                def shot(name: str, path: str, ready: Callable[[Any], Any] | None = None) -> None:
                    driver.get(base + path)
                    if ready is not None:
                        until(ready)
                    target = out / name
                    driver.save_screenshot(str(target))
                    print(f"{target}: {target.stat().st_size // 1024} KiB")

                shot("login.png", "/login")
                driver.find_element(By.ID, "token").send_keys(token)
                driver.find_element(By.ID, "sign-in").click()
                until(lambda d: d.current_url.endswith("/jobs"))
                shot("jobs.png", "/jobs")
                shot("job.png", "/jobs/backup-db")
                backup = node.api.records.executions("backup-db", limit=1)[0].id
                shot("run.png", f"/runs/{quote(backup, safe='')}")
                shot("cluster.png", "/cluster")

                def grown(d: Any) -> bool:
                    return d.find_element(By.ID, "log").text.count("\n") >= 14

                shot("run-live.png", f"/runs/{quote(live, safe='')}", grown)
            finally:
                driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())

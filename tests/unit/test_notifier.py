"""The batching of worker -> leader FINISHED reports (libdcron.notifier)."""

from __future__ import annotations

import threading
import time

import pytest

from libdcron import notifier as notifier_module
from libdcron.model import Execution, Status, utcnow
from libdcron.notifier import FinishedNotifier
from libdcron.testing import wait_for


def ended(n: int) -> Execution:
    return Execution(job=f"j{n}", fire_time=utcnow(), attempt=1, node="w", status=Status.SUCCEEDED)


def test_the_ends_queued_within_the_linger_of_the_first_go_in_one_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notifier_module, "LINGER", 0.5)
    reports: list[list[str]] = []
    sent = threading.Event()

    def send(batch: list[Execution]) -> None:
        reports.append([ex.job for ex in batch])
        sent.set()

    notifier = FinishedNotifier(send)
    try:
        for n in range(5):  # within 0.2 s of the first, which lingers: the others must not cut it short
            notifier.add(ended(n))
            time.sleep(0.05)
        assert sent.wait(5)
        wait_for(lambda: sum(map(len, reports)) == 5, 5)
        assert reports == [["j0", "j1", "j2", "j3", "j4"]]
    finally:
        notifier.close()


def test_close_sends_what_is_queued_at_once() -> None:
    reports: list[list[str]] = []
    notifier = FinishedNotifier(lambda batch: reports.append([ex.job for ex in batch]))
    for n in range(3):
        notifier.add(ended(n))
    started = time.monotonic()
    notifier.close()
    assert sum(map(len, reports)) == 3 and time.monotonic() - started < 2.0

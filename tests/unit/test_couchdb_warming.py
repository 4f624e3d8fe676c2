"""The CouchDB store's index warmer (pure logic: a recording function stands for the server)."""

from __future__ import annotations

import threading

from dcron_plugins.store_couchdb.warming import IndexWarmer

from libdcron.errors import UnavailableError


class Recorder:
    def __init__(self, fail: int = 0) -> None:
        self.calls: list[str] = []
        self.fail = fail
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, collection: str) -> None:
        self.calls.append(collection)
        self.entered.set()
        self.release.wait(10)
        if self.fail:
            self.fail -= 1
            raise UnavailableError("CouchDB is down")


def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not done.is_set():
            if predicate():  # type: ignore[operator]
                return True
            done.wait(0.01)
        return False
    finally:
        deadline.cancel()


def test_writes_during_a_pass_make_one_more_pass_not_one_each() -> None:
    warm = Recorder()
    warm.release.clear()
    warmer = IndexWarmer(warm, interval=0.05)
    warmer.written("jobs")
    assert warm.entered.wait(10)
    for _ in range(100):  # while the first pass is under way
        warmer.written("jobs")
        warmer.written("executions")
    warm.release.set()
    assert wait_for(lambda: warmer.passes.get("jobs") == 2 and warmer.passes.get("executions") == 1)
    warmer.close()
    assert warm.calls == ["jobs", "executions", "jobs"]


def test_nothing_happens_without_writes_or_with_interval_zero() -> None:
    warm = Recorder()
    idle = IndexWarmer(warm, interval=0.05)
    assert idle._thread is None  # no thread before the first write
    off = IndexWarmer(warm, interval=0)
    off.written("jobs")
    assert off._thread is None and warm.calls == []
    idle.close()


def test_a_failed_pass_is_counted_and_the_next_write_tries_again() -> None:
    warm = Recorder(fail=1)
    warmer = IndexWarmer(warm, interval=0.01)
    warmer.written("jobs")
    assert wait_for(lambda: warmer.failures.get("jobs") == 1)
    warmer.written("jobs")
    assert wait_for(lambda: warmer.passes.get("jobs") == 2)
    assert warmer.failures == {"jobs": 1}
    warmer.close()


def test_close_stops_the_thread_and_later_writes_do_nothing() -> None:
    warm = Recorder()
    warmer = IndexWarmer(warm, interval=0.01)
    warmer.written("jobs")
    assert wait_for(lambda: warmer.passes.get("jobs") == 1)
    warmer.close()
    thread = warmer._thread
    assert thread is not None
    thread.join(10)
    assert not thread.is_alive()
    warmer.written("jobs")
    assert warm.calls == ["jobs"]

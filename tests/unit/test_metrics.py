"""libdcron.metrics on its own: the error-counting wrapper, decline reasons, the exposition text."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from libdcron.errors import ConflictError, NotFoundError, UnavailableError, ValidationError
from libdcron.metrics import Metrics, count_errors, decline_reason


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly ``labels`` in ``metrics.render()``, or None."""
    text, _ = metrics.render()
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


class Store:
    """A stand-in store: each method raises what it is told to, or answers."""

    def __init__(self) -> None:
        self.raise_next: Exception | None = None

    def get(self, doc_id: str) -> str:
        if self.raise_next is not None:
            exc, self.raise_next = self.raise_next, None
            raise exc
        return doc_id

    def stat(self, url: str) -> int:
        raise UnavailableError(f"{url}: down")

    def exists(self, url: str) -> bool:
        self.stat(url)  # through the wrapped method: must count once, as exists
        return True


def test_count_errors_counts_unavailable_and_unexpected_errors_only() -> None:
    metrics = Metrics()
    store = Store()
    count_errors(store, ["get", "stat", "exists", "missing"], metrics.store_errors)
    assert type(store) is Store and store.get("a") == "a"
    assert sample(metrics, "dcron_store_errors_total", operation="get") == 0
    answers: list[Exception] = [NotFoundError("no"), ConflictError("stale"), ValidationError("bad")]
    for answer in answers:
        store.raise_next = answer
        with pytest.raises(type(answer)):
            store.get("a")
    assert sample(metrics, "dcron_store_errors_total", operation="get") == 0
    for failure in (UnavailableError("down"), RuntimeError("bug"), OSError("disk")):
        store.raise_next = failure
        with pytest.raises(type(failure)):
            store.get("a")
    assert sample(metrics, "dcron_store_errors_total", operation="get") == 3


def test_count_errors_counts_a_nested_call_once_and_wraps_once() -> None:
    metrics = Metrics()
    store = Store()
    count_errors(store, ["stat", "exists"], metrics.object_store_errors)
    count_errors(store, ["stat", "exists"], metrics.object_store_errors)  # a no-op
    with pytest.raises(UnavailableError):
        store.exists("s3://b/k")
    assert sample(metrics, "dcron_object_store_errors_total", operation="exists") == 1
    assert sample(metrics, "dcron_object_store_errors_total", operation="stat") == 0
    with pytest.raises(UnavailableError):
        store.stat("s3://b/k")
    assert sample(metrics, "dcron_object_store_errors_total", operation="stat") == 1


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("busy", "busy"),
        ("refused: job is invalid", "refused"),
        ("Stopping now", "stopping"),
        (None, "unknown"),
        ("", "unknown"),
        ("no answer", "other"),
        ("unreachable", "unreachable"),
    ],
)
def test_decline_reasons_are_their_first_word(reason: str | None, label: str) -> None:
    assert decline_reason(reason) == label


def test_render_parses_and_each_node_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.run_ended("backup", "succeeded")
    one.run_ended("backup", "succeeded")
    one.run_ended("backup", "failed")
    one.declined("busy")
    one.retries.inc()
    one.run_start_lag.observe(0.003)
    one.run_start_lag.observe(2.0)
    one.leader_changes.labels(change="elected").inc()
    calls: list[int] = []

    def broken() -> float:
        calls.append(1)
        raise RuntimeError("gone")

    one.watch(outbox_depth=lambda: 7, is_leader=lambda: 1, jobs_loaded=broken, runs_in_progress=lambda: 2)
    text, content_type = one.render()
    assert content_type.startswith("text/plain") and b"version=" in content_type.encode()
    names = {f.name for f in text_string_to_metric_families(text.decode())}
    assert {
        "dcron_run_start_lag_seconds",
        "dcron_runs",
        "dcron_dispatch_declines",
        "dcron_retries",
        "dcron_lost_runs",
        "dcron_skipped_fire_times",
        "dcron_outbox_depth",
        "dcron_leader_changes",
        "dcron_is_leader",
        "dcron_store_errors",
        "dcron_object_store_errors",
        "dcron_jobs_loaded",
        "dcron_runs_in_progress",
    } <= names
    expected: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {
        ("dcron_runs_total", (("job", "backup"), ("status", "succeeded"))): 2,
        ("dcron_runs_total", (("job", "backup"), ("status", "failed"))): 1,
        ("dcron_dispatch_declines_total", (("reason", "busy"),)): 1,
        ("dcron_retries_total", ()): 1,
        ("dcron_lost_runs_total", ()): 0,
        ("dcron_run_start_lag_seconds_count", ()): 2,
        ("dcron_run_start_lag_seconds_bucket", (("le", "0.005"),)): 1,
        ("dcron_run_start_lag_seconds_bucket", (("le", "2.5"),)): 2,
        ("dcron_leader_changes_total", (("change", "elected"),)): 1,
        ("dcron_outbox_depth", ()): 7,
        ("dcron_is_leader", ()): 1,
        ("dcron_jobs_loaded", ()): 0,  # its function raised: 0, and the scrape still works
        ("dcron_runs_in_progress", ()): 2,
    }
    for (name, labels), value in expected.items():
        assert sample(one, name, **dict(labels)) == value, name
    assert calls
    assert sample(two, "dcron_runs_total", job="backup", status="succeeded") is None
    assert sample(two, "dcron_retries_total") == 0


def test_wrapped_methods_keep_their_names() -> None:
    store = Store()
    count_errors(store, ["get"], Metrics().store_errors)
    assert store.get.__name__ == "get"

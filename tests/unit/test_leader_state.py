"""The leader's pure scheduling state (:class:`LeaderState`) on an injected clock: no threads, no sleeps.

Each test feeds events (jobs loaded, time advanced, run accepted, attempt ended) and checks the
:class:`Start` decisions returned.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from libdcron.leader import JobState, LeaderState, Run, Start
from libdcron.model import Execution, Job, Status


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def job(name: str, schedule: str, **kw: Any) -> Job:
    return Job(name, schedule, "sh", "file:///x.sh", **kw)


def never(name: str, fire: datetime) -> bool:
    return False


def ended(start: Start, node: str, status: Status, **kw: Any) -> Execution:
    return Execution(start.job, start.fire_time, start.attempt, node, status, manual=start.manual, **kw)


def accept(state: LeaderState, start: Start, node: str, incarnation: str | None = None) -> list[Start]:
    return state.accepted(start.job, start.run, node, incarnation)


def loaded(*jobs: Job, now: datetime, lead: float = 5.0) -> tuple[LeaderState, list[Start]]:
    """Elected at ``now`` (with lookback)."""
    state = LeaderState(lead=lead)
    return state, state.load(jobs, [], now, never)


def scheduled(*jobs: Job, now: datetime, lead: float = 5.0) -> LeaderState:
    """Jobs written at ``now`` while leading (no lookback)."""
    state = LeaderState(lead=lead)
    for j in jobs:
        state.upsert(j, now)
    return state


# -- lookback ---------------------------------------------------------------------------------


def test_lookback_starts_only_the_newest_missed_fire_time() -> None:
    state, starts = loaded(job("j", "*/2 * * * *"), now=at("2026-01-01T12:05:30"))
    assert [(s.job, s.fire_time, s.attempt, s.manual) for s in starts] == [
        ("j", at("2026-01-01T12:04:00"), 1, False)
    ]
    assert state.jobs["j"].run is starts[0].run and state.jobs["j"].pending is None
    assert state.jobs["j"].next_fire == at("2026-01-01T12:06:00")


def test_lookback_window_and_existing_attempts() -> None:
    _, starts = loaded(job("h", "0 * * * *"), now=at("2026-01-01T12:05:01"))
    assert starts == []  # 12:00 is more than 5 minutes ago
    _, starts = loaded(job("h", "0 * * * *"), now=at("2026-01-01T12:04:59"))
    assert [s.fire_time for s in starts] == [at("2026-01-01T12:00:00")]
    asked: list[tuple[str, datetime]] = []

    def exists(name: str, fire: datetime) -> bool:
        asked.append((name, fire))
        return True

    state = LeaderState()
    assert state.load([job("h", "0 * * * *")], [], at("2026-01-01T12:04:59"), exists) == []
    assert asked == [("h", at("2026-01-01T12:00:00"))]


def test_lookback_waits_behind_a_run_in_progress_at_election() -> None:
    state = LeaderState()
    running = Execution("j", at("2026-01-01T12:02:00"), 1, "a", Status.RUNNING, incarnation="i1")
    starts = state.load([job("j", "*/2 * * * *")], [running], at("2026-01-01T12:05:30"), never)
    assert starts == []
    js = state.jobs["j"]
    assert js.run is not None and (js.run.node, js.run.incarnation, js.run.tried) == ("a", "i1", {"a"})
    assert js.pending == (at("2026-01-01T12:04:00"), False)
    # When the old run ends, the missed fire time runs once.
    assert [s.fire_time for s in state.reported(running.with_changes(status=Status.SUCCEEDED))] == [
        at("2026-01-01T12:04:00")
    ]


def test_a_lost_attempt_left_unretried_by_a_stopped_leader_is_retried_at_election() -> None:
    # A single node stopped with a run in progress: its worker recorded attempt 1 lost after the
    # leader had stepped down.  The next leader retries it elsewhere (attempt 2), once.
    fire = at("2026-01-01T12:04:00")
    lost = Execution("j", fire, 1, "a", Status.LOST, ended=fire + timedelta(seconds=3))
    state = LeaderState()
    starts = state.load(
        [job("j", "*/10 * * * *")], [], at("2026-01-01T12:05:30"), lambda n, f: (n, f) == ("j", fire), [lost]
    )
    assert [(s.job, s.fire_time, s.attempt, s.tried) for s in starts] == [("j", fire, 2, {"a"})]
    # The last attempt allowed, or a job with another run in progress: no retry.
    now = at("2026-01-01T12:05:30")
    state = LeaderState()
    assert state.load([job("j", "*/10 * * * *")], [], now, lambda n, f: True, [lost.with_changes(attempt=3)]) == []
    running = Execution("j", fire + timedelta(minutes=1), 1, "b", Status.RUNNING)
    state = LeaderState()
    assert state.load([job("j", "*/10 * * * *")], [running], now, lambda n, f: True, [lost]) == []
    assert state.jobs["j"].run is not None and state.jobs["j"].run.node == "b"


def test_jobs_sharing_a_schedule_share_its_fire_times() -> None:
    state, starts = loaded(*(job(f"j{i}", "*/2 * * * *") for i in range(50)), now=at("2026-01-01T12:05:30"))
    assert len(starts) == 50 and {s.fire_time for s in starts} == {at("2026-01-01T12:04:00")}
    assert {js.next_fire for js in state.jobs.values()} == {at("2026-01-01T12:06:00")}
    # Computed once for all of them: one object each.
    assert len({id(js.next_fire) for js in state.jobs.values()}) == 1
    assert len({id(js.following) for js in state.jobs.values()}) == 1


def test_fire_time_memo_asks_a_schedule_once_per_instant_and_stays_bounded(monkeypatch: Any) -> None:
    from libdcron.leader import state as state_module

    class Counted:
        def __init__(self) -> None:
            self.asked: list[datetime] = []

        def next_after(self, after: datetime) -> datetime:
            self.asked.append(after)
            return after + timedelta(minutes=1)

        def newest_at_or_before(self, at: datetime, not_before: datetime) -> datetime | None:
            self.asked.append(at)
            return None

    monkeypatch.setattr(state_module, "MEMO_LIMIT", 4)
    memo = state_module.FireTimes()
    schedule: Any = Counted()
    t = at("2026-01-01T12:00:00")
    assert [memo.next_after(schedule, t) for _ in range(3)] == [t + timedelta(minutes=1)] * 3
    assert (
        memo.newest_at_or_before(schedule, t, t) is None and memo.newest_at_or_before(schedule, t, t) is None
    )
    assert schedule.asked == [t, t]
    for i in range(10):
        memo.next_after(schedule, t + timedelta(seconds=i))
    assert len(memo._after) <= 4


# -- no overlap -------------------------------------------------------------------------------


def test_no_overlap_pending_keeps_only_the_newest() -> None:
    t0 = at("2026-01-01T12:00:00")
    state = scheduled(job("s", "* * * * * *"), now=t0, lead=0.0)
    [first] = state.advance(t0 + timedelta(seconds=1))
    assert first.fire_time == t0 + timedelta(seconds=1)
    assert accept(state, first, "a") == []
    for second in range(2, 6):
        assert state.advance(t0 + timedelta(seconds=second)) == []
    assert state.jobs["s"].pending == (t0 + timedelta(seconds=5), False)
    assert state.skipped == 3, "seconds 2, 3 and 4 were never run: counted"
    [catch_up] = state.reported(ended(first, "a", Status.SUCCEEDED))
    assert catch_up.fire_time == t0 + timedelta(seconds=5) and catch_up.attempt == 1
    assert state.jobs["s"].pending is None
    # Then it follows its schedule again.
    accept(state, catch_up, "a")
    state.reported(ended(catch_up, "a", Status.SUCCEEDED))
    assert [s.fire_time for s in state.advance(t0 + timedelta(seconds=6))] == [t0 + timedelta(seconds=6)]


# -- send-ahead lead ----------------------------------------------------------------------------


def test_send_ahead_lead_is_never_more_than_half_the_gap() -> None:
    now = at("2026-01-01T12:00:00.500000")
    for schedule, gap in (("*/2 * * * * *", 2.0), ("* * * * * *", 1.0), ("*/30 * * * * *", 30.0)):
        state = scheduled(job("j", schedule), now=now, lead=5.0)
        fire = state.jobs["j"].next_fire
        assert fire is not None
        lead = timedelta(seconds=min(5.0, gap / 2))
        assert state.next_send() == fire - lead
        assert state.advance(fire - lead - timedelta(microseconds=1)) == []
        [start] = state.advance(fire - lead)
        assert start.fire_time == fire  # sent ahead, with its own fire instant
        assert state.jobs["j"].next_fire == fire + timedelta(seconds=gap)


# -- retries ----------------------------------------------------------------------------------


def test_timeout_and_lost_retry_elsewhere_up_to_max_attempts() -> None:
    state = LeaderState()
    first = state.manual(job("t", "0 0 1 1 *", max_attempts=3), at("2026-01-01T12:00:00"))
    assert first is not None and first.manual and first.tried == set()
    accept(state, first, "a")
    [second] = state.reported(ended(first, "a", Status.TIMEOUT))
    assert (second.fire_time, second.attempt, second.manual) == (first.fire_time, 2, True)
    assert second.tried == {"a"}  # the dispatcher tries another node first
    accept(state, second, "b")
    [third] = state.ended(ended(second, "b", Status.LOST))
    assert third.attempt == 3 and third.tried == {"a", "b"}
    accept(state, third, "c")
    assert state.reported(ended(third, "c", Status.TIMEOUT)) == []  # max_attempts reached
    assert state.jobs["t"].run is None


def test_failed_and_succeeded_are_not_retried() -> None:
    state = LeaderState()
    for status in (Status.FAILED, Status.SUCCEEDED, Status.ERROR):
        start = state.manual(job("f", "0 0 1 1 *"), at("2026-01-01T12:00:00"))
        assert start is not None
        accept(state, start, "a")
        assert state.reported(ended(start, "a", status)) == []


# -- disable / enable ---------------------------------------------------------------------------


def test_disable_then_enable_does_not_resend_a_fire_time() -> None:
    t0 = at("2026-01-01T12:00:00")
    j = job("flip", "*/3 * * * * *")
    state = scheduled(j, now=t0 + timedelta(seconds=1))
    fire = t0 + timedelta(seconds=3)
    [start] = state.advance(fire - timedelta(seconds=1.5))  # sent 1.5 s ahead
    assert start.fire_time == fire
    accept(state, start, "a")
    state.upsert(j.with_changes(enabled=False), fire - timedelta(seconds=1))
    assert state.jobs["flip"].next_fire is None  # still followed for its run in progress
    assert state.reported(ended(start, "a", Status.SUCCEEDED)) == []
    assert "flip" not in state.jobs  # dropped once its run ended
    state.upsert(j, fire - timedelta(seconds=0.5))  # enabled again before its old fire instant
    assert state.jobs["flip"].next_fire == fire + timedelta(seconds=3)
    fired = [s.fire_time for s in state.advance(fire + timedelta(seconds=5))]
    assert fired == [fire + timedelta(seconds=3)]  # never `fire` again


def test_a_changed_job_replaces_its_stale_heap_entry() -> None:
    t0 = at("2026-01-01T12:00:00")
    j = job("c", "*/10 * * * * *")
    state = scheduled(j, now=t0)
    state.upsert(j.with_changes(schedule="*/7 * * * * *"), t0)
    fired = [s.fire_time for s in state.advance(t0 + timedelta(seconds=10))]
    assert fired == [t0 + timedelta(seconds=7)]  # the */10 entry is stale and skipped


# -- manual runs --------------------------------------------------------------------------------


def test_manual_runs_queue_behind_a_running_one() -> None:
    t0 = at("2026-01-01T12:00:00")
    j = job("m", "0 0 1 1 *")
    state = scheduled(j, now=t0)
    first = state.manual(j, t0)
    assert first is not None and first.manual and first.fire_time == t0
    accept(state, first, "a")
    assert state.queued_manual("m") is None
    assert state.manual(j, t0 + timedelta(seconds=1)) is None
    assert state.queued_manual("m") == t0 + timedelta(seconds=1)
    # One run waits: asking again while it waits is that run (its id was given out already).
    assert state.manual(j, t0 + timedelta(seconds=2)) is None
    assert state.queued_manual("m") == t0 + timedelta(seconds=1)
    assert state.jobs["m"].pending == (t0 + timedelta(seconds=1), True)
    [queued] = state.reported(ended(first, "a", Status.SUCCEEDED))
    assert (queued.fire_time, queued.manual, queued.attempt) == (t0 + timedelta(seconds=1), True, 1)
    assert state.queued_manual("m") is None


def test_a_fire_time_due_while_a_manual_run_waits_is_skipped_for_it() -> None:
    t0 = at("2026-01-01T12:00:00")
    j = job("w", "* * * * * *")  # every second
    state = scheduled(j, now=t0, lead=0.0)
    [first] = state.advance(t0 + timedelta(seconds=1))
    accept(state, first, "a")
    assert state.manual(j, t0 + timedelta(seconds=1.5)) is None
    assert state.advance(t0 + timedelta(seconds=3)) == []  # due at 2 and 3 while the run goes on
    assert state.skipped == 2
    assert state.queued_manual("w") == t0 + timedelta(seconds=1.5)
    [after] = state.reported(ended(first, "a", Status.SUCCEEDED))
    assert (after.fire_time, after.manual) == (t0 + timedelta(seconds=1.5), True)


def test_a_manual_run_takes_the_place_of_a_fire_time_waiting() -> None:
    t0 = at("2026-01-01T12:00:00")
    j = job("p", "* * * * * *")
    state = scheduled(j, now=t0, lead=0.0)
    [first] = state.advance(t0 + timedelta(seconds=1))
    accept(state, first, "a")
    assert state.advance(t0 + timedelta(seconds=2)) == []
    assert state.jobs["p"].pending == (t0 + timedelta(seconds=2), False)
    assert state.manual(j, t0 + timedelta(seconds=2.5)) is None
    assert state.skipped == 1 and state.queued_manual("p") == t0 + timedelta(seconds=2.5)
    [after] = state.reported(ended(first, "a", Status.SUCCEEDED))
    assert (after.fire_time, after.manual) == (t0 + timedelta(seconds=2.5), True)


def test_a_manual_run_of_a_job_not_scheduled_is_followed_then_dropped() -> None:
    state = LeaderState()
    j = job("off", "* * * * *", enabled=False)
    start = state.manual(j, at("2026-01-01T12:00:00"))
    assert start is not None and isinstance(state.jobs["off"], JobState)
    assert state.jobs["off"].schedule is None
    accept(state, start, "a")
    assert state.advance(at("2026-01-01T13:00:00")) == []
    state.reported(ended(start, "a", Status.SUCCEEDED))
    assert "off" not in state.jobs


# -- reports ------------------------------------------------------------------------------------


def test_finished_counts_only_from_the_node_and_process_running_it() -> None:
    state = LeaderState()
    start = state.manual(job("r", "0 0 1 1 *"), at("2026-01-01T12:00:00"))
    assert start is not None
    accept(state, start, "a", "inc-1")
    assert state.reported(ended(start, "b", Status.SUCCEEDED, incarnation="inc-1")) == []
    assert state.reported(ended(start, "a", Status.SUCCEEDED, incarnation="inc-2")) == []
    assert state.reported(ended(start, "a", Status.RUNNING, incarnation="inc-1")) == []
    stale = Execution("r", start.fire_time, 2, "a", Status.SUCCEEDED, incarnation="inc-1")
    assert state.reported(stale) == []
    assert state.jobs["r"].run is start.run
    state.reported(ended(start, "a", Status.SUCCEEDED, incarnation="inc-1"))
    assert state.jobs["r"].run is None


def test_a_finished_before_the_dispatch_reply_is_kept_until_accepted() -> None:
    state = LeaderState()
    start = state.manual(job("e", "0 0 1 1 *", max_attempts=2), at("2026-01-01T12:00:00"))
    assert start is not None
    assert state.reported(ended(start, "a", Status.TIMEOUT)) == []  # no node yet: kept
    assert state.jobs["e"].run is start.run and start.run.early is not None
    [retry] = accept(state, start, "a")  # now it counts
    assert retry.attempt == 2 and retry.tried == {"a"}


def test_an_adopted_attempt_is_followed_or_finished() -> None:
    state = LeaderState()
    start = state.manual(job("d", "0 0 1 1 *", max_attempts=2), at("2026-01-01T12:00:00"))
    assert start is not None
    running = Execution("d", start.fire_time, 1, "b", Status.RUNNING, incarnation="i")
    assert state.adopted("d", start.run, running) == []
    assert (start.run.node, start.run.incarnation, start.run.tried) == ("b", "i", {"b"})
    assert state.placed() == [("d", start.run)]
    assert state.tracking(start.exec_id) and not state.tracking("d@2026-01-01T12:00:00Z#2")
    [retry] = state.adopted("d", start.run, running.with_changes(status=Status.LOST))
    assert retry.attempt == 2 and retry.tried == {"b"}
    assert state.undispatched("d") is retry.run and state.current("d", retry.run) is not None
    assert state.current("d", start.run) is None  # a dispatch of the old attempt is moot


def test_placed_lists_the_accepted_runs_in_progress_only() -> None:
    now = at("2026-01-01T12:05:30")
    old = Execution("r", at("2026-01-01T12:00:00"), 1, "a", Status.RUNNING, incarnation="i")
    state = LeaderState()
    starts = state.load(
        [job(f"j{i}", "0 0 1 1 *") for i in range(100)] + [job("r", "0 0 1 1 *")], [old], now, never
    )
    assert starts == [] and [(n, r.fire_time) for n, r in state.placed()] == [("r", old.fire_time)]
    start = state.manual(job("j7", "0 0 1 1 *"), now)
    assert start is not None and len(state.placed()) == 1  # not accepted yet
    accept(state, start, "b")
    assert sorted(n for n, _ in state.placed()) == ["j7", "r"]
    state.reported(old.with_changes(status=Status.SUCCEEDED))
    state.reported(ended(start, "b", Status.FAILED))
    assert state.placed() == []


def test_clear_forgets_everything() -> None:
    state, _ = loaded(job("j", "* * * * * *"), now=at("2026-01-01T12:00:00"))
    state.clear()
    assert state.jobs == {} and state.next_send() is None
    assert isinstance(Run(at("2026-01-01T12:00:00"), 1).exec_id("j"), str)

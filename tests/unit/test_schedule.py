"""Unit tests of libdcron.schedule: parsing, validation, fire times and Debian cron's DST rules.

Expected instants are worked out by hand from the tz database facts they depend on:

* America/New_York 2024: EST (-5) -> EDT (-4) on 2024-03-10 at 07:00Z (02:00 EST becomes 03:00
  EDT); EDT -> EST on 2024-11-03 at 06:00Z (02:00 EDT becomes 01:00 EST).
* Europe/London 2024: GMT -> BST (+1) on 2024-03-31 at 01:00Z; BST -> GMT on 2024-10-27 at 01:00Z.
* Australia/Lord_Howe 2024: +11 -> +10:30 on 2024-04-06 at 15:00Z (02:00 local becomes 01:30);
  +10:30 -> +11 on 2024-10-05 at 15:30Z (02:00 local becomes 02:30).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import croniter as croniter_module
import pytest

from libdcron.errors import ValidationError
from libdcron.model import Job
from libdcron.schedule import DESCRIPTORS, Schedule, parse_duration, parse_schedule
from libdcron.zone_transitions import EMPTY_ZONE

NY = "America/New_York"
LONDON = "Europe/London"
LORD_HOWE = "Australia/Lord_Howe"


def z(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    """An aware UTC datetime."""
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def fires(expression: str, tz: str, after: datetime, until: datetime) -> list[datetime]:
    """Every fire instant in (after, until]."""
    out: list[datetime] = []
    for instant in parse_schedule(expression, tz).iter_after(after):
        if instant > until:
            return out
        out.append(instant)
    raise AssertionError("unreachable")


# -- plain next times ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/15 * * * *", z(2024, 6, 1, 10, 7, 30), z(2024, 6, 1, 10, 15)),
        ("*/15 * * * *", z(2024, 6, 1, 10, 15), z(2024, 6, 1, 10, 30)),  # strictly after
        ("0 9 * * 1-5", z(2024, 6, 7, 10), z(2024, 6, 10, 9)),  # Friday 10:00 -> Monday 09:00
        ("0 0 29 2 *", z(2024, 3, 1), z(2028, 2, 29)),
        ("5 4 * * sun", z(2024, 6, 1), z(2024, 6, 2, 4, 5)),  # 2024-06-01 is a Saturday
        ("0 12 1 jan,jul *", z(2024, 6, 1), z(2024, 7, 1, 12)),
    ],
)
def test_five_field_next(expression: str, after: datetime, expected: datetime) -> None:
    assert parse_schedule(expression).next_after(after) == expected


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/10 * * * * *", z(2024, 6, 1, 10, 0, 5), z(2024, 6, 1, 10, 0, 10)),
        ("*/10 * * * * *", z(2024, 6, 1, 10, 0, 10), z(2024, 6, 1, 10, 0, 20)),
        ("30 0 12 * * *", z(2024, 6, 1, 12, 0, 30), z(2024, 6, 2, 12, 0, 30)),  # second 30 of 12:00
        ("* * * * * *", datetime(2024, 6, 1, 10, 0, 0, 500000, tzinfo=UTC), z(2024, 6, 1, 10, 0, 1)),
        ("0 * * * * *", datetime(2024, 6, 1, 10, 0, 59, 999999, tzinfo=UTC), z(2024, 6, 1, 10, 1)),
    ],
)
def test_six_field_next_has_seconds_first(expression: str, after: datetime, expected: datetime) -> None:
    assert parse_schedule(expression).next_after(after) == expected


def test_results_are_aware_utc_and_accept_any_aware_input() -> None:
    schedule = parse_schedule("0 * * * *")
    after = datetime(2024, 6, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))  # 10:30Z
    result = schedule.next_after(after)
    assert result == z(2024, 6, 1, 11)
    assert result.tzinfo is UTC


def test_naive_datetimes_are_rejected() -> None:
    schedule = parse_schedule("0 * * * *")
    with pytest.raises(ValidationError, match="timezone-aware"):
        schedule.next_after(datetime(2024, 6, 1))
    with pytest.raises(ValidationError, match="timezone-aware"):
        schedule.newest_at_or_before(datetime(2024, 6, 1), z(2024, 6, 1))


def test_iter_after_is_strictly_increasing() -> None:
    iterator = parse_schedule("*/20 * * * *", NY).iter_after(z(2024, 11, 3, 4))
    got = [next(iterator) for _ in range(12)]
    assert got == sorted(set(got))
    assert got[0] == z(2024, 11, 3, 4, 20)


def test_attributes() -> None:
    schedule = parse_schedule("  30 2 * * *  ", NY)
    assert schedule.expression == "  30 2 * * *  "  # as given
    assert schedule.tz == NY
    assert schedule.zone == ZoneInfo(NY)
    assert schedule == Schedule("  30 2 * * *  ", NY)
    assert parse_schedule("30 2 * * *").tz == "UTC"


# -- descriptors and @every ------------------------------------------------------------------------

AFTER = z(2024, 6, 15, 10)  # a Saturday


@pytest.mark.parametrize(
    ("descriptor", "expected", "fixed"),
    [
        ("@yearly", z(2025, 1, 1), True),
        ("@annually", z(2025, 1, 1), True),
        ("@monthly", z(2024, 7, 1), True),
        ("@weekly", z(2024, 6, 16), True),  # Sunday 00:00
        ("@daily", z(2024, 6, 16), True),
        ("@midnight", z(2024, 6, 16), True),
        ("@hourly", z(2024, 6, 15, 11), False),
        ("@DAILY", z(2024, 6, 16), True),
    ],
)
def test_descriptors(descriptor: str, expected: datetime, fixed: bool) -> None:
    schedule = parse_schedule(descriptor)
    assert schedule.next_after(AFTER) == expected
    assert schedule.fixed_time is fixed


def test_descriptor_table_is_complete() -> None:
    assert set(DESCRIPTORS) == {
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    }


def test_descriptor_in_a_time_zone() -> None:
    # Midnight in New York in June is 04:00Z (EDT).
    assert parse_schedule("@daily", NY).next_after(AFTER) == z(2024, 6, 16, 4)


def test_every_90s_is_anchored_to_the_epoch() -> None:
    # 2024-01-01T00:00Z is 1704067200 s = 18934080 * 90 s after the epoch: a multiple.
    schedule = parse_schedule("@every 90s")
    assert schedule.next_after(z(2024, 1, 1, 0, 0, 1)) == z(2024, 1, 1, 0, 1, 30)
    assert schedule.next_after(z(2024, 1, 1, 0, 1, 30)) == z(2024, 1, 1, 0, 3)
    assert schedule.next_after(z(2023, 12, 31, 23, 59, 59)) == z(2024, 1, 1)
    assert schedule.fixed_time is False


def test_every_does_not_depend_on_when_it_is_computed_or_the_zone() -> None:
    # 7 min = 420 s; 1704067200 / 420 = 4057302.86, so the grid near 2024-01-01T00:00Z is
    # 4057302 * 420 = 23:54:00Z (Dec 31) and 4057303 * 420 = 00:01:00Z: not "after + 7 minutes".
    expected = [z(2024, 1, 1, 0, 1), z(2024, 1, 1, 0, 8), z(2024, 1, 1, 0, 15)]
    for tz in ("UTC", "Asia/Kolkata", NY, LORD_HOWE):
        schedule = parse_schedule("@every 7m", tz)
        iterator = schedule.iter_after(z(2024, 1, 1))
        assert [next(iterator) for _ in range(3)] == expected
        assert schedule.next_after(z(2024, 1, 1, 0, 0, 59, 999999)) == expected[0]
        assert schedule.next_after(z(2024, 1, 1, 0, 5)) == expected[1]


def test_every_across_a_dst_change_is_real_time() -> None:
    schedule = parse_schedule("@every 1h", NY)
    assert fires("@every 1h", NY, z(2024, 11, 3, 4, 30), z(2024, 11, 3, 7, 30)) == [
        z(2024, 11, 3, 5),
        z(2024, 11, 3, 6),
        z(2024, 11, 3, 7),
    ]
    assert schedule.newest_at_or_before(z(2024, 11, 3, 6, 59), z(2024, 11, 3, 6, 54)) is None


# -- parse_duration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("2h", 7200),
        ("1d", 86400),
        ("1d2h3m4s", 93784),
        ("1s", 1),
        (" 10M ", 600),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "expected a whole number with a unit"),
        ("90", "expected a whole number with a unit"),
        ("5x", "expected a whole number with a unit"),
        ("1.5h", "expected a whole number with a unit"),
        ("-5m", "expected a whole number with a unit"),
        ("30m1h", "largest first"),
        ("1h 30m", "expected a whole number with a unit"),
        ("0s", "must be at least 1s"),
        ("0h0m", "must be at least 1s"),
        ("99999d", "at most 36500d"),
    ],
)
def test_parse_duration_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_duration(text)
    assert f"invalid duration {text!r}" in str(info.value)
    assert reason in str(info.value)


# -- bad expressions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* 25 * * *", "invalid cron expression '* 25 * * *': field 2 (hour) '25': value out of range 0-23"),
        ("60 * * * *", "field 1 (minute) '60': value out of range 0-59"),
        ("0 0 * * 8", "field 5 (day-of-week) '8': value out of range 0-7"),
        ("0 0 0 * *", "field 3 (day-of-month) '0': value out of range 1-31"),
        ("0 0 1 13 *", "field 4 (month) '13': value out of range 1-12"),
        ("0 0-30 * * *", "field 2 (hour) '0-30': value out of range 0-23"),
        ("5,61 * * * *", "field 1 (minute) '5,61': value out of range 0-59"),
        ("foo * * * *", "field 1 (minute) 'foo': invalid value; expected numbers 0-59"),
        ("0 0 * * mon-foo", "field 5 (day-of-week) 'mon-foo': invalid value; expected numbers 0-7 or names"),
        ("0 0 * jna *", "field 4 (month) 'jna': invalid value; expected numbers 1-12 or names jan-dec"),
        ("*/0 * * * *", "field 1 (minute) '*/0': step must be at least 1"),
        ("1,,2 * * * *", "field 1 (minute) '1,,2': empty element in a list"),
        ("-1 * * * *", "field 1 (minute) '-1': negative values are not allowed"),
        # '#' is refused whatever follows it, as in Debian cron (it used to pass to croniter).
        ("0 0 * * 1#6", "field 5 (day-of-week) '1#6': '#' (the n-th weekday) is not supported"),
        ("H * * * *", "field 1 (minute) 'H': hashed (H) and random (R) values are not supported"),
        ("0 R * * *", "field 2 (hour) 'R': hashed (H) and random (R) values are not supported"),
        # six fields: seconds first
        ("60 * * * * *", "field 1 (second) '60': value out of range 0-59"),
        ("0 60 * * * *", "field 2 (minute) '60': value out of range 0-59"),
        ("0 0 24 * * *", "field 3 (hour) '24': value out of range 0-23"),
        ("0 0 0 * * 9", "field 6 (day-of-week) '9': value out of range 0-7"),
        # field count
        ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week) or 6"),
        ("* * * * * * *", "got 7"),
        ("", "it is empty"),
        ("   ", "it is empty"),
        # impossible dates
        ("0 0 31 2 *", "it never fires (no date matches day-of-month '31', month '2'"),
        ("0 0 30 2 *", "it never fires"),
        ("0 0 0 31 4,6,9,11 *", "it never fires"),
        # descriptors
        ("@reboot", "unknown descriptor '@reboot' (known: @yearly"),
        ("@dayly", "unknown descriptor '@dayly'"),
        ("@daily 5", "@daily takes no argument"),
        ("@every", "@every takes one duration"),
        ("@every 1h 30m", "@every takes one duration"),
        ("@every 5x", "invalid duration '5x'"),
        ("@every 0s", "invalid duration '0s': must be at least 1s"),
    ],
)
def test_bad_expressions_name_position_and_reason(expression: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_schedule(expression)
    assert str(info.value).startswith(f"invalid cron expression {expression!r}: ")
    assert message in str(info.value)


@pytest.mark.parametrize("tz", ["Mars/Base", "../etc/passwd", "America", "Not A Zone", " "])
def test_unknown_time_zone(tz: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_schedule("* * * * *", tz)
    assert str(info.value) == f"unknown time zone {tz!r}"


def test_empty_time_zone_is_refused_with_one_message() -> None:
    # '' was stored as UTC at registration but refused by `dcron next`; it is refused everywhere.
    with pytest.raises(ValidationError) as info:
        parse_schedule("* * * * *", "")
    assert str(info.value) == EMPTY_ZONE
    assert "give an IANA name such as Europe/Paris" in EMPTY_ZONE
    with pytest.raises(ValidationError) as info:
        Job("nightly", "0 2 * * *", "sh", "file:///x.sh", tz="").validate()
    assert str(info.value) == EMPTY_ZONE


def test_no_croniter_exception_escapes_at_the_end_of_time() -> None:
    schedule = parse_schedule("30 2 * * *", NY)
    with pytest.raises(ValidationError, match="no fire time"):
        schedule.next_after(z(9999, 12, 31, 23, 59))
    assert schedule.newest_at_or_before(z(1, 1, 1, 0, 5), z(1, 1, 1)) is None


# -- fixed-time flag -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "fixed"),
    [
        ("30 2 * * *", True),
        ("0 9-17 * * 1-5", True),
        ("0,30 1,2 * * *", True),
        ("@daily", True),
        ("@weekly", True),
        ("*/5 * * * *", False),
        ("0 * * * *", False),
        ("* 2 * * *", False),
        ("5 */2 * * *", False),
        ("@hourly", False),
        ("0 30 2 * * *", False),  # six fields: never fixed
        ("@every 1h", False),
    ],
)
def test_fixed_time_flag(expression: str, fixed: bool) -> None:
    assert parse_schedule(expression, NY).fixed_time is fixed


# -- DST: America/New_York -------------------------------------------------------------------------


def test_ny_spring_forward_fixed_job_runs_once_at_the_change() -> None:
    # 02:30 does not exist on 2024-03-10: the job runs at the first instant after it, 03:00 EDT.
    got = fires("30 2 * * *", NY, z(2024, 3, 9, 12), z(2024, 3, 11, 12))
    assert got == [z(2024, 3, 10, 7), z(2024, 3, 11, 6, 30)]  # then 02:30 EDT = 06:30Z


def test_ny_spring_forward_gap_wall_times_collapse_into_one_run() -> None:
    # 02:00, 02:15, 02:30 and 02:45 all fall in the gap: one run at 07:00Z, then 02:00 EDT next day.
    got = fires("0,15,30,45 2 * * *", NY, z(2024, 3, 10, 5), z(2024, 3, 11, 6, 15))
    assert got == [z(2024, 3, 10, 7), z(2024, 3, 11, 6), z(2024, 3, 11, 6, 15)]


def test_ny_spring_forward_gap_run_and_existing_wall_time_at_the_change_run_once() -> None:
    # 02:00 (in the gap) and 03:00 EDT are both 07:00Z: one run.
    got = fires("0 2,3 * * *", NY, z(2024, 3, 10, 5), z(2024, 3, 10, 23))
    assert got == [z(2024, 3, 10, 7)]


def test_ny_spring_forward_non_fixed_jobs_skip_missing_wall_times() -> None:
    # 01:30 EST = 06:30Z, then 02:00 and 02:30 do not exist, 03:00 EDT = 07:00Z.
    got = fires("*/30 * * * *", NY, z(2024, 3, 10, 6), z(2024, 3, 10, 7, 30))
    assert got == [z(2024, 3, 10, 6, 30), z(2024, 3, 10, 7), z(2024, 3, 10, 7, 30)]
    # Every minute of hour 2: none exists on 2024-03-10; next is 02:00 EDT on 03-11 = 06:00Z.
    assert parse_schedule("* 2 * * *", NY).next_after(z(2024, 3, 10, 5)) == z(2024, 3, 11, 6)


def test_ny_fall_back_fixed_job_runs_once_at_first_occurrence() -> None:
    # 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST): only the first runs.
    got = fires("30 1 * * *", NY, z(2024, 11, 2, 12), z(2024, 11, 4, 12))
    assert got == [z(2024, 11, 3, 5, 30), z(2024, 11, 4, 6, 30)]
    assert z(2024, 11, 3, 6, 30) not in got


def test_ny_fall_back_fixed_job_started_inside_the_repeated_hour() -> None:
    schedule = parse_schedule("30 1 * * *", NY)
    # 06:10Z is 01:10 EST, second pass: 01:30 already ran at 05:30Z.
    assert schedule.next_after(z(2024, 11, 3, 6, 10)) == z(2024, 11, 4, 6, 30)
    assert schedule.next_after(z(2024, 11, 3, 5, 30)) == z(2024, 11, 4, 6, 30)


def test_ny_fall_back_non_fixed_job_runs_in_both_passes() -> None:
    got = fires("30 * * * *", NY, z(2024, 11, 3, 5), z(2024, 11, 3, 7, 30))
    # 01:30 EDT, 01:30 EST, 02:30 EST
    assert got == [z(2024, 11, 3, 5, 30), z(2024, 11, 3, 6, 30), z(2024, 11, 3, 7, 30)]
    # Starting inside the first pass, after 01:45 EDT: the second 01:30 is next.
    assert parse_schedule("30 * * * *", NY).next_after(z(2024, 11, 3, 5, 45)) == z(2024, 11, 3, 6, 30)


def test_ny_fall_back_fixed_job_with_hour_list() -> None:
    # 0 1,2: 01:00 EDT = 05:00Z, (01:00 EST = 06:00Z skipped), 02:00 EST = 07:00Z.
    got = fires("0 1,2 * * *", NY, z(2024, 11, 3, 4), z(2024, 11, 3, 8))
    assert got == [z(2024, 11, 3, 5), z(2024, 11, 3, 7)]


# -- DST: Europe/London ----------------------------------------------------------------------------


def test_london_spring_forward() -> None:
    # 01:30 does not exist on 2024-03-31: fixed job runs at the change, 01:00Z (02:00 BST).
    assert fires("30 1 * * *", LONDON, z(2024, 3, 30, 12), z(2024, 4, 1, 12)) == [
        z(2024, 3, 31, 1),
        z(2024, 4, 1, 0, 30),  # 01:30 BST
    ]
    # Non-fixed: 00:40 GMT, then 01:00-01:59 are skipped, 02:00 BST = 01:00Z.
    assert fires("*/20 * * * *", LONDON, z(2024, 3, 31, 0, 30), z(2024, 3, 31, 1, 20)) == [
        z(2024, 3, 31, 0, 40),
        z(2024, 3, 31, 1),
        z(2024, 3, 31, 1, 20),
    ]


def test_london_fall_back() -> None:
    # 01:30 BST = 00:30Z runs; 01:30 GMT = 01:30Z does not; next day 01:30 GMT = 01:30Z.
    assert fires("30 1 * * *", LONDON, z(2024, 10, 26, 12), z(2024, 10, 28, 12)) == [
        z(2024, 10, 27, 0, 30),
        z(2024, 10, 28, 1, 30),
    ]
    assert fires("30 * * * *", LONDON, z(2024, 10, 27), z(2024, 10, 27, 2, 30)) == [
        z(2024, 10, 27, 0, 30),
        z(2024, 10, 27, 1, 30),
        z(2024, 10, 27, 2, 30),
    ]


# -- DST: Australia/Lord_Howe (30-minute shift) ----------------------------------------------------


def test_lord_howe_spring_forward_half_hour() -> None:
    # 2024-10-06 02:15 local does not exist (02:00 +10:30 -> 02:30 +11): runs at the change, 15:30Z.
    assert fires("15 2 * * *", LORD_HOWE, z(2024, 10, 4, 12), z(2024, 10, 6, 16)) == [
        z(2024, 10, 4, 15, 45),  # 02:15 +10:30 on 10-05
        z(2024, 10, 5, 15, 30),
        z(2024, 10, 6, 15, 15),  # 02:15 +11 on 10-07
    ]
    # Non-fixed every 15 minutes: 01:45 +10:30, then 02:00 and 02:15 skipped, 02:30 +11, 02:45 +11.
    assert fires("*/15 * * * *", LORD_HOWE, z(2024, 10, 5, 15), z(2024, 10, 5, 15, 45)) == [
        z(2024, 10, 5, 15, 15),
        z(2024, 10, 5, 15, 30),
        z(2024, 10, 5, 15, 45),
    ]


def test_lord_howe_fall_back_half_hour() -> None:
    # 2024-04-07 01:45 happens at +11 (14:45Z) and at +10:30 (15:15Z).
    assert fires("45 1 * * *", LORD_HOWE, z(2024, 4, 6, 12), z(2024, 4, 7, 16)) == [
        z(2024, 4, 6, 14, 45),
        z(2024, 4, 7, 15, 15),  # 01:45 +10:30 on 04-08
    ]
    assert fires("45 * * * *", LORD_HOWE, z(2024, 4, 6, 14), z(2024, 4, 6, 16, 15)) == [
        z(2024, 4, 6, 14, 45),
        z(2024, 4, 6, 15, 15),
        z(2024, 4, 6, 16, 15),  # 02:45 +10:30
    ]


# -- DST: six fields follow real time --------------------------------------------------------------


def test_six_field_expression_follows_real_time_in_dst_zone() -> None:
    # 02:30:00 does not exist on 2024-03-10: no run that day (not even at the change).
    assert fires("0 30 2 * * *", NY, z(2024, 3, 9, 12), z(2024, 3, 11, 12)) == [z(2024, 3, 11, 6, 30)]
    # 01:30:00 happens twice on 2024-11-03: both run.
    assert fires("0 30 1 * * *", NY, z(2024, 11, 2, 12), z(2024, 11, 4, 12)) == [
        z(2024, 11, 3, 5, 30),
        z(2024, 11, 3, 6, 30),
        z(2024, 11, 4, 6, 30),
    ]
    # Every second across the spring-forward change: 06:59:59Z (01:59:59 EST) -> 07:00:00Z.
    every_second = parse_schedule("* * * * * *", NY)
    assert every_second.next_after(z(2024, 3, 10, 6, 59, 59)) == z(2024, 3, 10, 7)
    assert every_second.next_after(z(2024, 11, 3, 5, 59, 59)) == z(2024, 11, 3, 6)


# -- newest_at_or_before ---------------------------------------------------------------------------


def test_newest_at_or_before_plain() -> None:
    schedule = parse_schedule("*/5 * * * *")
    assert schedule.newest_at_or_before(z(2024, 6, 1, 10, 7), z(2024, 6, 1, 10, 2)) == z(2024, 6, 1, 10, 5)
    # both bounds are inclusive
    assert schedule.newest_at_or_before(z(2024, 6, 1, 10, 5), z(2024, 6, 1, 10, 1)) == z(2024, 6, 1, 10, 5)
    assert schedule.newest_at_or_before(z(2024, 6, 1, 10, 9), z(2024, 6, 1, 10, 5)) == z(2024, 6, 1, 10, 5)
    # nothing in the window
    assert parse_schedule("0 * * * *").newest_at_or_before(z(2024, 6, 1, 10, 6), z(2024, 6, 1, 10, 1)) is None
    # empty window
    assert schedule.newest_at_or_before(z(2024, 6, 1, 10, 0), z(2024, 6, 1, 10, 5)) is None


def test_newest_at_or_before_seconds_and_every() -> None:
    at = datetime(2024, 6, 1, 10, 0, 0, 500000, tzinfo=UTC)
    assert parse_schedule("* * * * * *").newest_at_or_before(at, z(2024, 6, 1, 9, 59, 59)) == z(
        2024, 6, 1, 10
    )
    every = parse_schedule("@every 90s", NY)
    assert every.newest_at_or_before(z(2024, 1, 1, 0, 2), z(2024, 1, 1)) == z(2024, 1, 1, 0, 1, 30)
    assert every.newest_at_or_before(z(2024, 1, 1, 0, 1, 29), z(2024, 1, 1, 0, 0, 1)) is None


def test_newest_at_or_before_across_dst() -> None:
    fixed = parse_schedule("30 1 * * *", NY)
    assert fixed.newest_at_or_before(z(2024, 11, 3, 6, 35), z(2024, 11, 3, 6, 30)) is None  # second pass
    assert fixed.newest_at_or_before(z(2024, 11, 3, 5, 35), z(2024, 11, 3, 5, 29)) == z(2024, 11, 3, 5, 30)
    assert fixed.newest_at_or_before(z(2024, 11, 3, 6, 35), z(2024, 11, 3, 5)) == z(2024, 11, 3, 5, 30)
    both = parse_schedule("30 * * * *", NY)
    assert both.newest_at_or_before(z(2024, 11, 3, 6, 35), z(2024, 11, 3, 6, 30)) == z(2024, 11, 3, 6, 30)
    spring = parse_schedule("30 2 * * *", NY)
    assert spring.newest_at_or_before(z(2024, 3, 10, 7, 3), z(2024, 3, 10, 6, 58)) == z(2024, 3, 10, 7)
    assert spring.newest_at_or_before(z(2024, 3, 10, 6, 59), z(2024, 3, 10, 6, 54)) is None
    # Non-fixed hour-2 job: 01:58 EST .. 03:03 EDT holds no 02:xx wall time.
    hour_two = parse_schedule("* 2 * * *", NY)
    assert hour_two.newest_at_or_before(z(2024, 3, 10, 7, 3), z(2024, 3, 10, 6, 58)) is None


# -- cross-check against a brute-force oracle around transitions -----------------------------------


def _matches(expanded: list[list[Any]], wall: datetime, both: bool) -> bool:
    """Does the naive ``wall`` match croniter's expansion of a plain 5-field expression?

    ``both``: Debian's day rule, a day-of-month or day-of-week field starts with ``*``, so a day
    must match both (this oracle used croniter's rule, "either" unless one expands to ``*``).
    """
    minute, hour, day, month, weekday = expanded

    def has(values: list[Any], value: int) -> bool:
        return values == ["*"] or value in values

    if not (has(minute, wall.minute) and has(hour, wall.hour) and has(month, wall.month)):
        return False
    cron_weekday = (wall.weekday() + 1) % 7
    if both:
        return has(day, wall.day) and has(weekday, cron_weekday)
    return has(day, wall.day) or has(weekday, cron_weekday)


def _oracle(expression: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """Fire instants in (start, end], minute by minute, straight from the rules."""
    zone = ZoneInfo(tz)
    expanded = croniter_module.croniter.expand(expression)[0]
    words = expression.split()
    fixed = not words[0].startswith("*") and not words[1].startswith("*")
    both = words[2].startswith("*") or words[4].startswith("*")
    out: list[datetime] = []
    t = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while t <= end:
        local = t.astimezone(zone)
        wall = local.replace(tzinfo=None)
        fire = False
        if _matches(expanded, wall, both):
            # non-fixed: every real occurrence; fixed: only the first occurrence (fold=0)
            fire = not fixed or wall.replace(tzinfo=zone, fold=0).astimezone(UTC) == t
        if fixed and not fire:
            before = (t - timedelta(minutes=1)).astimezone(zone).utcoffset()
            after = local.utcoffset()
            assert before is not None and after is not None
            if after > before:  # spring forward at t: gap wall times [t+before, t+after)
                gap = t.replace(tzinfo=None) + before
                while gap < t.replace(tzinfo=None) + after:
                    fire = fire or _matches(expanded, gap, both)
                    gap += timedelta(minutes=1)
        if fire:
            out.append(t)
        t += timedelta(minutes=1)
    return out


ORACLE_WINDOWS = [
    (NY, z(2024, 3, 9, 20), z(2024, 3, 11, 2)),
    (NY, z(2024, 11, 2, 20), z(2024, 11, 4, 2)),
    (LONDON, z(2024, 3, 30, 14), z(2024, 3, 31, 20)),
    (LONDON, z(2024, 10, 26, 14), z(2024, 10, 27, 20)),
    (LORD_HOWE, z(2024, 4, 6, 2), z(2024, 4, 7, 8)),
    (LORD_HOWE, z(2024, 10, 5, 2), z(2024, 10, 6, 8)),
]
ORACLE_EXPRESSIONS = [
    "30 2 * * *",
    "0,15,30,45 1,2 * * *",
    "10-50/20 0-3 * * *",
    "45 1 * * *",
    "*/20 * * * *",
    "* 2 * * *",
    "0 * * * *",
    "15 */2 * * *",
    # Debian's day rule around the changes (all on Sundays): both fields, then either field.
    "30 1 */2 * sun",
    "0 * 1-7 * 0",
]


@pytest.mark.parametrize(("tz", "start", "end"), ORACLE_WINDOWS)
@pytest.mark.parametrize("expression", ORACLE_EXPRESSIONS)
def test_matches_brute_force_oracle(expression: str, tz: str, start: datetime, end: datetime) -> None:
    expected = _oracle(expression, tz, start - timedelta(minutes=10), end)
    assert fires(expression, tz, start, end) == [f for f in expected if f > start]
    schedule = parse_schedule(expression, tz)
    t = start
    while t <= end:
        window = [f for f in expected if t - timedelta(minutes=5) <= f <= t]
        newest = schedule.newest_at_or_before(t, t - timedelta(minutes=5))
        assert newest == (window[-1] if window else None), t
        t += timedelta(minutes=1, seconds=30) if t.minute % 2 else timedelta(minutes=1)


# -- performance: the common case costs one croniter step ------------------------------------------


@pytest.fixture
def croniter_steps(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Count calls of croniter's get_next and get_prev."""
    counts = {"next": 0, "prev": 0}
    cls = croniter_module.croniter
    real_next, real_prev = cls.get_next, cls.get_prev

    def get_next(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["next"] += 1
        return real_next(self, *args, **kwargs)

    def get_prev(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["prev"] += 1
        return real_prev(self, *args, **kwargs)

    monkeypatch.setattr(cls, "get_next", get_next)
    monkeypatch.setattr(cls, "get_prev", get_prev)
    yield counts


@pytest.mark.parametrize(
    ("expression", "tz"),
    [
        ("* * * * * *", "Europe/Paris"),
        ("*/5 * * * *", NY),
        ("30 2 * * *", "Europe/Paris"),
        ("* * * * *", "UTC"),
    ],
)
def test_next_after_away_from_transitions_is_one_croniter_step(
    croniter_steps: dict[str, int], expression: str, tz: str
) -> None:
    schedule = parse_schedule(expression, tz)
    at = z(2024, 6, 1, 10)
    schedule.next_after(at)  # warm any per-zone table
    croniter_steps["next"] = 0
    calls = 10_000 if expression.startswith("* ") else 100  # 100 days stay clear of 2024-10-27
    began = time.perf_counter()
    for _ in range(calls):
        at = schedule.next_after(at)
    elapsed = time.perf_counter() - began
    assert croniter_steps["next"] == calls
    assert elapsed < 10  # only a guard against accidental scans; the step count is the real check


def test_newest_at_or_before_away_from_transitions_is_one_croniter_step(
    croniter_steps: dict[str, int],
) -> None:
    schedule = parse_schedule("* * * * * *", "Europe/Paris")
    croniter_steps["next"] = 0  # parsing looked for a first fire time
    at = z(2024, 6, 1, 10)
    for _ in range(1000):
        assert schedule.newest_at_or_before(at, at - timedelta(minutes=5)) == at
        at += timedelta(seconds=7)
    assert croniter_steps["prev"] == 1000
    assert croniter_steps["next"] == 0


# -- fast paths agree with the slow ones -----------------------------------------------------------

FAST_PATH_ZONES = [
    "UTC",
    "Asia/Kolkata",  # fixed offset since 1945
    NY,
    "Europe/Paris",
    LORD_HOWE,  # 30-minute DST
    "Pacific/Apia",  # skipped 2011-12-30 entirely (-10 -> +14)
    "America/Sao_Paulo",  # DST until 2019, none since
    "Africa/Casablanca",  # DST suspended for Ramadan, a few weeks each year
    "Pacific/Chatham",  # +12:45 / +13:45
]
SPARSE_EXPRESSIONS = [
    "0 0 29 2 *",  # leap days only
    "0 0 1 1 *",
    "15 3 * * 0",
    "15 2 * * 0",  # Lord Howe: in the gap on the first Sunday of October
    "30 2 * * 0",  # NY/Paris: in the gap on some Sundays
    "30 1 * * 0",  # NY: repeated on the first Sunday of November
    "0 2 1-7 3,10,11 0",
    "30 2 29 2 *",
    "0 30 2 * * 0",  # six fields: real time
    "0 0 13 * 5",  # day-of-month or day-of-week
    "45 23 31 12 *",
]
FAST_PATH_STARTS = [
    z(2011, 12, 25),
    z(2019, 2, 10),
    z(2023, 3, 20),
    z(2024, 1, 1),
    z(2024, 3, 9, 6, 59, 59),
    z(2024, 10, 5, 15, 29),
    z(2024, 11, 3, 5, 45),
    z(2024, 12, 31, 23, 50),
]


def _slow_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn off the jump over far wall times and the sampling of short spans."""
    from libdcron import schedule as schedule_module
    from libdcron import zone_transitions

    monkeypatch.setattr(schedule_module, "_LONG", timedelta.max)
    monkeypatch.setattr(zone_transitions, "_SCAN_LIMIT", timedelta(0))


@pytest.mark.parametrize("tz", FAST_PATH_ZONES)
def test_sparse_expressions_match_the_slow_path(monkeypatch: pytest.MonkeyPatch, tz: str) -> None:
    fast: dict[tuple[str, datetime], list[datetime]] = {}
    slow: dict[tuple[str, datetime], list[datetime]] = {}
    for table in (fast, slow):
        if table is slow:
            _slow_path(monkeypatch)
        for expression in SPARSE_EXPRESSIONS:
            schedule = Schedule(expression, tz)  # not the cached one: nothing shared
            for start in FAST_PATH_STARTS:
                iterator = schedule.iter_after(start)
                table[expression, start] = [next(iterator) for _ in range(8)]
    for key, expected in slow.items():
        assert fast[key] == expected, key


@pytest.mark.parametrize("tz", FAST_PATH_ZONES)
def test_sampled_transitions_match_the_year_tables(monkeypatch: pytest.MonkeyPatch, tz: str) -> None:
    from libdcron import zone_transitions

    zone = ZoneInfo(tz)
    spans = [(z(2024, 3, 8) + timedelta(minutes=37 * i), timedelta(hours=3 + 7 * i)) for i in range(14)] + [
        (start.replace(tzinfo=None) - timedelta(hours=20), timedelta(days=4)) for start in FAST_PATH_STARTS
    ]
    cases = []
    for low, length in spans:
        low = low.replace(tzinfo=None)
        for year_shift in (0, -13, 7):  # also the spring forward of other years and hemispheres
            shifted = low.replace(year=low.year + year_shift)
            cases.append((shifted, shifted + length))
            cases.append((shifted + timedelta(days=210), shifted + timedelta(days=210) + length))
    sampled = [
        (zone_transitions.first_transition(zone, a, b), zone_transitions.last_transition(zone, a, b))
        for a, b in cases
    ]
    monkeypatch.setattr(zone_transitions, "_SCAN_LIMIT", timedelta(0))
    tabled = [
        (zone_transitions.first_transition(zone, a, b), zone_transitions.last_transition(zone, a, b))
        for a, b in cases
    ]
    assert sampled == tabled
    if tz in (NY, LORD_HOWE):
        assert any(first is not None for first, _ in sampled)  # the spans do cross changes


@pytest.mark.parametrize(
    ("tz", "offset"), [("UTC", timedelta(0)), ("Asia/Kolkata", timedelta(hours=5, minutes=30))]
)
@pytest.mark.parametrize(
    "expression", ["0 0 29 2 *", "0 0 1 1 *", "15 3 * * 0", "*/10 * * * * *", "0 9 * * 1-5"]
)
def test_fixed_offset_zones_are_plain_wall_time_arithmetic(
    expression: str, tz: str, offset: timedelta
) -> None:
    cron = croniter_module.croniter(
        expression, datetime(2024, 1, 1) + offset, second_at_beginning=len(expression.split()) == 6
    )
    expected = [cron.get_next(datetime).replace(tzinfo=UTC) - offset for _ in range(50)]
    iterator = parse_schedule(expression, tz).iter_after(z(2024, 1, 1))
    assert [next(iterator) for _ in range(50)] == expected


def test_leap_days_jump_years_in_every_zone() -> None:
    for tz in ("UTC", NY, LORD_HOWE, "Asia/Kolkata"):
        zone = ZoneInfo(tz)
        iterator = parse_schedule("0 0 29 2 *", tz).iter_after(z(2024, 1, 1))
        walls = [next(iterator).astimezone(zone) for _ in range(30)]
        assert [w.year for w in walls[:6]] == [2024, 2028, 2032, 2036, 2040, 2044]
        assert 2100 not in [w.year for w in walls]  # not a leap year
        assert all((w.month, w.day, w.hour, w.minute) == (2, 29, 0, 0) for w in walls)


def test_lord_howe_weekly_job_in_the_half_hour_gap() -> None:
    # 2024-10-06 (a Sunday) 02:15 does not exist: the weekly job runs at the change, 15:30Z on 10-05.
    assert fires("15 2 * * 0", LORD_HOWE, z(2024, 9, 20), z(2024, 10, 20)) == [
        z(2024, 9, 21, 15, 45),  # 02:15 +10:30 on 09-22
        z(2024, 9, 28, 15, 45),
        z(2024, 10, 5, 15, 30),
        z(2024, 10, 12, 15, 15),  # 02:15 +11
        z(2024, 10, 19, 15, 15),
    ]
    # Six fields follow real time: no run on 10-06.
    assert fires("0 15 2 * * 0", LORD_HOWE, z(2024, 9, 27), z(2024, 10, 13)) == [
        z(2024, 9, 28, 15, 45),
        z(2024, 10, 12, 15, 15),
    ]


def test_sparse_next_after_costs_one_croniter_step(croniter_steps: dict[str, int]) -> None:
    for tz in ("UTC", NY):
        schedule = parse_schedule("0 0 29 2 *", tz)
        croniter_steps["next"] = 0
        at = z(2024, 1, 1)
        for _ in range(50):
            at = schedule.next_after(at)
        assert croniter_steps["next"] == 50

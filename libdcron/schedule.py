"""Cron schedules: parsing, validation and fire times, with Debian cron's time-zone rules.

A :class:`Schedule` is built by :func:`parse_schedule` from one of:

* a standard 5-field expression, ``minute hour day-of-month month day-of-week``;
* a 6-field expression with the seconds first, ``second minute hour day-of-month month day-of-week``;
* a descriptor: ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``),
  ``@hourly``, each expanded to its 5-field form;
* ``@every <duration>`` (see :func:`parse_duration`): every multiple of the duration since the Unix
  epoch, in UTC, whatever the time zone, so every leader computes the same instants.

Fire times follow Debian cron around daylight-saving changes.  A *fixed-time* job (a 5-field
expression whose minute and hour fields both do not start with ``*``) whose wall time is skipped
by a spring-forward change runs once, at the instant of the change; one whose wall time is
repeated by a fall-back change runs once, at the first occurrence.  Every other expression follows
real time: a wall time that does not exist is not run, a repeated one runs in both passes.

How the fire times are found: croniter steps over *naive* wall times; the offsets of the zone are
constant between transitions, so a wall time found in the segment of the current offset is a fire
instant unless a transition lies between the start and that instant, in which case the search
continues from the transition with the new offset.  Transitions are found by comparing offsets
(and bisecting) over short spans, and from a per-zone, per-year table over long ones.  The
common case costs one croniter step.  The one assumption: a zone never changes its offset twice
within :data:`_STEP` (three hours).

Errors: every bad input raises :class:`~libdcron.errors.ValidationError` naming what was wrong;
no croniter exception escapes this module.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from libdcron.errors import ValidationError

__all__ = ["Schedule", "parse_duration", "parse_schedule"]

#: Descriptors and the 5-field expressions they stand for.
DESCRIPTORS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_FIELDS_5 = ("minute", "hour", "day-of-month", "month", "day-of-week")
_FIELDS_6 = ("second", *_FIELDS_5)
_RANGES: dict[str, tuple[int, int]] = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day-of-month": (1, 31),
    "month": (1, 12),
    "day-of-week": (0, 7),
}
_NAMES = {"month": " or names jan-dec", "day-of-week": " or names sun-sat"}
# croniter's hashed (H) and random (R) values: H needs a hash id, R differs between leaders.
_HASHED = re.compile(r"^[hr](\(\d+-\d+\))?(/\d+)?$", re.IGNORECASE | re.ASCII)
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$", re.ASCII)
_MAX_DURATION = 36500 * 86400  # 100 years: beyond that the instants leave datetime's range

_EPOCH = datetime(1970, 1, 1)
_REFERENCE = datetime(2000, 1, 1)  # where parsing looks for a first fire time
_SECOND = timedelta(seconds=1)
_US = timedelta(microseconds=1)
_STEP = timedelta(hours=3)  # a zone is assumed never to change its offset twice within this
_MAX_SHIFT = timedelta(hours=26)  # the largest offset change handled for fixed-time jobs
_MAX_TRANSITIONS = 1000  # transitions crossed by one search before giving up


def parse_duration(text: str) -> int:
    """Return the number of seconds in ``text``: ``90s``, ``5m``, ``1h30m``, ``2h``, ``1d``.

    Units are ``d``, ``h``, ``m`` and ``s``, largest first, each at most once, no spaces.
    Raises :class:`ValidationError` when the text is malformed, below 1s or above 100 years.
    """
    match = _DURATION.match(text.strip().lower())
    if not text.strip() or match is None:
        raise ValidationError(
            f"invalid duration {text!r}: expected a whole number with a unit, such as 90s, 5m, "
            "1h30m, 2h or 1d (units d, h, m, s, largest first)"
        )
    days, hours, minutes, seconds = (int(group) if group else 0 for group in match.groups())
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total < 1:
        raise ValidationError(f"invalid duration {text!r}: must be at least 1s")
    if total > _MAX_DURATION:
        raise ValidationError(f"invalid duration {text!r}: must be at most 36500d (100 years)")
    return total


@functools.lru_cache(maxsize=16384)
def parse_schedule(expression: str, tz: str = "UTC") -> Schedule:
    """Parse ``expression`` in the IANA time zone ``tz``; raise :class:`ValidationError` if bad.

    Schedules are immutable, so parsed ones are cached: the leader and ``LIST`` parse each job's
    expression once, not on every call.
    """
    return Schedule(expression, tz)


class _Transition(NamedTuple):
    """A change of a zone's UTC offset: at the naive UTC instant ``at``, ``before`` -> ``after``."""

    at: datetime
    before: timedelta
    after: timedelta


class Schedule:
    """A parsed, validated schedule; computes its fire instants (aware, in UTC).

    Treat instances as immutable; they are thread-safe. The parsed expression and the zone are
    cached here.
    """

    __slots__ = ("_cron", "_every", "_lock", "_zone", "expression", "fixed_time", "tz")

    expression: str
    tz: str
    fixed_time: bool

    def __init__(self, expression: str, tz: str = "UTC") -> None:
        self.expression = expression
        self.tz = tz
        self._zone = _load_zone(tz)
        self._every: int | None = None
        self._cron: Any = None
        self._lock = threading.Lock()
        self.fixed_time = False

        words = expression.split()
        if not words:
            raise ValidationError(f"invalid cron expression {expression!r}: it is empty")
        if words[0].startswith("@"):
            name = words[0].lower()
            if name == "@every":
                if len(words) != 2:
                    raise ValidationError(
                        f"invalid cron expression {expression!r}: @every takes one duration, "
                        "such as '@every 90s'"
                    )
                try:
                    self._every = parse_duration(words[1])
                except ValidationError as exc:
                    raise ValidationError(f"invalid cron expression {expression!r}: {exc}") from None
                return
            if name not in DESCRIPTORS:
                raise ValidationError(
                    f"invalid cron expression {expression!r}: unknown descriptor {words[0]!r} "
                    f"(known: {', '.join(DESCRIPTORS)}, @every <duration>)"
                )
            if len(words) != 1:
                raise ValidationError(f"invalid cron expression {expression!r}: {name} takes no argument")
            words = DESCRIPTORS[name].split()
        if len(words) not in (5, 6):
            raise ValidationError(
                f"invalid cron expression {expression!r}: expected 5 fields (minute hour day-of-month "
                f"month day-of-week) or 6 with the seconds first, got {len(words)}"
            )
        self._cron = _compile(expression, words)
        self.fixed_time = len(words) == 5 and not words[0].startswith("*") and not words[1].startswith("*")

    def __repr__(self) -> str:
        return f"Schedule({self.expression!r}, tz={self.tz!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return (self.expression, self.tz) == (other.expression, other.tz)

    def __hash__(self) -> int:
        return hash((self.expression, self.tz))

    # -- public API ------------------------------------------------------------------------------

    @property
    def zone(self) -> ZoneInfo:
        """The time zone :attr:`tz` names, to show fire instants as wall times."""
        return self._zone

    def next_after(self, after: datetime) -> datetime:
        """Return the first fire instant strictly after the aware datetime ``after`` (aware, UTC).

        Raises :class:`ValidationError` if ``after`` is naive or no fire instant can be found
        (past croniter's 50-year search limit or datetime's range).
        """
        start = _to_naive_utc(after, "after")
        try:
            if self._every is not None:
                seconds = (start - _EPOCH) // _SECOND
                found = _EPOCH + timedelta(seconds=(seconds // self._every + 1) * self._every)
            else:
                found = self._next(start)
        except (OverflowError, ValueError) as exc:
            raise ValidationError(f"{self!r}: no fire time after {after.isoformat()}: {exc}") from None
        return found.replace(tzinfo=UTC)

    def newest_at_or_before(self, at: datetime, not_before: datetime) -> datetime | None:
        """Return the latest fire instant ``f`` with ``not_before <= f <= at`` (aware, UTC), or None.

        Both bounds must be aware; raises :class:`ValidationError` if one is naive.
        """
        end = _to_naive_utc(at, "at")
        begin = _to_naive_utc(not_before, "not_before")
        if begin > end:
            return None
        try:
            if self._every is not None:
                seconds = (end - _EPOCH) // _SECOND
                found: datetime | None = _EPOCH + timedelta(seconds=seconds // self._every * self._every)
            else:
                found = self._newest(end, begin)
        except (OverflowError, ValueError):
            return None
        if found is None or found < begin:
            return None
        return found.replace(tzinfo=UTC)

    def iter_after(self, after: datetime) -> Iterator[datetime]:
        """Yield the fire instants strictly after ``after``, in order, without end."""
        current = after
        while True:
            current = self.next_after(current)
            yield current

    # -- the walk over offset segments -----------------------------------------------------------

    def _next(self, start: datetime) -> datetime:
        """The first fire instant > ``start``; naive UTC in and out."""
        zone = self._zone
        low = start  # exclusive bound on the result
        pos = start  # transitions after this one are still ahead
        offset = _offset_at(zone, start)
        if self.fixed_time:
            # Inside the second pass of a fall-back: its wall times already ran in the first pass.
            back = _last_transition(zone, start - _MAX_SHIFT, start)
            if back is not None and back.after < back.before:
                end = back.at + (back.before - back.after)
                if start < end:
                    low = end - _US
        for _ in range(_MAX_TRANSITIONS):
            wall = self._cron_next(low + offset)
            found = wall - offset
            change = _first_transition(zone, pos, found)
            if change is None:
                return found
            if change.after > change.before:  # spring forward: wall times [at+before, at+after) skipped
                if self.fixed_time and wall < change.at + change.after:
                    return change.at
                low = change.at - _US
            elif self.fixed_time:  # fall back: skip the second pass over the repeated wall times
                low = change.at + (change.before - change.after) - _US
            else:
                low = change.at - _US
            pos = change.at
            offset = change.after
        raise ValidationError(f"{self!r}: no fire time found after {start.isoformat()}Z")

    def _newest(self, end: datetime, begin: datetime) -> datetime | None:
        """The last fire instant <= ``end`` if it is >= ``begin``, else None; naive UTC."""
        zone = self._zone
        high = end  # inclusive bound on the result
        offset = _offset_at(zone, end)
        for _ in range(_MAX_TRANSITIONS):
            if high < begin:
                return None
            wall = self._cron_prev(high + offset)
            if wall is None:
                return None
            found = wall - offset
            change = _last_transition(zone, found, high)
            if change is not None:
                # ``found`` lies before the segment; the segment holds no wall time of the job.
                if self.fixed_time and change.after > change.before and wall >= change.at + change.before:
                    return change.at  # a skipped wall time runs at the change
                high = change.at - _US
                offset = change.before
                continue
            if self.fixed_time:
                back = _last_transition(zone, found - _MAX_SHIFT, found)
                if (
                    back is not None
                    and back.after < back.before
                    and found < back.at + (back.before - back.after)
                ):
                    high = back.at - _US  # second pass of a fall-back: not run
                    offset = back.before
                    continue
            return found
        return None

    def _cron_next(self, wall: datetime) -> datetime:
        """The first wall time of the expression strictly after the naive ``wall``."""
        with self._lock:
            try:
                found: datetime = self._cron.get_next(datetime, start_time=wall)
            except Exception as exc:  # croniter raises several kinds; none may escape
                raise ValidationError(
                    f"{self!r}: no fire time within 50 years after {wall.isoformat()} ({exc})"
                ) from None
        return found

    def _cron_prev(self, wall: datetime) -> datetime | None:
        """The last wall time of the expression at or before the naive ``wall``, or None."""
        with self._lock:
            try:
                found: datetime = self._cron.get_prev(datetime, start_time=wall + _US)
            except Exception:  # croniter raises several kinds; none may escape
                return None
        return found


# -- parsing helpers -----------------------------------------------------------------------------


def _load_zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        raise ValidationError(f"unknown time zone {tz!r}") from None


def _compile(expression: str, words: list[str]) -> Any:
    """Build the croniter object for 5 or 6 ``words``; report the first bad field."""
    names = _FIELDS_5 if len(words) == 5 else _FIELDS_6
    seconds_first = len(words) == 6
    for index, (name, word) in enumerate(zip(names, words, strict=True)):
        if _HASHED.match(word):
            raise ValidationError(
                f"invalid cron expression {expression!r}: field {index + 1} ({name}) {word!r}: "
                "hashed (H) and random (R) values are not supported"
            )
    try:
        cron = croniter(" ".join(words), _REFERENCE, second_at_beginning=seconds_first)
    except Exception as whole:  # croniter raises several kinds; none may escape
        for index, (name, word) in enumerate(zip(names, words, strict=True)):
            alone = ["*"] * len(words)
            alone[index] = word
            try:
                croniter(" ".join(alone), _REFERENCE, second_at_beginning=seconds_first)
            except Exception:
                raise ValidationError(
                    f"invalid cron expression {expression!r}: field {index + 1} ({name}) {word!r}: "
                    f"{_field_reason(name, word)}"
                ) from None
        raise ValidationError(f"invalid cron expression {expression!r}: {whole}") from None
    try:
        cron.get_next(datetime, start_time=_REFERENCE)
    except Exception:  # croniter raises several kinds; none may escape
        day, month, weekday = words[-3:]
        raise ValidationError(
            f"invalid cron expression {expression!r}: it never fires (no date matches "
            f"day-of-month {day!r}, month {month!r} and day-of-week {weekday!r})"
        ) from None
    return cron


def _field_reason(name: str, word: str) -> str:
    """Say why croniter rejected ``word`` as the field ``name``."""
    low, high = _RANGES[name]
    for part in word.split(","):
        if not part:
            return "empty element in a list"
        base, slash, step = part.partition("/")
        if slash:
            if not step.isdigit():
                return f"step {step!r} is not a whole number"
            if int(step) == 0:
                return "step must be at least 1"
        if name == "day-of-week" and "#" in base:
            base, _, nth = base.partition("#")
            if nth.isdigit() and not 1 <= int(nth) <= 5:
                return "occurrence after '#' out of range 1-5"
        if base.startswith("-"):
            return "negative values are not allowed"
        for number in re.findall(r"\d+", base):
            if not low <= int(number) <= high:
                return f"value out of range {low}-{high}"
    return (
        f"invalid value; expected numbers {low}-{high}{_NAMES.get(name, '')}, '*', "
        "ranges a-b, steps */n or a-b/n, or lists a,b"
    )


# -- time-zone helpers ---------------------------------------------------------------------------


def _to_naive_utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is UTC:
        return moment.replace(tzinfo=None)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValidationError(f"{what} must be a timezone-aware datetime, got {moment.isoformat()}")
    return moment.astimezone(UTC).replace(tzinfo=None)


def _offset_at(zone: ZoneInfo, instant: datetime) -> timedelta:
    """The UTC offset of ``zone`` at the naive UTC ``instant``."""
    offset = zone.fromutc(instant.replace(tzinfo=zone)).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def _locate(zone: ZoneInfo, low: datetime, high: datetime, before: timedelta) -> _Transition:
    """The transition in (``low``, ``high``], given offset ``before`` at ``low`` and another at ``high``.

    Transitions fall on whole seconds, so bisect over whole seconds.
    """
    lo = (low - _EPOCH) // _SECOND  # offset here is ``before`` (no transition at or before low)
    hi = (high - _EPOCH) // _SECOND  # offset here differs: the transition is at or before high
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_at(zone, _EPOCH + timedelta(seconds=mid)) == before:
            lo = mid
        else:
            hi = mid
    at = _EPOCH + timedelta(seconds=hi)
    return _Transition(at, before, _offset_at(zone, at))


@functools.lru_cache(maxsize=1024)
def _year_transitions(zone: ZoneInfo, year: int) -> tuple[_Transition, ...]:
    """The transitions of ``zone`` in (``year``-01-01T00:00Z, (``year`` + 1)-01-01T00:00Z]."""
    if not 1 < year < 9999:
        return ()
    # Sample every _STEP.  The samples carry ``zone`` as tzinfo but hold UTC values, as
    # ``fromutc`` expects; aware arithmetic is much cheaper than ``replace`` per sample.
    fromutc = zone.fromutc
    cursor, end = datetime(year, 1, 1, tzinfo=zone), datetime(year + 1, 1, 1, tzinfo=zone)
    offset = fromutc(cursor).utcoffset()
    found: list[_Transition] = []
    while cursor < end:
        step = cursor + _STEP
        following = fromutc(step).utcoffset()
        if following != offset:
            assert offset is not None  # a ZoneInfo always has one
            found.append(_locate(zone, cursor.replace(tzinfo=None), step.replace(tzinfo=None), offset))
        cursor, offset = step, following
    return tuple(found)


def _transitions(
    zone: ZoneInfo, low: datetime, high: datetime, *, reverse: bool = False
) -> Iterator[_Transition]:
    """The transitions of ``zone`` in (``low``, ``high``], in order (latest first if ``reverse``)."""
    if high <= low:
        return
    if high - low <= _STEP:
        before = _offset_at(zone, low)
        if _offset_at(zone, high) != before:
            yield _locate(zone, low, high, before)
        return
    years = range(low.year, high.year + 1)
    for year in reversed(years) if reverse else years:
        changes = _year_transitions(zone, year)
        for change in reversed(changes) if reverse else changes:
            if low < change.at <= high:
                yield change


def _first_transition(zone: ZoneInfo, low: datetime, high: datetime) -> _Transition | None:
    """The first transition of ``zone`` in (``low``, ``high``], or None."""
    return next(_transitions(zone, low, high), None)


def _last_transition(zone: ZoneInfo, low: datetime, high: datetime) -> _Transition | None:
    """The last transition of ``zone`` in (``low``, ``high``], or None."""
    return next(_transitions(zone, low, high, reverse=True), None)

"""Cron schedules: parsing, validation and fire times, with Debian cron's time-zone rules.

A :class:`Schedule` is built by :func:`parse_schedule` from one of:

* a standard 5-field expression, ``minute hour day-of-month month day-of-week``;
* a 6-field expression with the seconds first, ``second minute hour day-of-month month day-of-week``;
* a descriptor: ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``),
  ``@hourly``, each expanded to its 5-field form;
* ``@every <duration>`` (see :func:`parse_duration`): every multiple of the duration since the Unix
  epoch, in UTC, whatever the time zone, so every leader computes the same instants.

Fields are read as Debian cron reads them (:mod:`~libdcron.cron_fields`), with its day rule: when
the day-of-month or the day-of-week field starts with ``*``, a day must match both; otherwise either.
Only ASCII spaces and tabs separate fields.

Fire times follow Debian cron around daylight-saving changes.  A *fixed-time* job (a 5-field
expression whose minute and hour fields both do not start with ``*``) whose wall time is skipped
by a spring-forward change runs once, at the instant of the change; one whose wall time is
repeated by a fall-back change runs once, at the first occurrence.  Every other expression follows
real time: a wall time that does not exist is not run, a repeated one runs in both passes.

How the fire times are found: croniter steps over *naive* wall times; the offsets of the zone are
constant between transitions, so a wall time found in the segment of the current offset is a fire
instant unless a transition lies between the start and that instant, in which case the search
continues from the transition with the new offset.  Transitions are found by comparing offsets
(and bisecting) over short spans, from cached per-zone day blocks over a few days, and from a
per-zone, per-year table over long ones (:mod:`~libdcron.zone_transitions`).  The common case
costs one croniter step (croniter gets the canonical numbers of each field, and the day rule).  The one assumption: a zone never changes its offset twice
within :data:`~libdcron.zone_transitions._STEP` (three hours).

Errors: every bad input raises :class:`~libdcron.errors.ValidationError` naming what was wrong;
no croniter exception escapes this module.
"""

from __future__ import annotations

import functools
import threading
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from libdcron.errors import ValidationError

from .cron_fields import DESCRIPTORS, compile_fields
from .every import every_after, every_at_or_before, parse_duration
from .zone_transitions import first_transition, last_transition, load_zone, offset_at, to_naive_utc

__all__ = ["DESCRIPTORS", "Schedule", "parse_duration", "parse_schedule"]

_US = timedelta(microseconds=1)
_MAX_SHIFT = timedelta(hours=26)  # the largest offset change handled for fixed-time jobs
_MAX_TRANSITIONS = 1000  # transitions crossed by one search before giving up
# The jump over a far wall time ``w`` (Schedule._next): a UTC offset is always less than 24 hours,
# so no instant after ``low + _NEAR`` (with _NEAR > 24h + the offset at ``low``) has a wall time at
# or before ``low``'s, and none at or before ``w - _BEFORE_WALL`` has one at or after ``w``.
_NEAR = timedelta(hours=50)
_BEFORE_WALL = timedelta(hours=25)
_LONG = timedelta(hours=96)  # a found instant farther than this from ``low`` is far


def _split(expression: str) -> list[str]:
    """The fields of ``expression``: only ASCII spaces and tabs separate them, as in Debian cron."""
    for index, char in enumerate(expression):
        if char.isspace() and char not in " \t":
            name = unicodedata.name(char, "a control character")
            raise ValidationError(
                f"invalid cron expression {expression!r}: U+{ord(char):04X} ({name}) at position "
                f"{index + 1}: only ASCII spaces and tabs separate fields; retype it as a space"
            )
    return expression.split()


@functools.lru_cache(maxsize=16384)
def parse_schedule(expression: str, tz: str = "UTC") -> Schedule:
    """Parse ``expression`` in the IANA time zone ``tz``; raise :class:`ValidationError` if bad.

    Schedules are immutable, so parsed ones are cached: the leader and ``LIST`` parse each job's
    expression once, not on every call.
    """
    return Schedule(expression, tz)


class Schedule:
    """A parsed, validated schedule; computes its fire instants (aware, in UTC).

    Treat instances as immutable; they are thread-safe. The parsed expression and the zone are
    cached here.
    """

    __slots__ = ("_cron", "_every", "_lock", "_make_cron", "_zone", "expression", "fixed_time", "tz")

    expression: str
    tz: str
    fixed_time: bool

    def __init__(self, expression: str, tz: str = "UTC") -> None:
        self.expression = expression
        self.tz = tz
        self._zone = load_zone(tz)
        self._every: int | None = None
        self._cron: Any = None
        self._make_cron: Any = None  # builds ``_cron`` (see compile_fields)
        self._lock = threading.Lock()
        self.fixed_time = False

        words = _split(expression)
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
        self._make_cron = compile_fields(expression, words)  # built at the first fire time asked
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
        start = to_naive_utc(after, "after")
        try:
            found = every_after(start, self._every) if self._every is not None else self._next(start)
        except (OverflowError, ValueError) as exc:
            raise ValidationError(f"{self!r}: no fire time after {after.isoformat()}: {exc}") from None
        return found.replace(tzinfo=UTC)

    def newest_at_or_before(self, at: datetime, not_before: datetime) -> datetime | None:
        """Return the latest fire instant ``f`` with ``not_before <= f <= at`` (aware, UTC), or None.

        Both bounds must be aware; raises :class:`ValidationError` if one is naive.
        """
        end = to_naive_utc(at, "at")
        begin = to_naive_utc(not_before, "not_before")
        if begin > end:
            return None
        try:
            if self._every is not None:
                found: datetime | None = every_at_or_before(end, self._every)
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
        wall: datetime | None = None
        for _ in range(_MAX_TRANSITIONS):
            found, wall = self._walk(start, wall)
            if found is not None:
                return found
            assert wall is not None
            start = wall - _BEFORE_WALL  # the jump: no fire in between, see _walk
        raise ValidationError(f"{self!r}: no fire time found after {start.isoformat()}Z")

    def _walk(self, start: datetime, wall: datetime | None) -> tuple[datetime | None, datetime | None]:
        """``(the first fire instant > start, None)``, or ``(None, w)`` to jump (naive UTC).

        ``wall``, if given, is the first wall time of the expression after the wall time of
        ``start``: it saves the first croniter step after a jump.

        The jump: when the next wall time ``w`` found lies far ahead (over :data:`_LONG`) and the
        zone keeps its offset over the next :data:`_NEAR`, no instant in (``start``,
        ``w - _BEFORE_WALL``] fires.  Up to ``low + _NEAR`` the offset is the current one, so the
        wall times there lie in (``low + offset``, ``w``), which holds none of the expression's;
        later instants (and the skipped wall times of any spring-forward) have wall times within
        24 hours of them, after ``low + offset`` and before ``w``.  The search then restarts just
        before ``w`` with ``w`` already known, instead of crossing every transition up to it one
        croniter step at a time (and building the tables of every year in between).
        """
        zone = self._zone
        low = start  # exclusive bound on the result
        pos = start  # transitions after this one are still ahead
        offset = offset_at(zone, start)
        if self.fixed_time:
            # Inside the second pass of a fall-back: its wall times already ran in the first pass.
            back = last_transition(zone, start - _MAX_SHIFT, start)
            if back is not None and back.after < back.before:
                end = back.at + (back.before - back.after)
                if start < end:
                    low = end - _US
                    wall = None  # the search starts elsewhere
        for _ in range(_MAX_TRANSITIONS):
            if wall is None:
                wall = self._cron_next(low + offset)
            found = wall - offset
            if found - low > _LONG:
                change = first_transition(zone, pos, low + _NEAR)
                if change is None:
                    return None, wall
            else:
                change = first_transition(zone, pos, found)
            if change is None:
                return found, None
            if change.after > change.before:  # spring forward: wall times [at+before, at+after) skipped
                if self.fixed_time and wall < change.at + change.after:
                    return change.at, None
                low = change.at - _US
            elif self.fixed_time:  # fall back: skip the second pass over the repeated wall times
                low = change.at + (change.before - change.after) - _US
            else:
                low = change.at - _US
            pos = change.at
            offset = change.after
            wall = None
        raise ValidationError(f"{self!r}: no fire time found after {start.isoformat()}Z")

    def _newest(self, end: datetime, begin: datetime) -> datetime | None:
        """The last fire instant <= ``end`` if it is >= ``begin``, else None; naive UTC."""
        zone = self._zone
        high = end  # inclusive bound on the result
        offset = offset_at(zone, end)
        for _ in range(_MAX_TRANSITIONS):
            if high < begin:
                return None
            wall = self._cron_prev(high + offset)
            if wall is None:
                return None
            found = wall - offset
            change = last_transition(zone, found, high)
            if change is not None:
                # ``found`` lies before the segment; the segment holds no wall time of the job.
                if self.fixed_time and change.after > change.before and wall >= change.at + change.before:
                    return change.at  # a skipped wall time runs at the change
                high = change.at - _US
                offset = change.before
                continue
            if self.fixed_time:
                back = last_transition(zone, found - _MAX_SHIFT, found)
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
            if self._cron is None:
                self._cron = self._make_cron()
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
            if self._cron is None:
                self._cron = self._make_cron()
            try:
                found: datetime = self._cron.get_prev(datetime, start_time=wall + _US)
            except Exception:  # croniter raises several kinds; none may escape
                return None
        return found

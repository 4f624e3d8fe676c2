"""Time zones and their transitions: changes of a zone's UTC offset, found fast.

A :class:`Transition` is found by comparing offsets and bisecting (:func:`_locate`) over spans of
up to three hours, by sampling every three hours (:func:`_scan`) over spans of up to four days, and
from a per-zone, per-year table (:func:`_year_transitions`, cached) over longer ones.
The one assumption: a zone never changes its offset twice within :data:`_STEP` (three hours).
Instants here are naive UTC datetimes.  :func:`load_zone` and :func:`to_naive_utc` raise
:class:`~libdcron.errors.ValidationError` for an unknown zone or a naive moment.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from libdcron.errors import ValidationError

__all__ = ["Transition", "first_transition", "last_transition", "load_zone", "offset_at", "to_naive_utc"]

_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)
_STEP = timedelta(hours=3)  # a zone is assumed never to change its offset twice within this
_SCAN_LIMIT = timedelta(days=4)  # spans up to this long are sampled, longer ones use the year tables


class Transition(NamedTuple):
    """A change of a zone's UTC offset: at the naive UTC instant ``at``, ``before`` -> ``after``."""

    at: datetime
    before: timedelta
    after: timedelta


def load_zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        raise ValidationError(f"unknown time zone {tz!r}") from None


def to_naive_utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is UTC:
        return moment.replace(tzinfo=None)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValidationError(f"{what} must be a timezone-aware datetime, got {moment.isoformat()}")
    return moment.astimezone(UTC).replace(tzinfo=None)


def offset_at(zone: ZoneInfo, instant: datetime) -> timedelta:
    """The UTC offset of ``zone`` at the naive UTC ``instant``."""
    offset = zone.fromutc(instant.replace(tzinfo=zone)).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def _locate(zone: ZoneInfo, low: datetime, high: datetime, before: timedelta) -> Transition:
    """The transition in (``low``, ``high``], given offset ``before`` at ``low`` and another at ``high``.

    Transitions fall on whole seconds, so bisect over whole seconds.
    """
    lo = (low - _EPOCH) // _SECOND  # offset here is ``before`` (no transition at or before low)
    hi = (high - _EPOCH) // _SECOND  # offset here differs: the transition is at or before high
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if offset_at(zone, _EPOCH + timedelta(seconds=mid)) == before:
            lo = mid
        else:
            hi = mid
    at = _EPOCH + timedelta(seconds=hi)
    return Transition(at, before, offset_at(zone, at))


@functools.lru_cache(maxsize=1024)
def _year_transitions(zone: ZoneInfo, year: int) -> tuple[Transition, ...]:
    """The transitions of ``zone`` in (``year``-01-01T00:00Z, (``year`` + 1)-01-01T00:00Z]."""
    if not 1 < year < 9999:
        return ()
    # Sample every _STEP.  The samples carry ``zone`` as tzinfo but hold UTC values, as
    # ``fromutc`` expects; aware arithmetic is much cheaper than ``replace`` per sample.
    fromutc = zone.fromutc
    cursor, end = datetime(year, 1, 1, tzinfo=zone), datetime(year + 1, 1, 1, tzinfo=zone)
    offset = fromutc(cursor).utcoffset()
    found: list[Transition] = []
    while cursor < end:
        step = cursor + _STEP
        following = fromutc(step).utcoffset()
        if following != offset:
            assert offset is not None  # a ZoneInfo always has one
            found.append(_locate(zone, cursor.replace(tzinfo=None), step.replace(tzinfo=None), offset))
        cursor, offset = step, following
    return tuple(found)


def _scan(zone: ZoneInfo, low: datetime, high: datetime) -> list[Transition]:
    """The transitions of ``zone`` in (``low``, ``high``], found by sampling every :data:`_STEP`.

    For spans of a few days: cheaper than building the tables of the years they touch.
    """
    fromutc = zone.fromutc
    cursor, end = low.replace(tzinfo=zone), high.replace(tzinfo=zone)  # UTC values, as in the tables
    offset = fromutc(cursor).utcoffset()
    found: list[Transition] = []
    while cursor < end:
        step = min(cursor + _STEP, end)
        following = fromutc(step).utcoffset()
        if following != offset:
            assert offset is not None  # a ZoneInfo always has one
            found.append(_locate(zone, cursor.replace(tzinfo=None), step.replace(tzinfo=None), offset))
        cursor, offset = step, following
    return found


def _transitions(
    zone: ZoneInfo, low: datetime, high: datetime, *, reverse: bool = False
) -> Iterator[Transition]:
    """The transitions of ``zone`` in (``low``, ``high``], in order (latest first if ``reverse``)."""
    if high <= low:
        return
    if high - low <= _STEP:
        before = offset_at(zone, low)
        if offset_at(zone, high) != before:
            yield _locate(zone, low, high, before)
        return
    if high - low <= _SCAN_LIMIT:
        sampled = _scan(zone, low, high)
        yield from reversed(sampled) if reverse else sampled
        return
    years = range(low.year, high.year + 1)
    for year in reversed(years) if reverse else years:
        changes = _year_transitions(zone, year)
        for change in reversed(changes) if reverse else changes:
            if low < change.at <= high:
                yield change


def first_transition(zone: ZoneInfo, low: datetime, high: datetime) -> Transition | None:
    """The first transition of ``zone`` in (``low``, ``high``], or None."""
    return next(_transitions(zone, low, high), None)


def last_transition(zone: ZoneInfo, low: datetime, high: datetime) -> Transition | None:
    """The last transition of ``zone`` in (``low``, ``high``], or None."""
    return next(_transitions(zone, low, high, reverse=True), None)

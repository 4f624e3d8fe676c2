"""Time zones and their transitions: changes of a zone's UTC offset, found fast.

A :class:`Transition` is found by comparing offsets and bisecting (:func:`_locate`) over spans of
up to three hours, from per-zone day blocks (:func:`_sampled`: each UTC day sampled every three
hours, once, then cached) over spans of up to four days, and from a per-zone, per-year table
(:func:`_year_transitions`, cached) over longer ones.  A leader asks about the same few days for
every job of a zone, so the common check ("no change between these two instants") is a few
dictionary look-ups.
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

__all__ = [
    "EMPTY_ZONE",
    "Transition",
    "first_transition",
    "last_transition",
    "load_zone",
    "offset_at",
    "to_naive_utc",
]

_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)
_STEP = timedelta(hours=3)  # a zone is assumed never to change its offset twice within this
_SCAN_LIMIT = timedelta(days=4)  # spans up to this long use the day blocks, longer ones the year tables
_DAY = timedelta(days=1)
_US = timedelta(microseconds=1)
_ZERO = timedelta(0)
_MAX_BLOCKS = 1 << 16  # day blocks cached per zone (about 180 years' worth); then they start over
# Per zone, the transitions in each UTC day (day number since the epoch -> (day start, day end]).
_BLOCKS: dict[ZoneInfo, dict[int, tuple[Transition, ...]]] = {}


class Transition(NamedTuple):
    """A change of a zone's UTC offset: at the naive UTC instant ``at``, ``before`` -> ``after``."""

    at: datetime
    before: timedelta
    after: timedelta


#: The one message for an empty time zone, wherever one is given (``--tz ''``, a job's ``tz``).
EMPTY_ZONE = "time zone is empty: give an IANA name such as Europe/Paris, or leave it out for UTC"


def load_zone(tz: str) -> ZoneInfo:
    """The zone named ``tz``; raise :class:`ValidationError` if it is empty or unknown."""
    if tz == "":
        raise ValidationError(EMPTY_ZONE)
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
    """The transitions of ``zone`` in (``low``, ``high``], found by sampling every :data:`_STEP`."""
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


def _sampled(zone: ZoneInfo, low: datetime, high: datetime) -> list[Transition]:
    """The transitions of ``zone`` in (``low``, ``high``], from the cached day blocks.

    For spans of a few days: cheaper than building the tables of the years they touch, and, once
    the blocks are cached (a leader asks about the same few days for every job of a zone), a few
    dictionary look-ups.
    """
    blocks = _BLOCKS.get(zone)
    if blocks is None or len(blocks) > _MAX_BLOCKS:
        blocks = _BLOCKS[zone] = {}
    found: list[Transition] = []
    for day in range((low - _EPOCH) // _DAY, (high - _EPOCH - _US) // _DAY + 1):
        block = blocks.get(day)
        if block is None:
            begin = _EPOCH + day * _DAY
            block = blocks[day] = tuple(_scan(zone, begin, begin + _DAY))
        for change in block:
            if low < change.at <= high:
                found.append(change)
    return found


def _tabled(zone: ZoneInfo, low: datetime, high: datetime, reverse: bool) -> Iterator[Transition]:
    """The transitions of ``zone`` in (``low``, ``high``], from the year tables."""
    years = range(low.year, high.year + 1)
    for year in reversed(years) if reverse else years:
        changes = _year_transitions(zone, year)
        for change in reversed(changes) if reverse else changes:
            if low < change.at <= high:
                yield change


def _short(zone: ZoneInfo, low: datetime, high: datetime) -> Transition | None:
    """The transition in (``low``, ``high``], a span of at most :data:`_STEP`, or None."""
    before = offset_at(zone, low)
    if offset_at(zone, high) != before:
        return _locate(zone, low, high, before)
    return None


def first_transition(zone: ZoneInfo, low: datetime, high: datetime) -> Transition | None:
    """The first transition of ``zone`` in (``low``, ``high``], or None."""
    span = high - low
    if span <= _STEP:
        return _short(zone, low, high) if span > _ZERO else None
    if span <= _SCAN_LIMIT:
        found = _sampled(zone, low, high)
        return found[0] if found else None
    return next(_tabled(zone, low, high, False), None)


def last_transition(zone: ZoneInfo, low: datetime, high: datetime) -> Transition | None:
    """The last transition of ``zone`` in (``low``, ``high``], or None."""
    span = high - low
    if span <= _STEP:
        return _short(zone, low, high) if span > _ZERO else None
    if span <= _SCAN_LIMIT:
        found = _sampled(zone, low, high)
        return found[-1] if found else None
    return next(_tabled(zone, low, high, True), None)

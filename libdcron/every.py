"""``@every <duration>`` schedules: durations, and the multiples of one since the Unix epoch.

An ``@every`` schedule fires at every multiple of its duration since the Unix epoch, in UTC, whatever
the time zone, so every leader computes the same instants.  The functions here take and return
naive UTC datetimes; they raise ``OverflowError`` past datetime's range.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from libdcron.errors import ValidationError

__all__ = ["every_after", "every_at_or_before", "parse_duration"]

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$", re.ASCII)
_MAX_DURATION = 36500 * 86400  # 100 years: beyond that the instants leave datetime's range

_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)


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


def every_after(start: datetime, period: int) -> datetime:
    """The first multiple of ``period`` seconds since the epoch strictly after ``start``."""
    seconds = (start - _EPOCH) // _SECOND
    return _EPOCH + timedelta(seconds=(seconds // period + 1) * period)


def every_at_or_before(end: datetime, period: int) -> datetime:
    """The last multiple of ``period`` seconds since the epoch at or before ``end``."""
    seconds = (end - _EPOCH) // _SECOND
    return _EPOCH + timedelta(seconds=seconds // period * period)

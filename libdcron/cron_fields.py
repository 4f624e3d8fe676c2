"""Cron fields as Debian cron reads them: descriptors, and compiling 5- or 6-field expressions.

:func:`compile_fields` parses every field itself, with a reason for each error
(:class:`~libdcron.errors.ValidationError`), and gives croniter only a canonical form (sorted
numbers, or ``*``), so none of croniter's own extensions or quirks leak through.  A field is a list
``a,b`` of elements; an element is ``*``, a number, a name (``jan``-``dec`` in months, ``sun``-``sat``
in days of week, any case), a range ``a-b``, each optionally with a step ``/n``.  ``N/n`` means
``N-max/n``, as in croniter and cronsim (Debian cron refuses it).  Refused, with a reason:

* backwards ranges (``5-1``): Debian cron refuses them; write ``5-7,0-1`` to wrap;
* ``L``, ``W``, ``#`` and ``?`` (last day, nearest weekday, n-th weekday, no value): Debian cron
  has none of them;
* hashed (``H``) and random (``R``) values: ``H`` needs a hash id, and ``R`` would differ between
  leaders.

The day rule is Debian's: when the day-of-month or the day-of-week field starts with ``*``, a day
must match both fields; otherwise it fires on a day matching either one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from croniter import croniter

from libdcron.errors import ValidationError

__all__ = ["DESCRIPTORS", "compile_fields"]

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
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NAMES: dict[str, dict[str, int]] = {
    "month": {name: number for number, name in enumerate(_MONTHS, 1)},
    "day-of-week": {name: number for number, name in enumerate(_WEEKDAYS)},
}
_NAME_HINT = {"month": " or names jan-dec", "day-of-week": " or names sun-sat"}
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February: in leap years
_NUMBER = re.compile(r"[0-9]+", re.ASCII)
# croniter's hashed (H) and random (R) values: H needs a hash id, R differs between leaders.
_HASHED = re.compile(r"^[hr](\(\d+-\d+\))?(/\d+)?$", re.IGNORECASE | re.ASCII)
# croniter's last-day and nearest-weekday forms: L, L-3, LW, 15W (day of month), 5L, friL (weekday).
_LAST_OR_WEEKDAY = re.compile(r"L|L-\d+|LW|\d+W|\d+L|[a-z]{3}L", re.IGNORECASE | re.ASCII)


class _FieldError(Exception):
    """Why one field is bad (the caller adds the expression, position and name)."""


def compile_fields(expression: str, words: list[str]) -> Callable[[], Any]:
    """Check 5 or 6 ``words`` (report the first bad field) and return what builds their croniter
    object: building it (croniter expands every field again) is half the cost of a parse, so a
    schedule builds it when it first computes a fire time, not when a job is registered.

    ``words`` are the fields, split on ASCII spaces and tabs; ``expression`` is only quoted in
    messages.
    """
    names = _FIELDS_5 if len(words) == 5 else _FIELDS_6
    values: list[frozenset[int]] = []
    for index, (name, word) in enumerate(zip(names, words, strict=True)):
        try:
            values.append(_parse_field(name, word))
        except _FieldError as exc:
            raise ValidationError(
                f"invalid cron expression {expression!r}: field {index + 1} ({name}) {word!r}: {exc}"
            ) from None
    day_word, month_word, weekday_word = words[-3:]
    days, months, weekdays = values[-3:]
    weekdays = frozenset(day % 7 for day in weekdays)  # 7 is Sunday too
    both = day_word.startswith("*") or weekday_word.startswith("*")  # Debian's day rule
    all_days = len(days) == 31
    all_weekdays = len(weekdays) == 7
    if not both and (all_days or all_weekdays):
        days_text = weekdays_text = "*"  # either field matches every day
    else:
        days_text = "*" if all_days else _canonical(days)
        weekdays_text = "*" if all_weekdays else _canonical(weekdays)
    # Either-rule expressions always fire (every month has every weekday); both-rule ones fire when
    # some month has one of the days (each date falls on every weekday over the years).
    if both and not any(day <= _DAYS_IN_MONTH[month] for day in days for month in months):
        raise ValidationError(
            f"invalid cron expression {expression!r}: it never fires (no date matches "
            f"day-of-month {day_word!r}, month {month_word!r} and day-of-week {weekday_word!r})"
        )
    texts = [_canonical(field, name) for field, name in zip(values[:-3], names, strict=False)]
    texts += [days_text, _canonical(months, "month"), weekdays_text]
    return functools.partial(_build, expression, " ".join(texts), not both, len(words) == 6)


def _build(expression: str, canonical: str, day_or: bool, seconds: bool) -> Any:
    try:
        return croniter(canonical, day_or=day_or, second_at_beginning=seconds)
    except Exception as exc:  # the canonical form is plain numbers; croniter should take it
        raise ValidationError(f"invalid cron expression {expression!r}: {exc}") from None


def _canonical(values: frozenset[int], name: str | None = None) -> str:
    """croniter's text for a set of values: ``*`` when it is the whole range, else the numbers."""
    if name is not None:
        low, high = _RANGES[name]
        if len(values) == high - low + 1:
            return "*"
    return ",".join(str(value) for value in sorted(values))


def _parse_field(name: str, word: str) -> frozenset[int]:
    """The values of one field; raise :class:`_FieldError` with the reason if it is bad."""
    if _HASHED.match(word):
        raise _FieldError("hashed (H) and random (R) values are not supported")
    if "?" in word:
        raise _FieldError("'?' is not supported (Debian cron has no such value); write '*'")
    if "#" in word:
        raise _FieldError(
            "'#' (the n-th weekday) is not supported, as in Debian cron; for the first Monday, use "
            "day-of-month '*/100,1-7' and day-of-week 'mon' (with a '*' first, both must match)"
        )
    low, high = _RANGES[name]
    values: set[int] = set()
    for part in word.split(","):
        if not part:
            raise _FieldError("empty element in a list")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not _NUMBER.fullmatch(step_text):
                raise _FieldError(f"step {step_text!r} is not a whole number")
            step = int(step_text)
            if step == 0:
                raise _FieldError("step must be at least 1")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            start_text, _, end_text = base.partition("-")
            if not start_text:
                raise _FieldError("negative values are not allowed")
            first, last = _value(name, start_text), _value(name, end_text)
            if first > last:
                raise _FieldError(
                    f"range {base!r} runs backwards; put the smaller value first, or write "
                    f"'{start_text}-{high},{low}-{end_text}' to wrap around"
                )
        else:
            first = _value(name, base)
            last = high if slash else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _value(name: str, text: str) -> int:
    """One number or name of the field ``name``."""
    low, high = _RANGES[name]
    if _NUMBER.fullmatch(text):
        number = int(text)
        if not low <= number <= high:
            raise _FieldError(f"value out of range {low}-{high}")
        return number
    named = _NAMES.get(name, {}).get(text.lower())
    if named is not None:
        return named
    if name in ("day-of-month", "day-of-week") and _LAST_OR_WEEKDAY.fullmatch(text):
        raise _FieldError(
            "'L' and 'W' (last day, nearest weekday) are not supported, as in Debian cron; "
            "list the days instead"
        )
    raise _FieldError(
        f"invalid value; expected numbers {low}-{high}{_NAME_HINT.get(name, '')}, '*', "
        "ranges a-b, steps */n or a-b/n, or lists a,b"
    )

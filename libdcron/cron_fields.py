"""Cron fields: descriptors, and compiling 5- or 6-field expressions with a reason for each error.

:func:`compile_fields` builds croniter's object for the words of an expression and, when croniter
refuses them, finds the first bad field and says why (:class:`~libdcron.errors.ValidationError`);
no croniter exception escapes.  Hashed (``H``) and random (``R``) values are refused: ``H`` needs a
hash id, and ``R`` would differ between leaders.
"""

from __future__ import annotations

import re
from datetime import datetime
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
_NAMES = {"month": " or names jan-dec", "day-of-week": " or names sun-sat"}
# croniter's hashed (H) and random (R) values: H needs a hash id, R differs between leaders.
_HASHED = re.compile(r"^[hr](\(\d+-\d+\))?(/\d+)?$", re.IGNORECASE | re.ASCII)
_REFERENCE = datetime(2000, 1, 1)  # where parsing looks for a first fire time


def compile_fields(expression: str, words: list[str]) -> Any:
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

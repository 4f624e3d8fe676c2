"""Reading plugin options (``[node.options]``, ``dcrond -o KEY=VALUE``) and other typed values.

An option comes from TOML (already a number or a boolean) or from the command line and the
environment (always a string), so every numeric or boolean option is parsed here, the one place
that turns a bad value into :class:`~libdcron.errors.ValidationError` naming the option and the
value: ``option couchdb_timeout must be a number, got 'abc'``.  An unset or empty option is its
default.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any

from .errors import ValidationError

__all__ = [
    "FALSE_WORDS",
    "TRUE_WORDS",
    "flag_option",
    "integer_option",
    "number_option",
    "parse_flag",
    "parse_integer",
    "parse_number",
]

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def _check_range(
    what: str, value: Any, number: float, minimum: float | None, greater_than: float | None
) -> None:
    if greater_than is not None and not number > greater_than:
        bound = "positive" if greater_than == 0 else f"greater than {greater_than:g}"
        raise ValidationError(f"{what} must be {bound}, got {value!r}")
    if minimum is not None and number < minimum:
        raise ValidationError(f"{what} must be at least {minimum:g}, got {value!r}")


def parse_number(
    what: str, value: Any, *, minimum: float | None = None, greater_than: float | None = None
) -> float:
    """``value`` (a number or a numeric string) as a finite float at least ``minimum`` and above
    ``greater_than``; ``what`` names it in the error (``"option swift_timeout"``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValidationError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValidationError(f"{what} must be a finite number, got {value!r}")
    _check_range(what, value, number, minimum, greater_than)
    return number


def _integral(value: float | str) -> int | None:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value.strip())
        try:
            value = float(value)
        except ValueError:
            return None
    return int(value) if math.isfinite(value) and value.is_integer() else None


def parse_integer(
    what: str, value: Any, *, minimum: float | None = None, greater_than: float | None = None
) -> int:
    """``value`` (an integer, an integral float or a string of one: ``"8388608"``, ``"8e6"``) as an int."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationError(f"{what} must be an integer, got {value!r}")
    number = value if isinstance(value, int) else _integral(value)
    if number is None:
        raise ValidationError(f"{what} must be an integer, got {value!r}")
    _check_range(what, value, number, minimum, greater_than)
    return number


def parse_flag(what: str, value: Any) -> bool:
    """``value`` (a boolean, 0/1, or one of true/false, yes/no, on/off, 1/0) as a bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValidationError(f"{what} must be true or false, got {value!r}")


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def number_option(
    options: Mapping[str, Any],
    name: str,
    default: float,
    minimum: float | None = 0,
    *,
    greater_than: float | None = None,
) -> float:
    """The number ``options[name]``, ``default`` when it is unset or empty;
    :class:`ValidationError` when it is not a finite number or is out of range."""
    value = options.get(name)
    if _unset(value):
        return default
    return parse_number(f"option {name}", value, minimum=minimum, greater_than=greater_than)


def integer_option(
    options: Mapping[str, Any],
    name: str,
    default: int,
    minimum: float | None = 0,
    *,
    greater_than: float | None = None,
) -> int:
    """The integer ``options[name]``, ``default`` when it is unset or empty."""
    value = options.get(name)
    if _unset(value):
        return default
    return parse_integer(f"option {name}", value, minimum=minimum, greater_than=greater_than)


def flag_option(options: Mapping[str, Any], name: str, default: bool) -> bool:
    """The boolean ``options[name]``, ``default`` when it is unset or empty."""
    value = options.get(name)
    if _unset(value):
        return default
    return parse_flag(f"option {name}", value)

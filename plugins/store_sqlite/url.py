"""The ``sqlite://`` URL of the embedded document store.

URL forms (see :func:`parse_url`):

- ``sqlite:///var/lib/dcron/dcron.db`` -- an absolute path;
- ``sqlite://dcron.db`` or ``sqlite://state/dcron.db`` -- relative to the ``data_dir`` option
  (else to the working directory);
- ``sqlite://:memory:`` -- a private in-memory database (tests only: nothing is shared);
- ``?timeout=SECONDS`` -- how long a write waits for another process's write (default 10).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from libdcron.errors import ValidationError
from libdcron.options import parse_number

SCHEME = "sqlite://"
DEFAULT_TIMEOUT = 10.0
MEMORY = ":memory:"


def parse_url(url: str, options: Mapping[str, Any] | None = None) -> tuple[str, float]:
    """``(path, timeout)`` of a ``sqlite://`` URL; a relative path is resolved against ``data_dir``."""
    if not url.startswith(SCHEME):
        raise ValidationError(f"{url!r} is not a sqlite:// URL (e.g. sqlite:///var/lib/dcron/dcron.db)")
    rest, _, query = url[len(SCHEME) :].partition("?")
    path = unquote(rest)
    if not path or path == "/":
        raise ValidationError(f"{url!r} names no database file (e.g. sqlite:///var/lib/dcron/dcron.db)")
    timeout = DEFAULT_TIMEOUT
    for key, values in parse_qs(query, keep_blank_values=True).items():
        if key != "timeout":
            raise ValidationError(f"{url!r}: unknown parameter {key!r} (known: timeout)")
        timeout = parse_number(f"{url!r}: timeout", values[-1], minimum=0)
    if path != MEMORY and not path.startswith("/"):
        base = (options or {}).get("data_dir") or os.getcwd()
        path = str(Path(str(base)) / path)
    return path, timeout

"""The ``http(s)://`` URL of the CouchDB document store.

URL forms (see :func:`parse_url`):

- ``http://127.0.0.1:5984/dcron`` -- the last path segment is a database-name *prefix*: the store
  uses the databases ``dcron_jobs`` and ``dcron_executions``;
- ``http://127.0.0.1:5984`` or ``http://127.0.0.1:5984/`` -- the default prefix, ``dcron``;
- ``https://user:secret@couch.example.org/couchdb/prod`` -- credentials in the userinfo (HTTP basic
  authentication; percent-encode ``@`` and ``:`` in them), a server behind a reverse proxy under a
  path (``/couchdb``), prefix ``prod``;
- ``?timeout=SECONDS`` -- the per-request timeout (default 5); ``options["couchdb_timeout"]`` too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from libdcron.errors import ValidationError
from libdcron.options import number_option, parse_number

DEFAULT_PREFIX = "dcron"
DEFAULT_TIMEOUT = 5.0

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9_$()+-]*$")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def parse_url(url: str, options: Mapping[str, Any] | None = None) -> tuple[str, str, float]:
    """``(server URL, database prefix, timeout)`` of an ``http(s)://`` store URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"{url!r} is not an http(s):// CouchDB URL (e.g. http://127.0.0.1:5984/dcron)")
    try:
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        raise ValidationError(f"{url!r}: the port is not a number") from None
    segments = [s for s in parts.path.split("/") if s]
    prefix = segments.pop() if segments else DEFAULT_PREFIX
    if not _PREFIX_RE.match(prefix):
        raise ValidationError(
            f"{url!r}: database prefix {prefix!r} must start with a lowercase letter and hold only "
            "lowercase letters, digits and _$()+-"
        )
    timeout = number_option(options or {}, "couchdb_timeout", DEFAULT_TIMEOUT, greater_than=0)
    for key, values in parse_qs(parts.query, keep_blank_values=True).items():
        if key != "timeout":
            raise ValidationError(f"{_redact(url)}: unknown parameter {key!r} (known: timeout)")
        timeout = parse_number(f"{_redact(url)}: timeout", values[-1], greater_than=0)
    server = urlunsplit((parts.scheme, parts.netloc, "/".join(segments), "", ""))
    return server, prefix, timeout

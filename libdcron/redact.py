"""Credentials never leave the node: URLs are shown with their secrets masked.

``http://admin:s3cret@couch:5984/dcron`` becomes ``http://admin:***@couch:5984/dcron``; query
parameters that carry secrets (``?key=``, ``secret``, ``password``, ``token``, ``signature``,
``credential``...) are masked too.  ``STATUS`` replies and every log line that names a store go
through :func:`redact_url`; :func:`redact_text` masks every URL inside a message.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
_SECRET_PARAM = re.compile(r"(key|secret|pass|token|sig|credential)", re.IGNORECASE)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """``url`` with the password of its user part and secret query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.search(k) for k, _ in pairs):
            query = urlencode([(k, MASK if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)

"""Who may read the dashboard: one bearer token, kept with the node's CurveZMQ keys.

The token is ``KEYS_DIR/http.token`` (created on first start, mode 0600) unless the ``http_token``
setting names a file or holds the token itself.  A request is let in when it carries

- ``Authorization: Bearer TOKEN`` (curl, Prometheus' ``authorization.credentials_file``), or
- the session cookie the sign-in form (``POST /login`` with the token) sets: an HMAC of the token,
  ``HttpOnly`` and ``SameSite=Strict``, so changing the token signs every browser out.

Forms that change something (the write actions, when they are on) also carry a CSRF value derived
from the token the same way; a form posted from another site lacks it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from ..errors import ValidationError

TOKEN_FILE = "http.token"
COOKIE = "dcron_session"
#: Shortest token accepted from a setting (a generated one has 43 characters).
MIN_TOKEN = 16


def load_token(keys_dir: Path, configured: str | None) -> tuple[str, Path | None, bool]:
    """The dashboard's token, the file it came from (None: given as text), and whether it was made now."""
    if configured:
        path = Path(configured).expanduser()
        if path.is_file():
            return _read(path), path, False
        if "/" in configured or configured.startswith("."):
            raise ValidationError(f"http_token {configured} is not a file")
        if len(configured) < MIN_TOKEN:
            raise ValidationError(f"http_token must be a file or a token of at least {MIN_TOKEN} characters")
        return configured, None, False
    path = keys_dir / TOKEN_FILE
    if path.is_file():
        return _read(path), path, False
    keys_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another node on this host made it first
        return _read(path), path, False
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token, path, True


def _read(path: Path) -> str:
    token = path.read_text().strip()
    if len(token) < MIN_TOKEN:
        raise ValidationError(f"the dashboard token in {path} is shorter than {MIN_TOKEN} characters")
    return token


class Credentials:
    """Checks a request's token or session cookie; derives the cookie and CSRF values."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self.session = self._derive("session")
        self.csrf = self._derive("csrf")

    def _derive(self, purpose: str) -> str:
        return hmac.new(self._token, f"dcron-dashboard-{purpose}".encode(), hashlib.sha256).hexdigest()

    def token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.strip().encode(), self._token)

    def allows(self, authorization: str | None, cookie: str | None) -> bool:
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and self.token_ok(value):
                return True
        return bool(cookie) and hmac.compare_digest(str(cookie).encode(), self.session.encode())

    def csrf_ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given).encode(), self.csrf.encode())


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (no ``//host`` or scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/jobs"
    return target

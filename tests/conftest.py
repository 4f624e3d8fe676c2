"""Shared test plumbing.

Real services (ZooKeeper, CouchDB API, S3 API, Swift) are started by ``scripts/services.sh start``,
which writes their addresses to ``.services/env`` as ``DCRON_TEST_*`` variables.  A test that needs
one calls :func:`service`: outside CI a missing service skips the test; in CI (``CI`` set) it fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES_ENV = ROOT / ".services" / "env"


def _load_services_env() -> None:
    if not SERVICES_ENV.exists():
        return
    for line in SERVICES_ENV.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        os.environ.setdefault(key.strip(), value.strip().strip("'\""))


_load_services_env()


def service(var: str, what: str) -> str:
    """The value of ``DCRON_TEST_<var>``; fail in CI and skip elsewhere when it is not set."""
    name = f"DCRON_TEST_{var}"
    value = os.environ.get(name)
    if value:
        return value
    message = f"{what} is not running: {name} is unset (start it with: bash scripts/services.sh start)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)

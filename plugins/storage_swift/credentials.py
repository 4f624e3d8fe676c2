"""Swift connection settings: swiftclient ``Connection`` arguments from arguments or the environment.

See :func:`connection_options` for the variables read and the rules for picking the auth version.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["connection_options"]


def connection_options(
    auth_url: str | None = None,
    user: str | None = None,
    key: str | None = None,
    auth_version: str | None = None,
    project_name: str | None = None,
    project_id: str | None = None,
    user_domain_name: str | None = None,
    project_domain_name: str | None = None,
    region_name: str | None = None,
    storage_url: str | None = None,
    auth_token: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for swiftclient's ``Connection``: the arguments given, else the environment.

    v1 reads ``ST_AUTH``, ``ST_USER``, ``ST_KEY``; Keystone reads ``OS_AUTH_URL``, ``OS_USERNAME``,
    ``OS_PASSWORD``, ``OS_PROJECT_NAME`` (or ``OS_TENANT_NAME``), ``OS_PROJECT_ID``,
    ``OS_USER_DOMAIN_NAME``, ``OS_PROJECT_DOMAIN_NAME``, ``OS_REGION_NAME`` and
    ``OS_IDENTITY_API_VERSION``; a ready token is ``OS_STORAGE_URL`` + ``OS_AUTH_TOKEN``.
    ``ST_AUTH`` wins over ``OS_AUTH_URL`` when both are set.  The auth version defaults to 1 for
    ``ST_AUTH`` and URLs ending in ``/v1.0``, else to 3.  Raises ``ValueError`` when there is
    neither an auth URL nor a token.
    """
    env = os.environ if environ is None else environ
    from_st = not auth_url and bool(env.get("ST_AUTH"))
    auth_url = auth_url or env.get("ST_AUTH") or env.get("OS_AUTH_URL")
    if not auth_version:
        if from_st or (auth_url and auth_url.rstrip("/").endswith(("/v1.0", "/v1"))):
            auth_version = "1"
        else:
            auth_version = env.get("OS_IDENTITY_API_VERSION") or "3"
    v1 = auth_version in ("1", "1.0")
    if v1:
        user = user or env.get("ST_USER")
        key = key or env.get("ST_KEY")
    else:
        user = user or env.get("OS_USERNAME")
        key = key or env.get("OS_PASSWORD")
    storage_url = storage_url or env.get("OS_STORAGE_URL")
    auth_token = auth_token or env.get("OS_AUTH_TOKEN")
    if not auth_url and not (storage_url and auth_token):
        raise ValueError(
            "no Swift credentials: set ST_AUTH, ST_USER and ST_KEY (auth v1), or OS_AUTH_URL, "
            "OS_USERNAME, OS_PASSWORD and OS_PROJECT_NAME (Keystone v3), or the matching "
            "swift_* options"
        )
    os_options: dict[str, Any] = {}
    if not v1:
        os_options = {
            "project_name": project_name or env.get("OS_PROJECT_NAME") or env.get("OS_TENANT_NAME"),
            "project_id": project_id or env.get("OS_PROJECT_ID"),
            "user_domain_name": user_domain_name or env.get("OS_USER_DOMAIN_NAME"),
            "project_domain_name": project_domain_name or env.get("OS_PROJECT_DOMAIN_NAME"),
            "region_name": region_name or env.get("OS_REGION_NAME"),
        }
        os_options = {k: v for k, v in os_options.items() if v}
    options: dict[str, Any] = {
        "authurl": auth_url,
        "user": user,
        "key": key,
        "auth_version": auth_version,
        "os_options": os_options,
    }
    if storage_url and auth_token:
        options["preauthurl"] = storage_url
        options["preauthtoken"] = auth_token
    return options

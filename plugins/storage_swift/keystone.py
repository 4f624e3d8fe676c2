"""Keystone v3 password authentication for python-swiftclient, without python-keystoneclient.

python-swiftclient delegates auth versions 2 and 3 to python-keystoneclient, which dcron does not
depend on.  :class:`SwiftConnection` uses it when it is installed and otherwise performs the v3
"password" method itself: ``POST <auth_url>/v3/auth/tokens`` scoped to a project, the token from
the ``X-Subject-Token`` header and the storage URL from the ``object-store`` entry of the catalog.

Errors are raised as swiftclient's ``ClientException`` (with ``http_status`` when Keystone
answered) or requests' exceptions, so that ``Connection``'s retry loop treats them as it treats
its own: a 401 is retried once with fresh authentication, connection errors with backoff.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

import requests
from swiftclient.client import Connection
from swiftclient.exceptions import ClientException

__all__ = ["SwiftConnection", "keystone_v3_auth"]


def _have_keystoneclient() -> bool:
    return importlib.util.find_spec("keystoneclient") is not None


def _ref(id_: Any, name: Any, default_name: str | None = "Default") -> dict[str, str]:
    if id_:
        return {"id": str(id_)}
    return {"name": str(name or default_name)}


def keystone_v3_auth(
    auth_url: str,
    username: str | None,
    password: str | None,
    os_options: Mapping[str, Any],
    timeout: float | None = None,
    verify: bool | str = True,
) -> tuple[str, str]:
    """Authenticate with Keystone v3 (password method); return ``(storage_url, token)``.

    ``os_options`` are swiftclient's: ``project_name``/``project_id`` (or ``tenant_name``),
    ``user_domain_name``/``user_domain_id``, ``project_domain_name``/``project_domain_id`` (both
    default to the ``Default`` domain), ``user_id``, ``region_name``, ``service_type`` (default
    ``object-store``), ``endpoint_type`` (default ``public``) and ``object_storage_url``, which,
    when set, replaces the catalog's URL.
    """
    url = auth_url.rstrip("/")
    if not url.endswith("/v3"):
        url += "/v3"
    user: dict[str, Any] = {"password": password or ""}
    if os_options.get("user_id"):
        user["id"] = str(os_options["user_id"])
    else:
        if not username:
            raise ClientException("Keystone v3 authentication needs a user name (OS_USERNAME)")
        user["name"] = username
        user["domain"] = _ref(os_options.get("user_domain_id"), os_options.get("user_domain_name"))
    auth: dict[str, Any] = {"identity": {"methods": ["password"], "password": {"user": user}}}
    project_id = os_options.get("project_id") or os_options.get("tenant_id")
    project_name = os_options.get("project_name") or os_options.get("tenant_name")
    if project_id:
        auth["scope"] = {"project": {"id": str(project_id)}}
    elif project_name:
        domain = _ref(os_options.get("project_domain_id"), os_options.get("project_domain_name"))
        auth["scope"] = {"project": {"name": str(project_name), "domain": domain}}
    else:
        raise ClientException(
            "Keystone v3 authentication needs a project (OS_PROJECT_NAME or OS_PROJECT_ID) "
            "to get a token with a service catalog"
        )
    resp = requests.post(f"{url}/auth/tokens", json={"auth": auth}, timeout=timeout, verify=verify)
    if resp.status_code >= 300:
        raise ClientException(
            f"Keystone at {url} refused authentication: {resp.status_code} {resp.text[:200]}",
            http_status=resp.status_code,
            http_reason=resp.reason,
        )
    token = resp.headers.get("X-Subject-Token")
    if not token:
        raise ClientException(f"Keystone at {url} returned no X-Subject-Token header")
    storage_url = os_options.get("object_storage_url")
    if storage_url:
        return str(storage_url), token
    return _storage_url(resp.json(), os_options, url), token


def _storage_url(body: Mapping[str, Any], os_options: Mapping[str, Any], auth_url: str) -> str:
    service_type = str(os_options.get("service_type") or "object-store")
    interface = str(os_options.get("endpoint_type") or os_options.get("interface") or "public")
    interface = interface.removesuffix("URL")  # swiftclient's v2 names: publicURL, internalURL
    region = os_options.get("region_name")
    catalog = (body.get("token") or {}).get("catalog") or []
    for service in catalog:
        if service.get("type") != service_type:
            continue
        for endpoint in service.get("endpoints") or []:
            if endpoint.get("interface") != interface:
                continue
            if region and region not in (endpoint.get("region"), endpoint.get("region_id")):
                continue
            return str(endpoint["url"])
    where = f" in region {region}" if region else ""
    raise ClientException(
        f"the Keystone catalog of {auth_url} has no {interface} {service_type} endpoint{where}"
    )


class SwiftConnection(Connection):  # type: ignore[misc]
    """swiftclient's ``Connection``, able to use Keystone v3 without python-keystoneclient."""

    def get_auth(self) -> tuple[str, str]:
        if str(self.auth_version) in ("3", "3.0") and self.session is None and not _have_keystoneclient():
            verify: bool | str = not self.insecure
            if self.cacert and not self.insecure:
                verify = self.cacert
            self.url, self.token = keystone_v3_auth(
                self.authurl, self.user, self.key, self.os_options, timeout=self.timeout, verify=verify
            )
            return self.url, self.token
        url, token = super().get_auth()
        return str(url), str(token)

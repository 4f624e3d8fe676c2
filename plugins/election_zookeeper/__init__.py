"""Leader election and live membership over ZooKeeper (kazoo), for clusters of several hosts.

URL: ``zk://host:port[,host:port...]/chroot`` (:mod:`.url`).  The election itself, its layout under
the chroot, its threads and its error handling: :mod:`.election`; its parts: :mod:`.membership`
(``members/``), :mod:`.leadership` (``election/``) and :mod:`.base` (state and kazoo helpers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from libdcron.abc import Election
from libdcron.hookspecs import hookimpl

from .base import KAZOO_ERRORS
from .election import ZooKeeperElection
from .url import DEFAULT_CHROOT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_SESSION_TIMEOUT, _seconds, parse_url

__all__ = [
    "DEFAULT_CHROOT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_SESSION_TIMEOUT",
    "KAZOO_ERRORS",
    "ZooKeeperElection",
    "dcron_election",
    "parse_url",
]


@hookimpl
def dcron_election(url: str, options: Mapping[str, Any]) -> Election | None:
    if urlparse(url).scheme != "zk":
        return None
    hosts, chroot = parse_url(url)
    return ZooKeeperElection(
        hosts,
        chroot,
        session_timeout=_seconds(options, "session_timeout", DEFAULT_SESSION_TIMEOUT),
        connect_timeout=_seconds(options, "zk_connect_timeout", DEFAULT_CONNECT_TIMEOUT),
    )

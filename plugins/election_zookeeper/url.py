"""The ``zk://`` URL and the options of the ZooKeeper election.

URL: ``zk://host:port[,host:port...]/chroot``; every node of one dcron cluster uses the same
chroot (default ``/dcron``), so several clusters can share one ZooKeeper.  Options:
``session_timeout`` (seconds, default 4.0: how long a dead leader keeps its leadership) and
``zk_connect_timeout`` (seconds, default 10.0: how long :meth:`ZooKeeperElection.start` waits for
a first connection).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from libdcron.errors import ValidationError
from libdcron.options import number_option

DEFAULT_CHROOT = "/dcron"
DEFAULT_SESSION_TIMEOUT = 4.0
DEFAULT_CONNECT_TIMEOUT = 10.0


def parse_url(url: str) -> tuple[str, str]:
    """``zk://h1:2181,h2:2181/chroot`` -> (``h1:2181,h2:2181``, ``/chroot``)."""
    parsed = urlparse(url)
    if parsed.scheme != "zk":
        raise ValidationError(f"not a ZooKeeper URL: {url!r} (expected zk://host:port[,host:port...]/chroot)")
    hosts = parsed.netloc
    if not hosts or any(not h.strip() for h in hosts.split(",")):
        raise ValidationError(f"ZooKeeper URL {url!r} names no server (expected zk://host:port[,...]/chroot)")
    chroot = "/" + "/".join(part for part in parsed.path.split("/") if part)
    if chroot == "/":
        chroot = DEFAULT_CHROOT
    if any(part in (".", "..") for part in chroot.split("/")) or parsed.query or parsed.fragment:
        raise ValidationError(f"ZooKeeper URL {url!r} has an invalid chroot path")
    return hosts, chroot


def _seconds(options: Mapping[str, Any], name: str, default: float) -> float:
    return number_option(options, name, default, greater_than=0)

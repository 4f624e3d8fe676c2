"""The read-only web dashboard and Prometheus ``/metrics`` of a node (``--http``).

:mod:`.server` runs it (aiohttp, its own thread), :mod:`.pages` holds the routes and renders the
templates, :mod:`.views` reads what the pages show through the node's API, :mod:`.auth` keeps the
token.  See README, "Web dashboard".
"""

from .auth import load_token
from .server import WebServer, parse_bind

__all__ = ["WebServer", "load_token", "parse_bind"]

"""The dashboard's HTTP server: an aiohttp application on its own thread and event loop.

Pages read the store through blocking calls; those run on a small thread pool, so a slow store
delays pages, never the node's scheduling or its runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from ..errors import UnavailableError, ValidationError
from .auth import Credentials
from .pages import Dashboard

log = logging.getLogger(__name__)

#: Threads reading the store for pages.
READERS = 4


def parse_bind(text: str) -> tuple[str, int]:
    """``tcp://HOST:PORT``, ``http://HOST:PORT`` or ``HOST:PORT`` as (host, port)."""
    value = text.strip()
    if "://" not in value:
        value = f"tcp://{value}"
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("tcp", "http") or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ValidationError(f"http must be an address like tcp://127.0.0.1:8571, got {text!r}")
    return parts.hostname, port


class WebServer:
    """Serves one node's dashboard until :meth:`stop`."""

    def __init__(self, node: Any, bind: str, token: str, write: bool = False) -> None:
        self.host, self.port = parse_bind(bind)
        self._pool = ThreadPoolExecutor(READERS, thread_name_prefix="dcron-http")
        self._dashboard = Dashboard(node, Credentials(token), write, self._pool)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        """Bind and serve; :class:`UnavailableError` when the address cannot be bound."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._bind())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._cleanup())
                loop.close()

        self._thread = threading.Thread(target=main, name="dcron-http", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._pool.shutdown(wait=False)
            raise UnavailableError(f"cannot serve the dashboard on {self.host}:{self.port}: {failure[0]}")

    async def _bind(self) -> None:
        runner = web.AppRunner(self._dashboard.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)

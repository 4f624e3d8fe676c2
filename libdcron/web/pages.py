"""The dashboard's routes: server-rendered pages, the log (inline, download, live tail) and /metrics.

=============================  ==============================================================
route                          what
=============================  ==============================================================
``GET /``                      redirects to ``/jobs``
``GET /jobs``                  jobs by name: ``q`` (name contains), ``state``, ``after``, ``limit``
``GET /jobs/{name}``           one job: schedule, next fire times, executions (``status``, ``page``)
``GET /runs``                  every job's executions, newest first (``status``, ``q``, ``page``)
``GET /runs/{id}``             one execution and its log, followed live while it runs
``GET /runs/{id}/log``         the log as text, followed to its end (``?download=1``: as a file)
``GET /runs/{id}/tail``        JSON: the log from ``offset`` (what the live tail polls)
``GET /cluster``               leader, members, capacity, runs in progress, outbox
``GET /metrics``               Prometheus text format
``GET|POST /login``, ``POST /logout``   sign in with the token (a cookie), sign out
``POST /jobs/{name}/{action}``  enable, disable, run: only with the write actions on
=============================  ==============================================================
"""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from ..errors import DcronError, ForbiddenError, NotFoundError, UnavailableError, ValidationError
from ..model import Status, parse_instant
from .auth import COOKIE, Credentials, safe_next
from .views import STATUSES, Views

HERE = Path(__file__).parent
#: How often ``/runs/ID/log`` of a running run looks for more output.
FOLLOW_POLL = 0.5
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Served without credentials: the sign-in form and the style sheet and script it needs.
PUBLIC = ("/login", "/static/")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
ERRORS: dict[type[DcronError], int] = {
    NotFoundError: 404,
    ValidationError: 400,
    ForbiddenError: 403,
    UnavailableError: 503,
}


def run_url(exec_id: str, suffix: str = "") -> str:
    return f"/runs/{quote(exec_id, safe='')}{suffix}"


def job_url(name: str, suffix: str = "") -> str:
    return f"/jobs/{quote(name, safe='')}{suffix}"


def show_instant(text: str) -> str:
    """An instant as the pages show it: ``2026-12-02 21:59:25 UTC`` (to the second)."""
    try:
        return parse_instant(text).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValidationError:
        return text


def show_local(text: str, tz: str) -> str:
    """An instant in a job's time zone: ``2026-12-03 02:30:00 CET``; UTC for a UTC job or a bad zone."""
    if tz in ("", "UTC", "Etc/UTC"):
        return show_instant(text)
    try:
        return parse_instant(text).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")
    except (ValidationError, ValueError, KeyError):
        return show_instant(text)


def make_templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(run_url=run_url, job_url=job_url, statuses=STATUSES)
    env.filters["instant"] = show_instant
    env.filters["local"] = show_local
    env.filters["query"] = lambda params: urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return env


class Dashboard:
    """The aiohttp application of one node's dashboard."""

    def __init__(self, node: Any, credentials: Credentials, write: bool, pool: ThreadPoolExecutor) -> None:
        self.views = Views(node)
        self.node = node
        self.credentials = credentials
        self.write = write
        self.pool = pool
        self.templates = make_templates()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers, self._auth, self._errors], client_max_size=64 * 1024)
        app.add_routes(
            [
                web.get("/", self._root),
                web.get("/login", self._login_form),
                web.post("/login", self._login),
                web.post("/logout", self._logout),
                web.get("/jobs", self._jobs),
                web.get("/jobs/{name}", self._job),
                web.post("/jobs/{name}/{action}", self._act),
                web.get("/runs", self._runs),
                web.get("/runs/{id}/log", self._log),
                web.get("/runs/{id}/tail", self._tail),
                web.get("/runs/{id}", self._run),
                web.get("/cluster", self._cluster),
                web.get("/metrics", self._metrics),
                web.static("/static", HERE / "static", append_version=True),
            ]
        )
        return app

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args))

    def _page(self, request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
        html = self.templates.get_template(template).render(
            node=self.node.node_id,
            write=self.write,
            csrf=self.credentials.csrf,
            path=request.path_qs,
            signed_in=template != "login.html",
            **values,
        )
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    # -- middlewares -------------------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(PUBLIC):
            return await handler(request)
        if self.credentials.allows(request.headers.get("Authorization"), request.cookies.get(COOKIE)):
            return await handler(request)
        headers = {"WWW-Authenticate": 'Bearer realm="dcron"'}
        if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
            response = self._page(request, "login.html", status=401, next=request.path_qs, error=None)
            response.headers.update(headers)
            return response
        return web.Response(status=401, text="401: a token is required (Authorization: Bearer TOKEN)\n", headers=headers)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except DcronError as exc:
            status = next((code for kind, code in ERRORS.items() if isinstance(exc, kind)), 500)
            if "text/html" in request.headers.get("Accept", ""):
                return self._page(request, "error.html", status=status, code=status, message=str(exc))
            return web.Response(status=status, text=f"{status}: {exc}\n")

    # -- sign in -----------------------------------------------------------------------------

    async def _root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/jobs")

    async def _login_form(self, request: web.Request) -> web.StreamResponse:
        return self._page(request, "login.html", next=safe_next(request.query.get("next")), error=None)

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        target = safe_next(str(form.get("next", "")))
        if not self.credentials.token_ok(str(form.get("token", ""))):
            return self._page(request, "login.html", status=401, next=target, error="That token is not this node's.")
        response = web.HTTPSeeOther(target)
        response.set_cookie(COOKIE, self.credentials.session, httponly=True, samesite="Strict", path="/")
        raise response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        await self._check_csrf(request)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def _check_csrf(self, request: web.Request) -> None:
        form = await request.post()
        if not self.credentials.csrf_ok(str(form.get("csrf", "")) or request.headers.get("X-CSRF-Token")):
            raise ForbiddenError("this form did not come from this dashboard (CSRF check failed)")

    # -- pages -------------------------------------------------------------------------------

    async def _jobs(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        match = q.get("q", "").strip()
        state = q.get("state", "all")
        limit = _int(q.get("limit"), 50, 1, 1000, "limit")
        page = await self._call(self.views.jobs, match, state, q.get("after") or None, limit)
        return self._page(request, "jobs.html", page=page, q=match, state=state, limit=limit)

    async def _job(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        status = _status(request.query.get("status"))
        page = _int(request.query.get("page"), 1, 1, 1_000_000, "page")
        view = await self._call(self.views.job, name, status, page)
        return self._page(request, "job.html", status=200, filter_status=status or "", page=page, **view)

    async def _act(self, request: web.Request) -> web.StreamResponse:
        if not self.write:
            raise ForbiddenError("the dashboard is read-only; an operator turns the write actions on with --http-write")
        await self._check_csrf(request)
        name, action = request.match_info["name"], request.match_info["action"]
        await self._call(self.views.act, action, name)
        raise web.HTTPSeeOther(job_url(name))

    async def _runs(self, request: web.Request) -> web.StreamResponse:
        status = _status(request.query.get("status"))
        match = request.query.get("q", "").strip()
        page = _int(request.query.get("page"), 1, 1, 1_000_000, "page")
        view = await self._call(self.views.runs, status, match, page)
        return self._page(request, "runs.html", filter_status=status or "", q=match, page=page, **view)

    async def _run(self, request: web.Request) -> web.StreamResponse:
        view = await self._call(self.views.run, request.match_info["id"])
        running = view["run"]["status"] == Status.RUNNING.value
        return self._page(request, "run.html", running=running, **view)

    async def _tail(self, request: web.Request) -> web.StreamResponse:
        offset = _int(request.query.get("offset"), 0, 0, 1 << 50, "offset")
        answer = await self._call(self.views.tail, request.match_info["id"], offset)
        data = base64.b64decode(answer.pop("data", "") or "")
        answer["text"] = data.decode("utf-8", "replace")
        answer["next"] = offset + len(data)
        return web.json_response(answer)

    async def _log(self, request: web.Request) -> web.StreamResponse:
        """The whole log, streamed chunk by chunk; a running run's as it grows, until it ends."""
        exec_id = request.match_info["id"]
        chunk = await self._call(self.views.tail, exec_id, 0)  # 404 before anything is sent
        response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        if request.query.get("download"):
            filename = exec_id.replace("@", "_").replace(":", "").replace("#", "_") + ".log"
            response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        await response.prepare(request)
        offset = 0
        while True:
            data = base64.b64decode(chunk["data"])
            if data:
                await response.write(data)
                offset += len(data)
            if not chunk["running"] and chunk["eof"]:
                break
            if not data:
                await asyncio.sleep(FOLLOW_POLL)
            chunk = await self._call(self.views.tail, exec_id, offset)
        await response.write_eof()
        return response

    async def _cluster(self, request: web.Request) -> web.StreamResponse:
        view = await self._call(self.views.cluster)
        return self._page(request, "cluster.html", **view)

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        body, content_type = await self._call(self.node.metrics.render)
        return web.Response(body=body, headers={"Content-Type": content_type})


def _int(text: str | None, default: int, lo: int, hi: int, what: str) -> int:
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValidationError(f"{what} must be an integer between {lo} and {hi}") from None
    if not lo <= value <= hi:
        raise ValidationError(f"{what} must be an integer between {lo} and {hi}")
    return value


def _status(text: str | None) -> str | None:
    if not text:
        return None
    if text not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)}")
    return text

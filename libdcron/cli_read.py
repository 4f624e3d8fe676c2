"""``dcron`` commands that read: ``list``, ``show``, ``executions``, ``logs`` and ``status``.

Each prints the node's reply as a table or lines of text, or as JSON with ``--json``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .cli_context import Ctx, json_option, out, table

__all__ = ["executions", "list_jobs", "logs", "show", "status"]


HEADER = f"{'NAME':<24} {'STATE':<8} {'SCHEDULE':<20} {'TZ':<16} NEXT"


def _row(job: dict[str, Any]) -> str:
    state = "enabled" if job["enabled"] else "disabled"
    return f"{job['name']:<24} {state:<8} {job['schedule']:<20} {job['tz']:<16} {job['next'] or '-'}"


@click.command("list")
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=None,
    help="Jobs per page (at most 1000)  [default: 100; 1000 with --all]",
)
@click.option("--after", default=None, metavar="NAME", help="Start after this job name (a page's cursor).")
@click.option(
    "--state",
    type=click.Choice(["enabled", "disabled", "all"]),
    default="all",
    show_default=True,
    help="Only enabled or disabled jobs.",
)
@click.option("--all", "every", is_flag=True, help="Every page, printed as it arrives.")
@json_option
@click.pass_obj
def list_jobs(ctx: Ctx, limit: int | None, after: str | None, state: str, every: bool) -> None:
    """List jobs by name, a page at a time or --all.

    A page is --limit jobs named after --after; --all prints every page as it arrives.
    """
    if every:
        _list_all(ctx, limit or 1000, after, state)
        return
    reply = ctx.client.list_page(limit or 100, after, state)
    jobs, cursor = reply["jobs"], reply.get("next")
    out(ctx, {"jobs": jobs, "next": cursor}, "\n".join([HEADER, *(_row(job) for job in jobs)]))
    if cursor and not ctx.as_json:
        click.echo(f"more jobs: dcron list --after {cursor}  (or --all)", err=True)


def _list_all(ctx: Ctx, limit: int, after: str | None, state: str) -> None:
    """Every page, each printed when it arrives: text rows, or one JSON object written in pieces."""
    if ctx.as_json:
        click.echo('{"jobs": [', nl=False)
        first = True
        for job in ctx.client.iter_jobs(state, page_size=limit, after=after):
            click.echo(("\n  " if first else ",\n  ") + json.dumps(job, sort_keys=True), nl=False)
            first = False
        click.echo('\n], "next": null}')
        return
    click.echo(HEADER)
    for job in ctx.client.iter_jobs(state, page_size=limit, after=after):
        click.echo(_row(job))


@click.command()
@click.argument("name")
@click.option("--count", default=3, show_default=True, type=click.IntRange(1, 100), help="Next fire times.")
@json_option
@click.pass_obj
def show(ctx: Ctx, name: str, count: int) -> None:
    """Show a job, its next fire times and its latest execution."""
    reply = ctx.client.show(name, count)
    job = reply["job"]
    lines = [
        f"{k}: {job[k]}"
        for k in (
            "name",
            "enabled",
            "schedule",
            "tz",
            "interpreter",
            "script",
            "script_sha256",
            "timeout",
            "max_attempts",
            "version",
            "updated",
        )
    ]
    lines.append("next: " + (", ".join(reply["next"]) or "-"))
    last = reply["last"]
    lines.append(f"last: {last['id']} {last['status']}" if last else "last: -")
    out(ctx, reply, "\n".join(lines))


@click.command()
@click.argument("name")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--page", default=1, show_default=True, type=click.IntRange(1))
@json_option
@click.pass_obj
def executions(ctx: Ctx, name: str, limit: int, page: int) -> None:
    """Executions of NAME, newest first."""
    rows = ctx.client.executions(name, limit=limit, page=page)
    header = ("FIRE TIME", "ATT", "STATUS", "EXIT", "NODE", "STARTED", "ENDED", "LOG")
    cells = [
        (
            ex["fire_time"],
            str(ex["attempt"]),
            ex["status"],
            "-" if ex["exit_code"] is None else str(ex["exit_code"]),
            ex["node"] or "-",
            ex["started"] or "-",
            ex["ended"] or "-",
            ex["log"] or "-",
        )
        for ex in rows
    ]
    head, *body = table(header, cells, right=(1, 3))
    indent = " " * head.index("STATUS")
    lines = [head]
    for ex, line in zip(rows, body, strict=True):
        lines.append(line)
        if ex.get("reason"):
            lines.append(f"{indent}reason: {ex['reason']}")
    out(ctx, {"executions": rows, "page": page, "limit": limit}, "\n".join(lines))


@click.command()
@click.argument("execution")
@click.option("--follow", "-f", is_flag=True, help="Print the log as it grows, until the run ends.")
@json_option
@click.pass_obj
def logs(ctx: Ctx, execution: str, follow: bool) -> None:
    """Print the log of EXECUTION (an id from `dcron executions`).

    With --follow, also of a run in progress: its output so far, then more as it comes, until
    the run ends.
    """
    chunks = ctx.client.follow_log(execution) if follow else ctx.client.log_chunks(execution)
    if ctx.as_json:
        data = b"".join(chunks)
        out(ctx, {"execution": execution, "log": data.decode(errors="replace")}, "")
        return
    for chunk in chunks:
        sys.stdout.buffer.write(chunk)
        if follow:
            sys.stdout.buffer.flush()
    sys.stdout.buffer.flush()


@click.command()
@json_option
@click.pass_obj
def status(ctx: Ctx) -> None:
    """Show the node, its cluster and the runs in progress here."""
    reply = ctx.client.status()
    leader = reply["leader"]["node_id"] if reply["leader"] else "none"
    running = reply["running"]
    lines = [
        f"node: {reply['node']} ({reply['endpoint']})",
        f"leader: {leader}",
        "members: " + ", ".join(m["node_id"] for m in reply["members"]),
        f"running here: {len(running)} of {reply['capacity']}",
    ]
    if running:
        header = ("JOB", "FIRE TIME", "ATT", "NODE", "STARTED")
        cells = [
            (r["job"], r["fire_time"], str(r["attempt"]), r["node"], r["started"] or "-")
            for r in sorted(running, key=lambda r: (r["fire_time"], r["job"]))
        ]
        lines += ["  " + line for line in table(header, cells, right=(2,))]
    if reply.get("outbox"):
        lines.append(f"outbox: {reply['outbox']} journaled write(s) waiting for the store or object storage")
    out(ctx, reply, "\n".join(lines))

"""``dcron`` commands that change jobs: ``schedule``, ``schedule-many``, ``disable``, ``enable``
and ``run``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

import click

from .cli_context import Ctx, cli_words, json_option, out
from .client import SCHEDULE_MANY_CHUNK
from .errors import ValidationError
from .model import MAX_KEEP_DAYS, MAX_KEEP_RUNS

__all__ = ["disable", "enable", "run", "schedule", "schedule_many"]

#: The fields of a job in ``schedule-many``'s file.
JOB_FIELDS = (
    "name", "schedule", "interpreter", "script", "tz", "timeout", "max_attempts", "keep_runs", "keep_days"
)


@click.command()
@click.argument("name")
@click.option(
    "--cron",
    "-c",
    "schedule",
    required=True,
    help="Cron expression: 5 fields, 6 with seconds first, @daily..., or '@every 90s'.",
)
@click.option("--interpreter", "-i", required=True, help="python, ruby, sh, or a plugin's.")
@click.option(
    "--script",
    "-s",
    required=True,
    help="A local file (uploaded) or the location of a script already in object storage.",
)
@click.option(
    "--timeout",
    "-t",
    "job_timeout",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="The job's timeout: seconds before a run is killed and retried elsewhere; 0 waits forever.",
)
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone the expression is in.")
@click.option(
    "--max-attempts",
    default=3,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Attempts per fire time when runs time out or their worker dies.",
)
@click.option(
    "--keep-runs",
    type=click.IntRange(0, MAX_KEEP_RUNS),
    default=None,
    help="Keep the executions of the newest N fire times; 0: any number  [default: the cluster's].",
)
@click.option(
    "--keep-days",
    type=click.IntRange(0, MAX_KEEP_DAYS),
    default=None,
    help="Keep the executions of the last D days; 0: any age  [default: the cluster's].",
)
@click.option("--update", is_flag=True, help="Change the job if the name is taken.")
@json_option
@click.pass_obj
def schedule(
    ctx: Ctx,
    name: str,
    schedule: str,
    interpreter: str,
    script: str,
    job_timeout: int,
    tz: str,
    max_attempts: int,
    keep_runs: int | None,
    keep_days: int | None,
    update: bool,
) -> None:
    """Register a job NAME (or change it, with --update)."""
    reply = ctx.client.schedule(
        name,
        schedule,
        interpreter,
        script,
        timeout=job_timeout,
        tz=tz,
        update=update,
        max_attempts=max_attempts,
        keep_runs=keep_runs,
        keep_days=keep_days,
    )
    verb = "registered" if reply["created"] else "updated"
    nxt = reply["next"][0] if reply["next"] else "never (disabled)"
    out(ctx, reply, f"{verb} {name}; next run {nxt}")


@click.command()
@click.argument("name")
@json_option
@click.pass_obj
def disable(ctx: Ctx, name: str) -> None:
    """Stop scheduling NAME (it is kept, with its executions)."""
    reply = ctx.client.disable(name)
    out(ctx, reply, f"disabled {name}" if reply["changed"] else f"{name} was already disabled")


@click.command()
@click.argument("name")
@json_option
@click.pass_obj
def enable(ctx: Ctx, name: str) -> None:
    """Schedule NAME again."""
    reply = ctx.client.enable(name)
    out(ctx, reply, f"enabled {name}" if reply["changed"] else f"{name} was already enabled")


@click.command()
@click.argument("name")
@json_option
@click.pass_obj
def run(ctx: Ctx, name: str) -> None:
    """Run NAME now, outside its schedule.

    If a run of NAME is in progress, this one starts when it ends.
    """
    reply = ctx.client.run(name)
    text = (
        f"{name} is running; this run, {reply.get('execution')}, starts when it ends"
        if reply.get("queued")
        else f"started {reply.get('execution')}"
    )
    out(ctx, reply, text)


def read_jobs(stream: IO[str], where: str) -> Iterator[dict[str, Any]]:
    """The jobs of a file: a JSON array of objects, or JSON lines (one object a line; blank lines
    skipped).  :class:`ValidationError` names the line (or item) at fault."""
    text = stream.read()
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise ValidationError(f"{where}: not a JSON array of jobs: {exc}") from None
        for number, item in enumerate(items):
            yield _job(item, f"{where}: item {number}")
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise ValidationError(f"{where}: line {number} is not JSON: {exc}") from None
        yield _job(item, f"{where}: line {number}")


def _job(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ValidationError(f"{where}: a job must be a JSON object")
    unknown = sorted(set(item) - set(JOB_FIELDS))
    if unknown:
        raise ValidationError(f"{where}: unknown field {unknown[0]!r}; a job has {', '.join(JOB_FIELDS)}")
    return item


@click.command("schedule-many")
@click.argument("file", type=click.File("r"))
@click.option("--update", is_flag=True, help="Change the jobs whose names are taken.")
@click.option(
    "--chunk",
    default=SCHEDULE_MANY_CHUNK,
    show_default=True,
    type=click.IntRange(1, SCHEDULE_MANY_CHUNK),
    help="Jobs per request.",
)
@json_option
@click.pass_obj
def schedule_many(ctx: Ctx, file: IO[str], update: bool, chunk: int) -> None:
    """Register the jobs of FILE (JSON lines or a JSON array).

    FILE - reads stdin.  Each job has name, schedule, interpreter and script (a local file or a
    location in object storage), and optionally tz, timeout, max_attempts, keep_runs and
    keep_days.  Each job stands alone: the valid ones are registered, each failure is printed, and
    the exit code is 1 if any job failed.
    """
    jobs = list(read_jobs(file, file.name))
    reply = ctx.client.schedule_many(jobs, update=update, chunk_size=chunk)
    failed = reply["failed"]
    lines = [f"created {len(reply['created'])}, updated {len(reply['updated'])}, failed {len(failed)}"]
    lines += [f"failed #{f['index']} {f['name'] or '-'}: {cli_words(f['message'])}" for f in failed]
    out(ctx, reply, "\n".join(lines))
    if failed:
        raise click.exceptions.Exit(1)

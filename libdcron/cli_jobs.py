"""``dcron`` commands that change jobs: ``schedule``, ``disable``, ``enable`` and ``run``."""

from __future__ import annotations

import click

from .cli_context import Ctx, json_option, out

__all__ = ["disable", "enable", "run", "schedule"]


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
    help="Seconds before a run is killed and retried elsewhere; 0 waits forever.",
)
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone the expression is in.")
@click.option(
    "--max-attempts",
    default=3,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Attempts per fire time when runs time out or their worker dies.",
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
    """Run NAME now, outside its schedule (after its current run, if one is in progress)."""
    reply = ctx.client.run(name)
    text = (
        f"{name} is running; this run starts when it ends"
        if reply.get("queued")
        else f"started {reply.get('execution')}"
    )
    out(ctx, reply, text)

"""``dcron``: the command-line client.

Every command takes ``--json``; every option can also come from a ``DCRON_*`` environment
variable (``DCRON_ENDPOINT``, ``DCRON_TIMEOUT``, ``DCRON_SCHEDULE_TZ``...) or from the ``[client]``
table of a TOML config file (``--config`` or ``DCRON_CONFIG``).  Errors print one line and exit 1;
usage errors exit 2.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from .client import Client
from .config import DEFAULT_ENDPOINT, load_config_file
from .errors import DcronError
from .model import format_instant, parse_instant, utcnow
from .schedule import parse_schedule
from .transport.keys import write_keypair


class Ctx:
    def __init__(
        self,
        endpoint: str,
        timeout: float,
        as_json: bool,
        keys: tuple[str | None, str | None, str | None] = (None, None, None),
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.as_json = as_json
        self.keys = keys  # data folder, client key, server key
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            data_dir, key, server_key = self.keys
            self._client = Client(
                self.endpoint, timeout=self.timeout, data_dir=data_dir, key=key, server_key=server_key
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _json_option(func: Any) -> Any:
    """``--json`` on every command (also accepted before the command name)."""

    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            ctx.find_object(Ctx).as_json = True  # type: ignore[union-attr]

    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=False,
        callback=callback,
        help="Print JSON instead of text.",
    )(func)


def _out(ctx: Ctx, data: Any, text: str) -> None:
    if ctx.as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo(text)


class _Seconds(click.types.FloatParamType):
    """A positive, finite number of seconds (``--timeout``): nan, inf, 0 and less are usage errors."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if isinstance(value, bool) or not 0 < seconds < float("inf"):
            self.fail(f"{value!r} is not a positive, finite number of seconds", param, ctx)
        return seconds


@click.group(context_settings={"auto_envvar_prefix": "DCRON", "help_option_names": ["-h", "--help"]})
@click.option(
    "--endpoint",
    "-e",
    default=DEFAULT_ENDPOINT,
    show_default=True,
    help="Node(s) to talk to, comma-separated; any node of the cluster will do.",
)
@click.option(
    "--timeout", type=_Seconds(), default=10.0, show_default=True, help="Seconds to wait for a node's reply."
)
@click.option("--config", "config_path", default=None, help="TOML config file ([client] table).")
@click.option(
    "--data-dir",
    envvar="DCRON_DATA_DIR",
    default=None,
    help="A node's data folder, where the keys of a client on the node's host are [~/.local/share/dcron].",
)
@click.option("--key", default=None, help="This client's secret key: a .key_secret file or its Z85 text.")
@click.option("--server-key", default=None, help="The cluster's public key: a .key file or its Z85 text.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.version_option(package_name="dcron")
@click.pass_context
def cli(
    ctx: click.Context,
    endpoint: str,
    timeout: float,
    config_path: str | None,
    data_dir: str | None,
    key: str | None,
    server_key: str | None,
    as_json: bool,
) -> None:
    """dcron: schedule cron jobs on a cluster without caring where they run."""
    ctx.obj = Ctx(endpoint, timeout, as_json, (data_dir, key, server_key))
    ctx.call_on_close(ctx.obj.close)


@cli.command()
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
@_json_option
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
    _out(ctx, reply, f"{verb} {name}; next run {nxt}")


@cli.command()
@click.argument("name")
@_json_option
@click.pass_obj
def disable(ctx: Ctx, name: str) -> None:
    """Stop scheduling NAME (it is kept, with its executions)."""
    reply = ctx.client.disable(name)
    _out(ctx, reply, f"disabled {name}" if reply["changed"] else f"{name} was already disabled")


@cli.command()
@click.argument("name")
@_json_option
@click.pass_obj
def enable(ctx: Ctx, name: str) -> None:
    """Schedule NAME again."""
    reply = ctx.client.enable(name)
    _out(ctx, reply, f"enabled {name}" if reply["changed"] else f"{name} was already enabled")


@cli.command("list")
@_json_option
@click.pass_obj
def list_jobs(ctx: Ctx) -> None:
    """List jobs."""
    jobs = ctx.client.list()
    lines = [f"{'NAME':<24} {'STATE':<8} {'SCHEDULE':<20} {'TZ':<16} NEXT"]
    for job in jobs:
        state = "enabled" if job["enabled"] else "disabled"
        lines.append(
            f"{job['name']:<24} {state:<8} {job['schedule']:<20} {job['tz']:<16} {job['next'] or '-'}"
        )
    _out(ctx, {"jobs": jobs}, "\n".join(lines))


@cli.command()
@click.argument("name")
@click.option("--count", default=3, show_default=True, type=click.IntRange(1, 100), help="Next fire times.")
@_json_option
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
    _out(ctx, reply, "\n".join(lines))


@cli.command()
@click.argument("name")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--page", default=1, show_default=True, type=click.IntRange(1))
@_json_option
@click.pass_obj
def executions(ctx: Ctx, name: str, limit: int, page: int) -> None:
    """Executions of NAME, newest first."""
    rows = ctx.client.executions(name, limit=limit, page=page)
    lines = [
        f"{'FIRE TIME':<22} {'ATT':>3} {'STATUS':<10} {'EXIT':>4} {'NODE':<18} {'STARTED':<28} "
        f"{'ENDED':<28} LOG"
    ]
    for ex in rows:
        code = "-" if ex["exit_code"] is None else str(ex["exit_code"])
        lines.append(
            f"{ex['fire_time']:<22} {ex['attempt']:>3} {ex['status']:<10} {code:>4} {ex['node']:<18} "
            f"{ex['started'] or '-':<28} {ex['ended'] or '-':<28} {ex['log'] or '-'}"
        )
        if ex.get("reason"):
            lines.append(f"{'':<22}     reason: {ex['reason']}")
    _out(ctx, {"executions": rows, "page": page, "limit": limit}, "\n".join(lines))


@cli.command()
@click.argument("execution")
@_json_option
@click.pass_obj
def logs(ctx: Ctx, execution: str) -> None:
    """Print the log of EXECUTION (an id from `dcron executions`)."""
    if ctx.as_json:
        data = ctx.client.logs(execution)
        _out(ctx, {"execution": execution, "log": data.decode(errors="replace")}, "")
        return
    for chunk in ctx.client.log_chunks(execution):
        sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


@cli.command()
@click.argument("name")
@_json_option
@click.pass_obj
def run(ctx: Ctx, name: str) -> None:
    """Run NAME now, outside its schedule (after its current run, if one is in progress)."""
    reply = ctx.client.run(name)
    text = (
        f"{name} is running; this run starts when it ends"
        if reply.get("queued")
        else f"started {reply.get('execution')}"
    )
    _out(ctx, reply, text)


@cli.command()
@_json_option
@click.pass_obj
def status(ctx: Ctx) -> None:
    """Show the node, the leader and the members of the cluster."""
    reply = ctx.client.status()
    leader = reply["leader"]["node_id"] if reply["leader"] else "none"
    lines = [
        f"node: {reply['node']} ({reply['endpoint']})",
        f"leader: {leader}",
        "members: " + ", ".join(m["node_id"] for m in reply["members"]),
        f"running here: {len(reply['running'])} of {reply['capacity']}",
    ]
    _out(ctx, reply, "\n".join(lines))


@cli.command()
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True, help="Folder to write the key files to.")
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
@_json_option
@click.pass_obj
def keygen(ctx: Ctx, name: str, directory: str, force: bool) -> None:
    """Create a CurveZMQ key pair NAME.key (public) and NAME.key_secret (mode 0600); no node needed."""
    folder = Path(directory)
    if not force and ((folder / f"{name}.key").exists() or (folder / f"{name}.key_secret").exists()):
        raise DcronError(f"{folder / name}.key(_secret) exists; pass --force to overwrite it")
    if not name or "/" in name or name.startswith("."):
        raise DcronError(f"key name {name!r} must be a plain file name")
    pair = write_keypair(folder, name)
    _out(
        ctx,
        {
            "public_key": pair.public.decode(),
            "public": str(folder / f"{name}.key"),
            "secret": str(folder / f"{name}.key_secret"),
        },
        f"wrote {folder / name}.key (public: {pair.public.decode()}) and {folder / name}.key_secret",
    )


@cli.command("next")
@click.argument("expression")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone of the expression.")
@click.option("--after", default=None, help="ISO 8601 instant to start from (default: now).")
@click.option("--count", "-n", default=5, show_default=True, type=click.IntRange(1, 1000))
@_json_option
@click.pass_obj
def next_(ctx: Ctx, expression: str, tz: str, after: str | None, count: int) -> None:
    """Print the next fire instants of EXPRESSION (no node needed)."""
    sched = parse_schedule(expression, tz)
    zone = ZoneInfo(tz)
    at = parse_instant(after, "--after") if after else utcnow()
    instants: list[datetime] = []
    for _ in range(count):
        at = sched.next_after(at)
        instants.append(at)
    local = [i.astimezone(zone).isoformat() for i in instants]
    _out(
        ctx,
        {
            "expression": expression,
            "tz": tz,
            "next": local,
            "next_utc": [format_instant(i) for i in instants],
        },
        "\n".join(local),
    )


def _config_default_map(argv: list[str]) -> dict[str, Any]:
    path = os.environ.get("DCRON_CONFIG")
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
    client = load_config_file(path).get("client", {})
    if not isinstance(client, dict):
        raise DcronError("the [client] section of the config file must be a table")
    return client


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        default_map = _config_default_map(args)
        cli.main(args=args, prog_name="dcron", standalone_mode=False, default_map=default_map)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except DcronError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # no traceback at the user; DCRON_DEBUG=1 shows it
        if os.environ.get("DCRON_DEBUG"):
            raise
        click.echo(f"error: internal error: {exc!r} (set DCRON_DEBUG=1 for a traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

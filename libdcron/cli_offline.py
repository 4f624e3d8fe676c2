"""``dcron`` commands that need no node: ``keygen`` (a CurveZMQ key pair) and ``next`` (fire times)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from .cli_context import Ctx, json_option, out
from .errors import DcronError
from .model import format_instant, parse_instant, utcnow
from .schedule import parse_schedule
from .transport.keys import write_keypair

__all__ = ["keygen", "next_"]


@click.command()
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True, help="Folder to write the key files to.")
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
@json_option
@click.pass_obj
def keygen(ctx: Ctx, name: str, directory: str, force: bool) -> None:
    """Write a CurveZMQ key pair NAME.key and NAME.key_secret.

    NAME.key is the public key, NAME.key_secret the secret one (mode 0600); no node is needed.
    """
    folder = Path(directory)
    if not force and ((folder / f"{name}.key").exists() or (folder / f"{name}.key_secret").exists()):
        raise DcronError(f"{folder / name}.key(_secret) exists; pass --force to overwrite it")
    if not name or "/" in name or name.startswith("."):
        raise DcronError(f"key name {name!r} must be a plain file name")
    pair = write_keypair(folder, name)
    out(
        ctx,
        {
            "public_key": pair.public.decode(),
            "public": str(folder / f"{name}.key"),
            "secret": str(folder / f"{name}.key_secret"),
        },
        f"wrote {folder / name}.key (public: {pair.public.decode()}) and {folder / name}.key_secret",
    )


@click.command("next")
@click.argument("expression")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone of the expression.")
@click.option("--after", default=None, help="ISO 8601 instant to start from (default: now).")
@click.option("--count", "-n", default=5, show_default=True, type=click.IntRange(1, 1000))
@json_option
@click.pass_obj
def next_(ctx: Ctx, expression: str, tz: str, after: str | None, count: int) -> None:
    """Print the next fire times of EXPRESSION (no node needed)."""
    sched = parse_schedule(expression, tz)
    zone = ZoneInfo(tz)
    at = parse_instant(after, "--after") if after else utcnow()
    instants: list[datetime] = []
    for _ in range(count):
        at = sched.next_after(at)
        instants.append(at)
    local = [i.astimezone(zone).isoformat() for i in instants]
    out(
        ctx,
        {
            "expression": expression,
            "tz": tz,
            "next": local,
            "next_utc": [format_instant(i) for i in instants],
        },
        "\n".join(local),
    )

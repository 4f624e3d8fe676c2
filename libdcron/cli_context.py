"""What every ``dcron`` command shares: the :class:`Ctx` it runs in, ``--json`` and output.

:class:`Ctx` holds the group's options and opens the :class:`~libdcron.client.Client` on first
use; :func:`json_option` adds ``--json`` to a command; :func:`out` prints a reply as JSON or text;
:func:`table` lines up columns; :func:`cli_words` says a library error in the CLI's words;
:class:`Seconds` is the type of ``--request-timeout``; :class:`ShowsEffective` is an option whose
``--help`` shows the value in effect.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import click

from .client import Client

__all__ = ["Ctx", "Seconds", "ShowsEffective", "cli_words", "json_option", "out", "table"]


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


def json_option(func: Any) -> Any:
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


def out(ctx: Ctx, data: Any, text: str) -> None:
    if ctx.as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo(text)


class Seconds(click.types.FloatParamType):
    """A positive, finite number of seconds (``--request-timeout``): nan, inf, 0 and less are usage
    errors."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if isinstance(value, bool) or not 0 < seconds < float("inf"):
            self.fail(f"{value!r} is not a positive, finite number of seconds", param, ctx)
        return seconds


class ShowsEffective(click.Option):
    """An option whose ``--help`` shows the value in effect and where it comes from (one of its
    environment variables, or the config file), not only its default (``default_text`` if given).
    ``config_keys``: the ``[client]`` keys read for it (default: its name)."""

    def __init__(
        self,
        *args: Any,
        default_text: str | None = None,
        config_keys: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        kwargs["show_default"] = False
        super().__init__(*args, **kwargs)
        self.default_text = default_text
        self.config_keys = tuple(config_keys) or ((self.name,) if self.name else ())

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        if record is None:
            return None
        opts, text = record
        default = self.default_text if self.default_text is not None else self.default
        note = f"default: {default}"
        envvars = [self.envvar] if isinstance(self.envvar, str) else list(self.envvar or ())
        if not envvars and ctx.auto_envvar_prefix and self.name:
            envvars = [f"{ctx.auto_envvar_prefix}_{self.name.upper()}"]
        from_env = next(((name, os.environ[name]) for name in envvars if os.environ.get(name)), None)
        from_file = next(
            (value for key in self.config_keys if (value := (ctx.default_map or {}).get(key)) is not None),
            None,
        )
        if from_env is not None:
            note = f"now {from_env[1]}, from {from_env[0]}; {note}"
        elif from_file is not None:
            note = f"now {from_file}, from the config file; {note}"
        return opts, f"{text}  [{note}]"


def cli_words(message: str) -> str:
    """A library message in the CLI's words (``update=True`` is the ``--update`` flag)."""
    return message.replace("pass update=True", "pass --update")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> list[str]:
    """Lines of a text table: each column as wide as its widest cell (the ``right`` ones aligned
    right), the last column left as it is."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = []
        for i, cell in enumerate(map(str, row)):
            if i == len(row) - 1:
                cells.append(cell)
            else:
                cells.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        lines.append(" ".join(cells).rstrip())
    return lines

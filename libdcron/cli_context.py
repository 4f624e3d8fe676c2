"""What every ``dcron`` command shares: the :class:`Ctx` it runs in, ``--json`` and output.

:class:`Ctx` holds the group's options and opens the :class:`~libdcron.client.Client` on first
use; :func:`json_option` adds ``--json`` to a command; :func:`out` prints a reply as JSON or text;
:class:`Seconds` is the type of ``--timeout``.
"""

from __future__ import annotations

import json
from typing import Any

import click

from .client import Client

__all__ = ["Ctx", "Seconds", "json_option", "out"]


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

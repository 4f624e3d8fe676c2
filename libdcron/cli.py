"""``dcron``: the command-line client.

Every command takes ``--json``; every option can also come from a ``DCRON_*`` environment
variable (``DCRON_ENDPOINT``, ``DCRON_REQUEST_TIMEOUT``, ``DCRON_SCHEDULE_TZ``...) or from the
``[client]`` table of a TOML config file (``--config`` or ``DCRON_CONFIG``).  Errors print one line
and exit 1; usage errors exit 2.

``--request-timeout`` was called ``--timeout`` (a job's timeout is ``dcron schedule --timeout``);
the old flag, ``DCRON_TIMEOUT`` and ``timeout`` in ``[client]`` still work.

The commands live in modules named after what they do: ``cli_jobs`` (schedule, schedule-many,
disable, enable, run), ``cli_read`` (list, show, executions, logs, status), ``cli_offline`` (keygen, next, no node
needed); what they share (``--json``, output, the client) is in ``cli_context``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click
from click.core import ParameterSource

from .cli_context import Ctx, Seconds, ShowsEffective, cli_words
from .cli_jobs import disable, enable, run, schedule, schedule_many
from .cli_offline import keygen, next_
from .cli_read import executions, list_jobs, logs, show, status
from .config import DEFAULT_ENDPOINT, load_config_file
from .errors import DcronError

__all__ = ["cli", "main"]

DEFAULT_REQUEST_TIMEOUT = 10.0


@click.group(context_settings={"auto_envvar_prefix": "DCRON", "help_option_names": ["-h", "--help"]})
@click.option(
    "--endpoint",
    "-e",
    cls=ShowsEffective,
    default=DEFAULT_ENDPOINT,
    help="Node(s) to talk to, comma-separated, tried in order; tcp://HOST:PORT (or HOST:PORT).",
)
@click.option(
    "--request-timeout",
    cls=ShowsEffective,
    envvar=["DCRON_REQUEST_TIMEOUT", "DCRON_TIMEOUT"],
    config_keys=("request_timeout", "timeout"),
    type=Seconds(),
    default=DEFAULT_REQUEST_TIMEOUT,
    help="Seconds to wait for a node's reply (a node that is not running is skipped in about 1s).",
)
@click.option(
    "--timeout",
    "timeout",
    type=Seconds(),
    default=None,
    hidden=True,
    allow_from_autoenv=False,
    help="Old name of --request-timeout.",
)
@click.option("--config", "config_path", default=None, help="TOML config file ([client] table).")
@click.option(
    "--data-dir",
    cls=ShowsEffective,
    envvar="DCRON_DATA_DIR",
    default=None,
    default_text="~/.local/share/dcron",
    help="A node's data folder, where the keys of a client on the node's host are.",
)
@click.option("--key", default=None, help="This client's secret key: a .key_secret file or its Z85 text.")
@click.option("--server-key", default=None, help="The cluster's public key: a .key file or its Z85 text.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.version_option(package_name="dcron")
@click.pass_context
def cli(
    ctx: click.Context,
    endpoint: str,
    request_timeout: float,
    timeout: float | None,
    config_path: str | None,
    data_dir: str | None,
    key: str | None,
    server_key: str | None,
    as_json: bool,
) -> None:
    """dcron: schedule cron jobs on a cluster without caring where they run."""
    seconds = _request_timeout(ctx, request_timeout, timeout)
    ctx.obj = Ctx(endpoint, seconds, as_json, (data_dir, key, server_key))
    ctx.call_on_close(ctx.obj.close)


#: Where a value came from, weakest first: a flag beats the environment, which beats the file.
_STRENGTH = (
    ParameterSource.DEFAULT,
    ParameterSource.DEFAULT_MAP,
    ParameterSource.ENVIRONMENT,
    ParameterSource.COMMANDLINE,
)


def _request_timeout(ctx: click.Context, value: float, legacy: float | None) -> float:
    """``--request-timeout``, or the old ``--timeout`` (a flag, or ``timeout`` in the config file)
    when that was given more strongly."""
    if legacy is None:
        return value

    def strength(name: str) -> int:
        source = ctx.get_parameter_source(name)
        return _STRENGTH.index(source) if source in _STRENGTH else 0

    return legacy if strength("timeout") > strength("request_timeout") else value


for _command in (schedule, schedule_many, disable, enable, list_jobs, show, executions, logs, run, status, keygen, next_):
    cli.add_command(_command)


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
        code = cli.main(args=args, prog_name="dcron", standalone_mode=False, default_map=default_map)
        # Without standalone mode, click returns the code of an Exit (schedule-many's 1) instead.
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except DcronError as exc:
        click.echo(f"error: {cli_words(str(exc))}", err=True)
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

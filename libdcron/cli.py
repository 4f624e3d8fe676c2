"""``dcron``: the command-line client.

Every command takes ``--json``; every option can also come from a ``DCRON_*`` environment
variable (``DCRON_ENDPOINT``, ``DCRON_TIMEOUT``, ``DCRON_SCHEDULE_TZ``...) or from the ``[client]``
table of a TOML config file (``--config`` or ``DCRON_CONFIG``).  Errors print one line and exit 1;
usage errors exit 2.

The commands live in modules named after what they do: ``cli_jobs`` (schedule, schedule-many,
disable, enable, run), ``cli_read`` (list, show, executions, logs, status), ``cli_offline`` (keygen, next, no node
needed); what they share (``--json``, output, the client) is in ``cli_context``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from .cli_context import Ctx, Seconds
from .cli_jobs import disable, enable, run, schedule, schedule_many
from .cli_offline import keygen, next_
from .cli_read import executions, list_jobs, logs, show, status
from .config import DEFAULT_ENDPOINT, load_config_file
from .errors import DcronError

__all__ = ["cli", "main"]


@click.group(context_settings={"auto_envvar_prefix": "DCRON", "help_option_names": ["-h", "--help"]})
@click.option(
    "--endpoint",
    "-e",
    default=DEFAULT_ENDPOINT,
    show_default=True,
    help="Node(s) to talk to, comma-separated; any node of the cluster will do.",
)
@click.option(
    "--timeout", type=Seconds(), default=10.0, show_default=True, help="Seconds to wait for a node's reply."
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

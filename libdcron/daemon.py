"""``dcrond``: run one dcron node until SIGTERM or SIGINT.

With no option at all it runs on embedded defaults: a SQLite document store, a local folder as
object storage and a file-lock election, all under ``~/.local/share/dcron``.

Exit codes: 0 stopped by a signal; 1 bad configuration; 2 usage error; 3 could not start
(address in use, data folder not writable, pidfile held by a live process).
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click
import zmq

from .config import DEFAULT_ENDPOINT, NodeSettings, default_data_dir, load_config_file
from .errors import DcronError, PluginError, UnavailableError, ValidationError

EXIT_OK, EXIT_CONFIG, EXIT_USAGE, EXIT_START = 0, 1, 2, 3

log = logging.getLogger("dcrond")


def _write_pidfile(path: Path) -> None:
    if path.exists():
        try:
            pid = int(path.read_text().strip() or "0")
        except ValueError:
            pid = 0
        if pid and pid != os.getpid():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                pass
            else:
                raise UnavailableError(f"pidfile {path} names live process {pid}; is dcrond already running?")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_path", envvar="DCRON_CONFIG", default=None, help="TOML config file ([node])."
)
@click.option(
    "--data-dir", envvar="DCRON_DATA_DIR", default=None, help=f"Data folder [{default_data_dir()}]."
)
@click.option(
    "--listen", envvar="DCRON_LISTEN", default=None, help=f"ZeroMQ bind endpoint [{DEFAULT_ENDPOINT}]."
)
@click.option(
    "--advertise",
    envvar="DCRON_ADVERTISE",
    default=None,
    help="Endpoint other nodes use to reach this one [the listen endpoint].",
)
@click.option("--node-id", envvar="DCRON_NODE_ID", default=None, help="Unique node name [host-port].")
@click.option(
    "--store",
    envvar="DCRON_STORE",
    default=None,
    help="Document store URL: sqlite:///path or http://couchdb:5984/prefix.",
)
@click.option(
    "--objects",
    envvar="DCRON_OBJECTS",
    default=None,
    help="Object store URL: file:///path, s3://bucket/prefix or swift://container/prefix.",
)
@click.option(
    "--election",
    envvar="DCRON_ELECTION",
    default=None,
    help="Election URL: file:///dir (one host) or zk://host:port,.../chroot.",
)
@click.option("--capacity", envvar="DCRON_CAPACITY", type=int, default=None, help="Concurrent runs [4].")
@click.option(
    "--log-cap", envvar="DCRON_LOG_CAP", type=int, default=None, help="Bytes kept per run log [10 MiB]."
)
@click.option(
    "--stop-grace",
    envvar="DCRON_STOP_GRACE",
    type=float,
    default=None,
    help="At SIGTERM, seconds runs in progress get to end before they are killed (recorded lost, retried) [10].",
)
@click.option(
    "--keep-runs",
    envvar="DCRON_KEEP_RUNS",
    type=int,
    default=None,
    help="Executions kept per job: those of its newest N fire times; 0 keeps any number [100].",
)
@click.option(
    "--keep-days",
    envvar="DCRON_KEEP_DAYS",
    type=int,
    default=None,
    help="Executions kept per job: those of the last D days; 0 keeps any age [30].",
)
@click.option(
    "--keys-dir", envvar="DCRON_KEYS_DIR", default=None, help="Folder of CurveZMQ keys [DATA_DIR/keys]."
)
@click.option(
    "--cluster-key",
    envvar="DCRON_CLUSTER_KEY",
    default=None,
    help="The cluster's secret key: a .key_secret file or its Z85 text [KEYS_DIR/cluster.key_secret].",
)
@click.option(
    "--client-keys",
    envvar="DCRON_CLIENT_KEYS",
    default=None,
    help="More client public keys to accept, comma-separated (files or Z85 texts) [KEYS_DIR/clients/*.key].",
)
@click.option(
    "--node-keys",
    envvar="DCRON_NODE_KEYS",
    default=None,
    help="More node public keys to accept, comma-separated, for a rotation [KEYS_DIR/nodes/*.key].",
)
@click.option(
    "--allowed-objects",
    envvar="DCRON_ALLOWED_OBJECTS",
    default=None,
    help="Object store URLs besides --objects that scripts may be read from, comma-separated.",
)
@click.option(
    "--http",
    envvar="DCRON_HTTP",
    default=None,
    help="Serve the web dashboard and /metrics here, e.g. tcp://127.0.0.1:8571; 'off' for none "
    "[embedded defaults: 127.0.0.1, the listen port + 1000; cluster: off].",
)
@click.option(
    "--http-token",
    envvar="DCRON_HTTP_TOKEN",
    default=None,
    help="The dashboard's token: a file or the token itself [KEYS_DIR/http.token, made on first start].",
)
@click.option(
    "--http-write/--no-http-write",
    envvar="DCRON_HTTP_WRITE",
    default=None,
    help="Turn on the dashboard's write actions (enable, disable, run now) [off].",
)
@click.option(
    "--option",
    "-o",
    "extra",
    multiple=True,
    envvar="DCRON_OPTIONS",
    help="Plugin option KEY=VALUE (repeatable), e.g. session_timeout=4.",
)
@click.option("--pidfile", envvar="DCRON_PIDFILE", default=None, help="Write the PID here.")
@click.option(
    "--log-level",
    envvar="DCRON_LOG_LEVEL",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def dcrond(
    config_path: str | None, log_level: str, pidfile: str | None, extra: tuple[str, ...], **flags: Any
) -> None:
    """Run a dcron node."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = _settings(config_path, flags, extra)
    except DcronError as exc:
        click.echo(f"dcrond: bad configuration: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    sys.exit(_serve(settings, Path(pidfile) if pidfile else None))


def _settings(config_path: str | None, flags: dict[str, Any], extra: tuple[str, ...]) -> NodeSettings:
    node_cfg = load_config_file(config_path).get("node", {})
    if not isinstance(node_cfg, dict):
        raise ValidationError("the [node] section of the config file must be a table")
    values: dict[str, Any] = {k: v for k, v in node_cfg.items() if k != "options"}
    options = node_cfg.get("options", {})
    if not isinstance(options, dict):
        raise ValidationError(f"setting options must be a table ([node.options]), got {options!r}")
    options = dict(options)
    for key, value in flags.items():
        if value is not None:
            values[key] = value
    for item in extra:
        for part in item.split(",") if "," in item and "=" in item else [item]:
            key, sep, value = part.partition("=")
            if not sep:
                raise ValidationError(f"plugin option {part!r} must be KEY=VALUE")
            options[key.strip()] = value.strip()
    known = set(NodeSettings.__dataclass_fields__) - {"options"}
    unknown = set(values) - known
    if unknown:
        raise ValidationError(f"unknown setting(s) in [node]: {', '.join(sorted(unknown))}")
    for key in ("data_dir", "keys_dir"):
        if key in values and isinstance(values[key], str):
            values[key] = Path(values[key])
    given = values.get("http")
    values["http"] = _http_default(values)
    values["http_optional"] = given is None and values["http"] is not None
    return NodeSettings(**values, options=options).resolved()


#: The dashboard's port on embedded defaults is the node's listen port plus this.
HTTP_PORT_OFFSET = 1000


def _http_default(values: dict[str, Any]) -> str | None:
    """The ``http`` setting: as given ('off' or '' for none); else on at localhost in embedded mode
    (no store, objects or election configured), on the listen port + 1000; else off."""
    given = values.get("http")
    if given is not None:
        if not isinstance(given, str):
            raise ValidationError(f"setting http must be a string, got {given!r}")
        return None if given.strip().lower() in ("", "off", "none", "false") else given
    if any(values.get(key) for key in ("store", "objects", "election")):
        return None
    listen = str(values.get("listen") or DEFAULT_ENDPOINT)
    port = listen.rsplit(":", 1)[-1]
    if not port.isdigit() or int(port) == 0 or int(port) + HTTP_PORT_OFFSET > 65535:
        return None
    return f"tcp://127.0.0.1:{int(port) + HTTP_PORT_OFFSET}"


#: Open files a run in progress holds at most (its log, its output pipe, its exit's pidfd, and a
#: spare), and what the node needs besides runs.
FILES_PER_RUN = 4
FILES_BASE = 1024


def raise_open_files(capacity: int) -> tuple[int, int]:
    """Raise this process's soft limit of open files toward what ``capacity`` runs in progress
    need (the hard limit at most; never lowered); returns the soft limit before and after.  A
    soft limit of 1,024, the usual default, fails runs with EMFILE past a few hundred at once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = FILES_BASE + FILES_PER_RUN * max(capacity, 0)
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft != resource.RLIM_INFINITY and target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, exc)
            return soft, soft
        if target < need:
            log.warning(
                "--capacity %d needs about %d open files but the hard limit is %d: runs beyond it "
                "fail to start (raise it: ulimit -Hn, or LimitNOFILE= in a systemd unit)",
                capacity, need, hard,
            )  # fmt: skip
        return soft, target
    return soft, soft


def _serve(settings: NodeSettings, pidfile: Path | None) -> int:
    from .node import Node

    raise_open_files(settings.capacity)

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if pidfile:
            _write_pidfile(pidfile)
        node = Node(settings)
    except (PluginError, ValidationError) as exc:
        log.error("bad configuration: %s", exc)
        return EXIT_CONFIG
    except DcronError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_START
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_START
    starter = threading.Thread(target=_start, args=(node, stop), daemon=True)
    starter.start()
    while not stop.wait(0.5):
        if not starter.is_alive() and getattr(node, "start_failed", False):
            return EXIT_START
    node.stop()
    if pidfile:
        pidfile.unlink(missing_ok=True)
    log.info("dcrond stopped")
    return EXIT_OK


def _start(node: Any, stop: threading.Event) -> None:
    try:
        node.start()
    except zmq.ZMQError as exc:
        log.error("cannot listen on %s: %s", node.settings.listen, exc)
        node.start_failed = True
    except DcronError as exc:
        log.error("cannot start: %s", exc)
        node.start_failed = True
    except OSError as exc:
        log.error("cannot start: %s", exc)
        node.start_failed = True


#: The daemon's GIL switch interval (CPython's default is 0.005 s).  A thread back from a system
#: call (a spawn, a pipe read, an fsync) waits up to this long for the interpreter while other
#: threads compute; with hundreds of runs a second those waits add up to seconds of start lag.
SWITCH_INTERVAL = 0.0005


def main() -> None:
    sys.setswitchinterval(SWITCH_INTERVAL)
    dcrond(prog_name="dcrond")


if __name__ == "__main__":
    main()

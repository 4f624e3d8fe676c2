"""Node settings: defaults, an optional TOML file, ``DCRON_*`` environment variables, flags.

Precedence, highest first: command-line flag, environment variable, config file, default.  The
config file is TOML with a ``[node]`` table for ``dcrond`` and a ``[client]`` table for ``dcron``::

    [node]
    data_dir = "/var/lib/dcron"
    listen = "tcp://0.0.0.0:7571"
    advertise = "tcp://node1.example.com:7571"
    store = "http://couchdb:5984/dcron"
    objects = "s3://my-bucket/dcron"
    election = "zk://zk1:2181,zk2:2181,zk3:2181/dcron"
    capacity = 8
    keep_runs = 100         # retention of each job's executions (and their logs)
    keep_days = 30

    [node.options]          # passed to plugins (session_timeout, s3_endpoint_url, ...)
    session_timeout = 4

    [client]
    endpoint = "tcp://node1:7571,tcp://node2:7571"
"""

from __future__ import annotations

import math
import os
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ValidationError
from .model import MAX_KEEP_DAYS, MAX_KEEP_RUNS

DEFAULT_PORT = 7571
DEFAULT_ENDPOINT = f"tcp://127.0.0.1:{DEFAULT_PORT}"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "dcron"


def split_list(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """A comma-separated setting (or a TOML list) as a list of non-empty, stripped items."""
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


def load_config_file(path: str | None) -> dict[str, Any]:
    """Read a TOML config file; ``None`` reads nothing."""
    if not path:
        return {}
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ValidationError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValidationError(f"config file {path} is not valid TOML: {exc}") from None


@dataclass
class NodeSettings:
    data_dir: Path = field(default_factory=default_data_dir)
    listen: str = DEFAULT_ENDPOINT
    advertise: str | None = None
    node_id: str | None = None
    store: str | None = None
    objects: str | None = None
    election: str | None = None
    capacity: int = 4
    log_cap: int = 10 * 1024 * 1024
    lookback: float = 300.0
    lead: float = 5.0  # at most this many seconds ahead a run is sent (half the gap to the next run at most)
    #: At a stop (SIGTERM), seconds runs in progress may take to end before they are killed and
    #: recorded ``lost`` (which the leader retries on another node, or after the restart).
    stop_grace: float = 10.0
    #: Retention (libdcron.retention), for jobs that set none of their own: executions of the newest
    #: ``keep_runs`` fire times of each job that are also at most ``keep_days`` days old are kept
    #: (0: no limit of that kind); the leader sweeps every ``retention_interval`` seconds.
    keep_runs: int = 100
    keep_days: int = 30
    retention_interval: float = 600.0
    #: CurveZMQ keys (see libdcron.transport.keys): the folder, the cluster's secret key (a file or
    #: its Z85 text), and more trusted public keys (comma-separated Z85 texts or files).
    keys_dir: Path | None = None
    cluster_key: str | None = None
    client_keys: str | list[str] = ""
    node_keys: str | list[str] = ""
    #: Object stores besides ``objects`` that scripts may be read from (comma-separated URL prefixes).
    allowed_objects: str | list[str] = ""
    #: The web dashboard and /metrics (libdcron.web): an address like tcp://127.0.0.1:8571, or
    #: None (off); its token (a file or the text; default KEYS_DIR/http.token, made on first
    #: start); whether its write actions (enable, disable, run now) are on.
    http: str | None = None
    http_token: str | None = None
    http_write: bool = False
    #: ``http`` was chosen by default (dcrond on embedded defaults), not asked for: when its port
    #: is taken the node logs a warning and runs without the dashboard instead of failing to start.
    http_optional: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Check every setting's type and range (a config file can hold anything); raise
        :class:`ValidationError` naming the first bad one: ``setting capacity must be an integer,
        got '4'``."""
        for name in ("data_dir", "keys_dir"):
            value = getattr(self, name)
            if not isinstance(value, str | os.PathLike) and not (name == "keys_dir" and value is None):
                raise ValidationError(f"setting {name} must be a path, got {value!r}")
        _string("listen", self.listen)
        for name in ("advertise", "node_id", "store", "objects", "election", "cluster_key", "http", "http_token"):
            _string(name, getattr(self, name), optional=True)
        for name in ("client_keys", "node_keys", "allowed_objects"):
            value = getattr(self, name)
            if not isinstance(value, str) and not (
                isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)
            ):
                raise ValidationError(f"setting {name} must be a string or a list of strings, got {value!r}")
        _integer("capacity", self.capacity, minimum=1)
        _integer("log_cap", self.log_cap, minimum=0)
        _seconds("lookback", self.lookback)
        _seconds("lead", self.lead)
        _seconds("stop_grace", self.stop_grace)
        _integer("keep_runs", self.keep_runs, minimum=0, maximum=MAX_KEEP_RUNS)
        _integer("keep_days", self.keep_days, minimum=0, maximum=MAX_KEEP_DAYS)
        _seconds("retention_interval", self.retention_interval)
        for name in ("http_write", "http_optional"):
            if not isinstance(getattr(self, name), bool):
                raise ValidationError(f"setting {name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.options, dict):
            raise ValidationError(f"setting options must be a table, got {self.options!r}")

    def resolved(self) -> NodeSettings:
        """Fill the defaults that depend on other settings; validate."""
        self.validate()
        data_dir = Path(self.data_dir).expanduser().resolve()
        if not self.listen.startswith(("tcp://", "ipc://")):
            raise ValidationError(
                f"listen must be a ZeroMQ endpoint like tcp://127.0.0.1:7571, got {self.listen!r}"
            )
        advertise = self.advertise or self.listen.replace("0.0.0.0", socket.gethostname()).replace(
            "*", socket.gethostname()
        )
        node_id = self.node_id or f"{socket.gethostname()}-{advertise.rsplit(':', 1)[-1]}"
        return NodeSettings(
            data_dir=data_dir,
            listen=self.listen,
            advertise=advertise,
            node_id=node_id,
            store=self.store or f"sqlite://{data_dir / 'dcron.sqlite3'}",
            objects=self.objects or f"file://{data_dir / 'objects'}",
            election=self.election or f"file://{data_dir / 'election'}",
            capacity=self.capacity,
            log_cap=self.log_cap,
            lookback=float(self.lookback),
            lead=float(self.lead),
            stop_grace=float(self.stop_grace),
            keep_runs=self.keep_runs,
            keep_days=self.keep_days,
            retention_interval=float(self.retention_interval),
            keys_dir=Path(self.keys_dir).expanduser().resolve() if self.keys_dir else data_dir / "keys",
            cluster_key=self.cluster_key,
            client_keys=split_list(self.client_keys),
            node_keys=split_list(self.node_keys),
            allowed_objects=split_list(self.allowed_objects),
            http=self.http or None,
            http_token=self.http_token or None,
            http_write=self.http_write,
            http_optional=self.http_optional,
            options=dict(self.options),
        )

    def plugin_options(self) -> dict[str, Any]:
        return {"data_dir": str(self.data_dir), **self.options}


def _string(name: str, value: Any, optional: bool = False) -> None:
    if not isinstance(value, str) and not (optional and value is None):
        raise ValidationError(f"setting {name} must be a string, got {value!r}")


def _integer(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"setting {name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValidationError(f"setting {name} must be at least {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValidationError(f"setting {name} must be at most {maximum}, got {value!r}")


def _seconds(name: str, value: Any) -> None:
    """A positive, finite number of seconds (a TOML integer will do)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"setting {name} must be a number of seconds, got {value!r}")
    if (isinstance(value, float) and not math.isfinite(value)) or value <= 0:
        raise ValidationError(f"setting {name} must be a positive, finite number of seconds, got {value!r}")

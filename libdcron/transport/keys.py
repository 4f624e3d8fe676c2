"""CurveZMQ keys: who a node is, who it lets in, and as what.

Every socket is encrypted and authenticated with CurveZMQ (Curve25519 key pairs, the ``zmq.auth``
certificate format).  There are two roles:

- **node**: the cluster's own processes.  All nodes share the *cluster key pair*: its public key is
  the server key every client and node connects to, and its key pair is the identity a node uses
  when it talks to other nodes (DISPATCH, FINISHED, RUN_NOW).  More node keys can be trusted during a
  rotation (``node_keys``).
- **client**: ``dcron`` and embedding code.  Each client has its own key pair; a node accepts the
  public keys found in ``KEYS_DIR/clients/*.key`` and in the ``client_keys`` setting.  A client may
  use the public commands only.

The keys folder (``DATA_DIR/keys`` by default)::

    cluster.key         cluster public key (what clients need, with their own secret key)
    cluster.key_secret  cluster secret key (every node, mode 0600)
    client.key(_secret) the local client's key pair, created with the cluster key on first start
    clients/*.key       public keys of the clients this node accepts (re-read when the folder changes)
    nodes/*.key         further public keys with the node role (rotation)

A key given as a setting is either a file path or the 40-character Z85 text of the key itself.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth

from ..errors import ValidationError

log = logging.getLogger(__name__)

CLUSTER = "cluster"
LOCAL_CLIENT = "client"
Z85_KEY_LENGTH = 40
NODE_ROLE = "node"
CLIENT_ROLE = "client"


@dataclass(frozen=True)
class KeyPair:
    """A Curve25519 key pair as Z85 text (40 bytes each); ``secret`` is empty for a public key only."""

    public: bytes
    secret: bytes = b""

    @classmethod
    def generate(cls) -> KeyPair:
        public, secret = zmq.curve_keypair()
        return cls(public, secret)

    @classmethod
    def from_secret(cls, secret: bytes) -> KeyPair:
        return cls(zmq.curve_public(secret), secret)


@dataclass(frozen=True)
class Peer:
    """Who sent a request: its role and the name its key is known by."""

    role: str
    name: str

    @property
    def is_node(self) -> bool:
        return self.role == NODE_ROLE


#: The peer of an unauthenticated transport (tests and trusted networks only).
TRUSTED = Peer(NODE_ROLE, "unauthenticated")


def _is_z85_key(text: str) -> bool:
    """40 characters of Z85 (whose alphabet has ``/``: a key is told from a path by decoding it;
    a file of that very name, if one exists, is read as a file)."""
    if len(text) != Z85_KEY_LENGTH:
        return False
    try:
        zmq.utils.z85.decode(text.encode())
    except (ValueError, KeyError, TypeError):
        return False
    return True


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValidationError(
            f"secret key {path} is readable by other users (mode {stat.S_IMODE(mode):o}); chmod 600 it"
        )


def load_secret(value: str | os.PathLike[str], what: str) -> KeyPair:
    """A key pair from a ``.key_secret`` file or from the Z85 text of a secret key."""
    text = os.fspath(value).strip()
    if _is_z85_key(text) and not os.path.exists(text):
        return KeyPair.from_secret(text.encode())
    path = Path(text).expanduser()
    try:
        _check_private(path)
        public, secret = zmq.auth.load_certificate(path)
    except FileNotFoundError:
        raise ValidationError(f"{what} {path} does not exist; create one with `dcron keygen`") from None
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{what} {path} is not a CurveZMQ secret key file: {exc}") from None
    if not secret:
        raise ValidationError(f"{what} {path} holds no secret key (a .key_secret file is needed)")
    return KeyPair(public, secret)


def load_public(value: str | os.PathLike[str], what: str) -> bytes:
    """A public key from a ``.key``/``.key_secret`` file or from its Z85 text."""
    text = os.fspath(value).strip()
    if _is_z85_key(text) and not os.path.exists(text):
        return text.encode()
    path = Path(text).expanduser()
    try:
        public, _ = zmq.auth.load_certificate(path)
    except FileNotFoundError:
        raise ValidationError(f"{what} {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{what} {path} is not a CurveZMQ key file: {exc}") from None
    if not public:
        raise ValidationError(f"{what} {path} holds no public key")
    return bytes(public)


def write_keypair(directory: Path, name: str, pair: KeyPair | None = None) -> KeyPair:
    """Write ``NAME.key`` (0644) and, for a pair with a secret, ``NAME.key_secret`` (0600), atomically."""
    pair = pair or KeyPair.generate()
    directory.mkdir(parents=True, exist_ok=True)
    files = ((".key_secret", True), (".key", False)) if pair.secret else ((".key", False),)
    for suffix, secret in files:
        lines = [
            "#   ****  Generated by dcron keygen: CurveZMQ certificate  ****",
            "#   ZeroMQ CURVE " + ("**Secret** Certificate" if secret else "Public Certificate"),
            "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions." if secret else "",
            "",
            "metadata",
            "curve",
            f'    public-key = "{pair.public.decode()}"',
        ]
        if secret:
            lines.append(f'    secret-key = "{pair.secret.decode()}"')
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}{suffix}.")
        try:
            os.fchmod(fd, 0o600 if secret else 0o644)
            with os.fdopen(fd, "w") as handle:
                handle.write("\n".join(lines) + "\n")
            os.replace(tmp, directory / f"{name}{suffix}")
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return pair


def ensure_local_keys(keys_dir: Path, cluster: KeyPair | None = None) -> tuple[KeyPair, bool]:
    """The cluster key pair, and the local client's key pair created if absent.

    Without ``cluster`` (no key configured), the pair in ``keys_dir`` is used, and created on the
    first start (the embedded default).  With it, its public half is written to ``cluster.key`` so
    that ``dcron`` on this host finds the server key.  Returns the pair and whether it was created.
    Several nodes on one host may start at once on the same folder: a file lock makes one of them
    create the keys and the others read them.
    """
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    created = False
    with open(keys_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        secret_file = keys_dir / f"{CLUSTER}.key_secret"
        if cluster is None:
            if secret_file.exists():
                cluster = load_secret(secret_file, "cluster key")
            else:
                cluster = write_keypair(keys_dir, CLUSTER)
                created = True
        public_file = keys_dir / f"{CLUSTER}.key"
        try:
            current: bytes | None = load_public(public_file, "cluster public key")
        except ValidationError:
            current = None
        if current != cluster.public:
            write_keypair(keys_dir, CLUSTER, KeyPair(cluster.public))
        if not (keys_dir / f"{LOCAL_CLIENT}.key_secret").exists():
            client = write_keypair(keys_dir, LOCAL_CLIENT)
            write_keypair(keys_dir / "clients", "local", KeyPair(client.public))
    return cluster, created


@dataclass(frozen=True)
class ClientKeys:
    """What a connecting socket needs: the server's public key and our own key pair."""

    server: bytes
    me: KeyPair


class Trust:
    """The public keys a node accepts, by role.  ``clients/`` and ``nodes/`` are re-read on change."""

    def __init__(
        self,
        cluster: KeyPair,
        keys_dir: Path | None = None,
        node_keys: Iterable[bytes] = (),
        client_keys: Iterable[bytes] = (),
        rescan_interval: float = 1.0,
    ) -> None:
        self.cluster = cluster
        self.keys_dir = keys_dir
        self._static: dict[bytes, Peer] = {cluster.public: Peer(NODE_ROLE, CLUSTER)}
        for i, key in enumerate(node_keys):
            self._static.setdefault(key, Peer(NODE_ROLE, f"node-key-{i + 1}"))
        for i, key in enumerate(client_keys):
            self._static.setdefault(key, Peer(CLIENT_ROLE, f"client-key-{i + 1}"))
        self._files: dict[bytes, Peer] = {}
        self._stamp: tuple[float, ...] = ()
        self._checked = 0.0
        self._interval = rescan_interval
        self._lock = threading.Lock()
        self._rescan(force=True)

    def _dirs(self) -> list[tuple[Path, str]]:
        if self.keys_dir is None:
            return []
        return [(self.keys_dir / "nodes", NODE_ROLE), (self.keys_dir / "clients", CLIENT_ROLE)]

    def _rescan(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self._interval:
            return
        self._checked = now
        stamp = tuple(d.stat().st_mtime if d.is_dir() else -1.0 for d, _ in self._dirs())
        if not force and stamp == self._stamp:
            return
        found: dict[bytes, Peer] = {}
        for directory, role in self._dirs():
            if not directory.is_dir():
                continue
            for path in sorted(directory.glob("*.key")):
                try:
                    public, _ = zmq.auth.load_certificate(path)
                except (OSError, ValueError) as exc:
                    log.warning("ignoring unreadable key file %s: %s", path, exc)
                    continue
                if public:
                    found.setdefault(bytes(public), Peer(role, path.stem))
        self._files, self._stamp = found, stamp

    def peer(self, public: bytes) -> Peer | None:
        """The role and name of a Z85 public key, or ``None`` if it is not trusted."""
        with self._lock:
            self._rescan()  # at most once per interval: a removed key file revokes the key
            return self._static.get(public) or self._files.get(public)

    def counts(self) -> dict[str, int]:
        with self._lock:
            peers = [*self._static.values(), *self._files.values()]
        return {
            NODE_ROLE: sum(p.role == NODE_ROLE for p in peers),
            CLIENT_ROLE: sum(p.role == CLIENT_ROLE for p in peers),
        }


@dataclass(frozen=True)
class Security:
    """A transport's keys: ``trust`` to serve (None on a pure client), ``client`` to connect."""

    client: ClientKeys
    trust: Trust | None = field(default=None, compare=False)


def client_security(data_dir: Path, key: str | None = None, server_key: str | None = None) -> Security:
    """A client's keys: ``key`` and ``server_key`` when given, else those of the node's data folder."""
    keys_dir = data_dir / "keys"
    hint = (
        "run dcron on a node's host with that node's data folder (--data-dir / DCRON_DATA_DIR), "
        "or pass --key and --server-key (DCRON_KEY, DCRON_SERVER_KEY)"
    )
    if key is None and not (keys_dir / f"{LOCAL_CLIENT}.key_secret").exists():
        raise ValidationError(f"no client key in {keys_dir}: {hint}")
    if server_key is None and not (keys_dir / f"{CLUSTER}.key").exists():
        raise ValidationError(f"no server key in {keys_dir}: {hint}")
    me = load_secret(key or keys_dir / f"{LOCAL_CLIENT}.key_secret", "client key")
    server = load_public(server_key or keys_dir / f"{CLUSTER}.key", "server key")
    return Security(ClientKeys(server, me))


def node_security(
    keys_dir: Path, cluster_key: str | None, node_keys: Iterable[str] = (), client_keys: Iterable[str] = ()
) -> tuple[Security, bool]:
    """A node's keys and trust; creates the embedded default keys on first start (True if so)."""
    configured = load_secret(cluster_key, "cluster key") if cluster_key else None
    cluster, created = ensure_local_keys(keys_dir, configured)
    trust = Trust(
        cluster,
        keys_dir,
        node_keys=[load_public(k, "node key") for k in node_keys],
        client_keys=[load_public(k, "client key") for k in client_keys],
    )
    return Security(ClientKeys(cluster.public, cluster), trust), created

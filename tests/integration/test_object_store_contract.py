"""The ObjectStore contract, run against every implementation: file://, S3 (moto) and Swift.

The S3 and Swift parameters are marked ``s3`` and ``swift`` and need the services started by
``bash scripts/services.sh start`` (they skip, or fail in CI, without them).  Objects are written
to a fresh bucket or container per test, which also checks that stores create them.

Also here: outages (a closed port, a port that never answers) must raise UnavailableError within
seconds; uploads and downloads of 64 MiB must not hold the object in memory (measured in a
subprocess, since ru_maxrss is a high-water mark); Swift specifics (segmented uploads, exact
ranges of the fsspec filesystem, Keystone v3, fsspec registration); the plugin hooks.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dcron_plugins.storage_local
import dcron_plugins.storage_s3
import dcron_plugins.storage_swift
import fsspec
import pytest
from dcron_plugins.storage_local import LocalObjectStore
from dcron_plugins.storage_s3 import S3ObjectStore
from dcron_plugins.storage_swift import SwiftFileSystem, SwiftObjectStore
from dcron_plugins.storage_swift.fs import connection_options

from libdcron.abc import ObjectStore
from libdcron.errors import NotFoundError, PluginError, UnavailableError, ValidationError
from libdcron.plugins import Plugins
from tests.conftest import service

MiB = 2**20
#: Swift segment size in these tests: big files below are segmented.
SEGMENT = MiB
#: Smallest S3 part; files of more than two parts go multipart.
S3_PART = 5 * MiB
#: Larger than 2 S3 parts and than 10 Swift segments, and not a multiple of either.
LARGE = 11 * MiB + 7
#: How long an unreachable store may take to say so.
OUTAGE_SECONDS = 5.0

STORAGE_PLUGINS = (dcron_plugins.storage_local, dcron_plugins.storage_s3, dcron_plugins.storage_swift)
PLUGINS = Plugins(load_entry_points=False, extra=STORAGE_PLUGINS)


@dataclass
class Backend:
    """One implementation under test: how to name a fresh base URL and which options to pass."""

    name: str
    new_base: Callable[[], str]
    options: dict[str, Any]
    #: Options that point the store at an address where nothing listens (or nothing answers).
    unreachable: Callable[[int], dict[str, Any]] | None = None
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def store(self, base: str | None = None, **options: Any) -> ObjectStore:
        return PLUGINS.object_store(base or self.new_base(), {**self.options, **options})


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _file_backend(tmp_path: Path) -> Backend:
    root = tmp_path / "objects"
    return Backend("file", lambda: f"file://{root / _unique('base')}", {})


def _s3_backend(monkeypatch: pytest.MonkeyPatch) -> Backend:
    endpoint = service("S3", "moto S3 server")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("DCRON_S3_ENDPOINT_URL", raising=False)
    backend = Backend(
        "s3",
        lambda: f"s3://{_unique('dcron-test')}/prefix",
        {"s3_endpoint_url": endpoint, "s3_part_size": S3_PART},
        unreachable=lambda port: {
            "s3_endpoint_url": f"http://127.0.0.1:{port}",
            "s3_retries": 1,
            "s3_connect_timeout": 1,
            "s3_read_timeout": 1,
        },
    )
    return backend


def _swift_backend() -> Backend:
    auth = service("SWIFT_AUTH", "OpenStack Swift")
    user = service("SWIFT_USER", "OpenStack Swift")
    key = service("SWIFT_KEY", "OpenStack Swift")
    options = {
        "swift_auth_url": auth,
        "swift_user": user,
        "swift_key": key,
        "swift_segment_size": SEGMENT,
        "swift_retries": 1,
    }
    return Backend(
        "swift",
        lambda: f"swift://{_unique('dcron-test')}/prefix",
        options,
        unreachable=lambda port: {
            "swift_auth_url": f"http://127.0.0.1:{port}/auth/v1.0",
            "swift_retries": 0,
            "swift_timeout": 1,
        },
    )


def _delete_bucket(store: ObjectStore) -> None:
    """Best effort: remove what a test wrote (Swift keeps it on disk between runs)."""
    fs = getattr(store, "fs", None)
    bucket = store.base_url.partition("://")[2].split("/", 1)[0]
    if fs is None or store.base_url.startswith("file://"):
        return
    for name in (bucket, bucket + "_segments"):
        try:
            if fs.exists(name):
                fs.rm(name, recursive=True)
        except Exception:
            pass


BACKENDS = [
    pytest.param("file", id="file"),
    pytest.param("s3", id="s3", marks=pytest.mark.s3),
    pytest.param("swift", id="swift", marks=pytest.mark.swift),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    if request.param == "file":
        return _file_backend(tmp_path)
    if request.param == "s3":
        return _s3_backend(monkeypatch)
    return _swift_backend()


@pytest.fixture
def store(backend: Backend) -> Iterator[ObjectStore]:
    made = backend.store()
    yield made
    _delete_bucket(made)


def _write_random(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path`` in 1 MiB chunks; return their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(MiB, left))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# ---------------------------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------------------------


def test_url_for_and_owns(backend: Backend, store: ObjectStore) -> None:
    base = store.base_url
    scheme = base.partition("://")[0]
    assert not base.endswith("/")
    assert store.url_for("logs/a.log") == f"{base}/logs/a.log"
    assert store.url_for("/logs/a.log") == f"{base}/logs/a.log"
    assert store.owns(store.url_for("x"))
    assert store.owns(f"{scheme}://elsewhere/other/key")  # any URL of its scheme
    for other in ("file:///tmp/x", "s3://b/k", "swift://c/o", "http://h/x", "/tmp/x", "x"):
        if not other.startswith(f"{scheme}://"):
            assert not store.owns(other), other
    with pytest.raises(ValidationError):
        store.stat("ftp://host/x")


def test_url_naming_no_object_is_rejected(backend: Backend, store: ObjectStore) -> None:
    scheme = store.base_url.partition("://")[0]
    bad = [store.url_for("dir/"), f"{scheme}://"]
    if backend.name != "file":
        bad.append(f"{scheme}://bucket-only")
    for url in bad:
        with pytest.raises(ValidationError):
            store.stat(url)


# ---------------------------------------------------------------------------------------------
# Bytes, ranges, stat
# ---------------------------------------------------------------------------------------------


def test_put_bytes_stat_and_exact_ranges(store: ObjectStore) -> None:
    data = bytes(range(256)) * 4 + b"end"
    size = len(data)
    url = store.url_for("ranges/object.bin")
    store.put_bytes(data, url)

    info = store.stat(url)
    assert info.size == size
    assert info.version

    assert store.read_range(url, 0, 1) == data[:1]  # first byte
    assert store.read_range(url, 0, 2) == data[:2]
    assert store.read_range(url, size - 1, 1) == data[-1:]  # last byte
    assert store.read_range(url, size - 2, 2) == data[-2:]
    assert store.read_range(url, 255, 3) == data[255:258]  # across a boundary
    assert store.read_range(url, 0, size) == data  # all of it
    assert store.read_range(url, size - 1, 10) == data[-1:]  # runs past the end: fewer bytes
    assert store.read_range(url, 100, size) == data[100:]
    assert store.read_range(url, size, 5) == b""  # starts at the end
    assert store.read_range(url, size + 100, 5) == b""  # starts past the end
    assert store.read_range(url, 10, 0) == b""  # nothing asked
    with pytest.raises(ValidationError):
        store.read_range(url, -1, 5)
    with pytest.raises(ValidationError):
        store.read_range(url, 0, -5)


def test_empty_object(store: ObjectStore, tmp_path: Path) -> None:
    url = store.url_for("empty")
    store.put_bytes(b"", url)
    assert store.stat(url).size == 0
    assert store.read_range(url, 0, 10) == b""
    out = tmp_path / "empty.out"
    store.get_file(url, str(out))
    assert out.read_bytes() == b""


def test_version_changes_on_rewrite(store: ObjectStore) -> None:
    url = store.url_for("versioned.txt")
    store.put_bytes(b"A" * 100, url)
    first = store.stat(url)
    assert store.stat(url) == first  # stable while unchanged
    store.put_bytes(b"B" * 100, url)  # same size, other content
    second = store.stat(url)
    assert second.size == 100
    assert second.version != first.version
    assert store.read_range(url, 0, 3) == b"BBB"


def test_missing_objects(store: ObjectStore, tmp_path: Path) -> None:
    url = store.url_for("does/not/exist")
    assert not store.exists(url)
    with pytest.raises(NotFoundError):
        store.stat(url)
    with pytest.raises(NotFoundError):
        store.read_range(url, 0, 10)
    with pytest.raises(NotFoundError):
        store.read_range(url, 0, 0)
    out = tmp_path / "out" / "missing"
    with pytest.raises(NotFoundError):
        store.get_file(url, str(out))
    assert not out.exists()
    assert os.listdir(out.parent) == []  # no partial download left behind

    store.put_bytes(b"x", url)
    assert store.exists(url)
    # A "directory" (a prefix of an object) is no object.
    with pytest.raises(NotFoundError):
        store.stat(store.url_for("does/not"))
    assert not store.exists(store.url_for("does/not"))


def test_delete(backend: Backend, store: ObjectStore, tmp_path: Path) -> None:
    first, second = store.url_for("logs/job/2026-11-26T21:34:00Z/1.log"), store.url_for("logs/job/x.log")
    store.put_bytes(b"one", first)
    store.put_bytes(b"two", second)
    assert store.delete(first) is None
    assert not store.exists(first) and store.read_range(second, 0, 10) == b"two"
    with pytest.raises(NotFoundError):
        store.get_file(first, str(tmp_path / "out"))
    store.delete(first)  # missing: no error, so an interrupted delete can be made again
    store.delete(store.url_for("never/written"))
    store.delete(store.url_for("logs"))  # a "directory" is no object either
    assert store.exists(second)
    store.put_bytes(b"again", first)  # where a deleted object was, a new one can be written
    assert store.read_range(first, 0, 10) == b"again"
    with pytest.raises(ValidationError):
        store.delete(store.url_for("dir/"))
    if backend.name == "file":  # the folders a delete leaves empty go, up to the base folder
        store.delete(first)
        root = Path(store.base_url.removeprefix("file://"))
        assert sorted(p.name for p in (root / "logs" / "job").iterdir()) == ["x.log"]
        store.delete(second)
        assert root.is_dir() and not (root / "logs").exists()


def test_delete_of_a_large_object(backend: Backend, store: ObjectStore, tmp_path: Path) -> None:
    """A multipart (S3) or segmented (Swift) object goes with all its parts."""
    src = tmp_path / "large.bin"
    _write_random(src, 3 * SEGMENT + 5)
    url = store.url_for("large/log.bin")
    store.put_file(str(src), url)
    store.delete(url)
    assert not store.exists(url)
    fs = getattr(store, "fs", None)
    if backend.name == "swift" and fs is not None:
        container = store.base_url.partition("://")[2].split("/", 1)[0]
        assert not fs.exists(container + "_segments") or fs.ls(container + "_segments") == []


def test_missing_bucket_or_directory_is_not_found(backend: Backend) -> None:
    store = backend.store()  # nothing written: its bucket, container or directory does not exist
    url = store.url_for("k")
    assert not store.exists(url)
    with pytest.raises(NotFoundError):
        store.stat(url)
    with pytest.raises(NotFoundError):
        store.read_range(url, 0, 1)


def test_creates_bucket_or_container_on_write(backend: Backend, tmp_path: Path) -> None:
    store = backend.store()
    try:
        url = store.url_for("deep/down/the/tree/object")
        store.put_bytes(b"first", url)
        assert store.read_range(url, 0, 100) == b"first"
        src = tmp_path / "src"
        src.write_bytes(b"second")
        other = backend.store()  # another fresh bucket, created by put_file this time
        store2_url = other.url_for("a/b")
        other.put_file(str(src), store2_url)
        assert other.stat(store2_url).size == 6
        _delete_bucket(other)
    finally:
        _delete_bucket(store)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def test_put_file_get_file_round_trip_of_a_large_file(
    backend: Backend, store: ObjectStore, tmp_path: Path
) -> None:
    src = tmp_path / "large.bin"
    digest = _write_random(src, LARGE)
    url = store.url_for("files/large.bin")
    store.put_file(str(src), url)
    assert store.stat(url).size == LARGE

    out = tmp_path / "download" / "large.copy"  # the directory is created
    store.get_file(url, str(out))
    assert out.stat().st_size == LARGE
    assert _sha256(out) == digest
    assert sorted(os.listdir(out.parent)) == ["large.copy"]  # no temporary file left

    # Ranges across part and segment boundaries come from the right place.
    with open(src, "rb") as f:
        for offset, length in ((SEGMENT - 3, 6), (S3_PART - 1, 2), (LARGE - 5, 10), (0, 4)):
            f.seek(offset)
            assert store.read_range(url, offset, length) == f.read(length), (offset, length)

    # get_file replaces an existing file.
    out.write_bytes(b"stale")
    store.get_file(url, str(out))
    assert _sha256(out) == digest

    # Rewriting with a smaller file changes size and version.
    small = tmp_path / "small.bin"
    small.write_bytes(b"small")
    version = store.stat(url).version
    store.put_file(str(small), url)
    info = store.stat(url)
    assert (info.size, info.version != version) == (5, True)


def test_put_file_of_a_missing_local_file(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        store.put_file(str(tmp_path / "nope"), store.url_for("x"))


# ---------------------------------------------------------------------------------------------
# Outages
# ---------------------------------------------------------------------------------------------


def _assert_unavailable_quickly(call: Callable[[], object], url: str) -> None:
    started = time.monotonic()
    with pytest.raises(UnavailableError) as caught:
        call()
    elapsed = time.monotonic() - started
    assert elapsed < OUTAGE_SECONDS, f"took {elapsed:.1f}s to report the outage"
    assert url in str(caught.value)


def _all_operations(store: ObjectStore, tmp_path: Path) -> list[tuple[str, Callable[[], object]]]:
    url = store.url_for("k")
    src = tmp_path / "src"
    src.write_bytes(b"data")
    return [
        (url, lambda: store.stat(url)),
        (url, lambda: store.exists(url)),
        (url, lambda: store.read_range(url, 0, 10)),
        (url, lambda: store.get_file(url, str(tmp_path / "dst"))),
        (url, lambda: store.put_bytes(b"x", url)),
        (url, lambda: store.put_file(str(src), url)),
        (url, lambda: store.delete(url)),
    ]


@pytest.mark.parametrize("backend", [p for p in BACKENDS if p.id != "file"], indirect=True)
def test_closed_port_is_unavailable(backend: Backend, tmp_path: Path) -> None:
    assert backend.unreachable is not None
    store = backend.store(**backend.unreachable(_closed_port()))
    for url, call in _all_operations(store, tmp_path):
        _assert_unavailable_quickly(call, url)
    assert not (tmp_path / "dst").exists()


@pytest.mark.parametrize("backend", [p for p in BACKENDS if p.id != "file"], indirect=True)
def test_silent_server_is_unavailable(backend: Backend, tmp_path: Path) -> None:
    """A port that accepts connections and never answers: the timeouts must fire."""
    assert backend.unreachable is not None
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        store = backend.store(**backend.unreachable(listener.getsockname()[1]))
        url = store.url_for("k")
        _assert_unavailable_quickly(lambda: store.stat(url), url)
        _assert_unavailable_quickly(lambda: store.put_bytes(b"x", url), url)


@pytest.mark.parametrize("backend", [p for p in BACKENDS if p.id == "file"], indirect=True)
def test_unwritable_file_store_is_unavailable(backend: Backend, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a directory")
    store = backend.store(f"file://{blocker}/objects")
    url = store.url_for("k")
    _assert_unavailable_quickly(lambda: store.put_bytes(b"x", url), url)
    with pytest.raises(NotFoundError):
        store.stat(url)


@pytest.mark.swift
def test_bad_swift_credentials_are_unavailable() -> None:
    backend = _swift_backend()
    store = backend.store(swift_key="wrong-key", swift_retries=0)
    url = store.url_for("k")
    _assert_unavailable_quickly(lambda: store.stat(url), url)


# ---------------------------------------------------------------------------------------------
# Memory: streaming, measured in a subprocess
# ---------------------------------------------------------------------------------------------

MEMORY_FILE = 64 * MiB
MEMORY_LIMIT = 50 * MiB

_MEMORY_CHILD = """
import gc, json, re, resource, sys
import dcron_plugins.storage_local, dcron_plugins.storage_s3, dcron_plugins.storage_swift
from libdcron.plugins import Plugins

cfg = json.loads(sys.argv[1])
plugins = Plugins(load_entry_points=False, extra=[
    dcron_plugins.storage_local, dcron_plugins.storage_s3, dcron_plugins.storage_swift])
store = plugins.object_store(cfg["base"], cfg["options"])
# Warm up: import and initialise every code path on a small object first.
store.put_file(cfg["warm"], store.url_for("warm"))
store.get_file(store.url_for("warm"), cfg["warm"] + ".back")
gc.collect()

def status(field):
    text = open("/proc/self/status").read()
    return int(re.search(rf"^{field}:\\s+(\\d+) kB", text, re.M).group(1)) * 1024

# The peak left by imports would hide what the transfer uses: reset the high-water mark (Linux
# clear_refs "5") and measure from the current RSS.  Else fall back to ru_maxrss.
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before, peak = status("VmRSS"), lambda: status("VmHWM")
except OSError:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
if cfg["mode"] == "put":
    store.put_file(cfg["file"], store.url_for("big-from-child"))
elif cfg["mode"] == "get":
    store.get_file(store.url_for("big"), cfg["file"] + ".back")
else:  # "control": what holding the object in memory looks like
    store.put_bytes(open(cfg["file"], "rb").read(), store.url_for("big-from-child"))
print(json.dumps({"before": before, "growth": peak() - before}))
"""


def _peak_growth(mode: str, store: ObjectStore, options: Mapping[str, Any], big: Path, warm: Path) -> int:
    cfg = {
        "mode": mode,
        "base": store.base_url,
        "options": dict(options),
        "file": str(big),
        "warm": str(warm),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=240,
        env=os.environ.copy(),
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    growth: int = json.loads(proc.stdout.strip().splitlines()[-1])["growth"]
    return growth


def test_large_transfers_stream(backend: Backend, store: ObjectStore, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    digest = _write_random(big, MEMORY_FILE)
    warm = tmp_path / "warm.bin"
    _write_random(warm, 2 * MiB)
    options = dict(backend.options)
    if backend.name == "swift":
        options["swift_segment_size"] = 16 * MiB  # four streamed segments and a manifest
    store.put_file(str(big), store.url_for("big"))
    for mode in ("put", "get"):
        growth = _peak_growth(mode, store, options, big, warm)
        assert growth < MEMORY_LIMIT, (
            f"{mode} of {MEMORY_FILE // MiB} MiB grew peak RSS by {growth // MiB} MiB"
        )
    # The measurement sees an upload that holds the object in memory.
    assert _peak_growth("control", store, options, big, warm) > MEMORY_LIMIT
    assert _sha256(Path(f"{big}.back")) == digest
    assert store.stat(store.url_for("big-from-child")).size == MEMORY_FILE


# ---------------------------------------------------------------------------------------------
# Swift specifics
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def swift_fs() -> Iterator[tuple[SwiftFileSystem, str]]:
    """A SwiftFileSystem made through fsspec, and a fresh container on it."""
    backend = _swift_backend()
    fs = fsspec.filesystem(
        "swift",
        auth_url=backend.options["swift_auth_url"],
        user=backend.options["swift_user"],
        key=backend.options["swift_key"],
        segment_size=SEGMENT,
        retries=1,
        skip_instance_cache=True,
    )
    assert isinstance(fs, SwiftFileSystem)
    container = _unique("dcron-fs")
    fs.mkdir(container)
    yield fs, container
    for name in (container, container + "_segments"):
        if fs.exists(name):
            fs.rm(name, recursive=True)


@pytest.mark.swift
def test_swift_registered_with_fsspec() -> None:
    assert fsspec.get_filesystem_class("swift") is SwiftFileSystem


@pytest.mark.swift
@pytest.mark.parametrize("size", [10, 3 * SEGMENT + 17], ids=["small", "segmented"])
def test_swift_fs_ranges_are_exact(swift_fs: tuple[SwiftFileSystem, str], tmp_path: Path, size: int) -> None:
    fs, container = swift_fs
    src = tmp_path / "data"
    _write_random(src, size)
    data = src.read_bytes()
    path = f"{container}/dir/object"
    fs.put_file(str(src), path)
    assert fs.info(path)["static_large_object"] is (size > SEGMENT)
    assert fs.cat_file(path) == data
    cases = [
        (0, 1),
        (0, 2),
        (1, 2),
        (size - 1, size),
        (size - 1, None),
        (0, size),
        (0, size + 50),
        (size, size + 5),
        (size + 10, size + 20),
        (5, 5),
        (6, 5),
        (None, 3),
        (-3, None),
        (-4, -1),
        (2, -2),
    ]
    if size > SEGMENT:
        cases += [(SEGMENT - 1, SEGMENT + 1), (SEGMENT, 2 * SEGMENT), (2 * SEGMENT - 5, 3 * SEGMENT + 5)]
    for start, end in cases:
        got = fs.cat_file(path, start=start, end=end)
        assert got == data[start:end], (start, end, len(got))
    with fs.open(path, "rb", block_size=4096) as f:
        f.seek(size - 3)
        assert f.read() == data[-3:]
        f.seek(1)
        assert f.read(5) == data[1:6]
    assert fs.ls(f"{container}/dir", detail=False) == [path]
    assert fs.info(f"{container}/dir")["type"] == "directory"
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{container}/dir/missing", start=0, end=1)
    with pytest.raises(FileNotFoundError):
        fs.info(f"{container}-missing/x")


@pytest.mark.swift
def test_swift_segments_are_replaced_and_deleted(
    swift_fs: tuple[SwiftFileSystem, str], tmp_path: Path
) -> None:
    fs, container = swift_fs
    segments = container + "_segments"
    src = tmp_path / "data"
    _write_random(src, 2 * SEGMENT + 1)
    path = f"{container}/big"
    fs.put_file(str(src), path)
    assert len(fs.find(segments)) == 3
    fs.put_file(str(src), path)  # overwritten: the old segments go
    assert len(fs.find(segments)) == 3
    fs.pipe_file(path, b"now small")
    assert fs.find(segments) == []
    assert fs.cat_file(path) == b"now small"
    fs.put_file(str(src), path)
    fs.rm(path)
    assert fs.find(segments) == []
    assert not fs.exists(path)
    with pytest.raises(FileNotFoundError):
        fs.rm(path)


@pytest.mark.swift
def test_swift_open_for_writing(swift_fs: tuple[SwiftFileSystem, str]) -> None:
    fs, container = swift_fs
    path = f"{container}/written"
    chunk = os.urandom(256 * 1024)
    with fs.open(path, "wb", block_size=5 * MiB) as f:
        for _ in range(6):  # 1.5 MiB: more than a segment
            f.write(chunk)
    assert fs.info(path)["size"] == 6 * len(chunk)
    assert fs.info(path)["static_large_object"]
    assert fs.cat_file(path, start=len(chunk) - 1, end=len(chunk) + 1) == chunk[-1:] + chunk[:1]


class _FakeKeystone(http.server.BaseHTTPRequestHandler):
    """Keystone v3's POST /v3/auth/tokens, backed by the test Swift's v1 auth."""

    swift_auth = ""
    swift_user = ""
    swift_key = ""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        auth = body["auth"]
        user = auth["identity"]["password"]["user"]
        expected_user = {"name": "demo", "password": "secret", "domain": {"name": "Users"}}
        expected_scope = {"project": {"name": "proj", "domain": {"name": "Default"}}}
        if self.path != "/v3/auth/tokens" or user != expected_user or auth.get("scope") != expected_scope:
            self.send_response(401)
            self.end_headers()
            return
        request = urllib.request.Request(
            self.swift_auth, headers={"X-Auth-User": self.swift_user, "X-Auth-Key": self.swift_key}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            storage_url, token = resp.headers["X-Storage-Url"], resp.headers["X-Auth-Token"]
        catalog = [
            {"type": "identity", "endpoints": [{"interface": "public", "region": "RegionOne", "url": "x"}]},
            {
                "type": "object-store",
                "endpoints": [
                    {"interface": "internal", "region": "RegionOne", "url": "http://127.0.0.1:1/wrong"},
                    {"interface": "public", "region": "Elsewhere", "url": "http://127.0.0.1:1/wrong"},
                    {"interface": "public", "region": "RegionOne", "url": storage_url},
                ],
            },
        ]
        payload = json.dumps({"token": {"catalog": catalog}}).encode()
        self.send_response(201)
        self.send_header("X-Subject-Token", token)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_keystone() -> Iterator[str]:
    backend = _swift_backend()
    handler = type(
        "Handler",
        (_FakeKeystone,),
        {
            "swift_auth": backend.options["swift_auth_url"],
            "swift_user": backend.options["swift_user"],
            "swift_key": backend.options["swift_key"],
        },
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v3"
    server.shutdown()
    server.server_close()


@pytest.mark.swift
def test_swift_keystone_v3(fake_keystone: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "ST_AUTH",
        "ST_USER",
        "ST_KEY",
        "OS_STORAGE_URL",
        "OS_AUTH_TOKEN",
        "OS_IDENTITY_API_VERSION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OS_AUTH_URL", fake_keystone)
    monkeypatch.setenv("OS_USERNAME", "demo")
    monkeypatch.setenv("OS_PASSWORD", "secret")
    monkeypatch.setenv("OS_PROJECT_NAME", "proj")
    monkeypatch.setenv("OS_USER_DOMAIN_NAME", "Users")
    monkeypatch.setenv("OS_PROJECT_DOMAIN_NAME", "Default")
    monkeypatch.setenv("OS_REGION_NAME", "RegionOne")
    store = PLUGINS.object_store(f"swift://{_unique('dcron-ks')}/p", {"swift_retries": 0})
    try:
        url = store.url_for("hello")
        store.put_bytes(b"via keystone", url)
        assert store.read_range(url, 4, 8) == b"keystone"
        # Options override the environment.
        wrong = PLUGINS.object_store(store.base_url, {"swift_key": "wrong", "swift_retries": 0})
        _assert_unavailable_quickly(lambda: wrong.stat(url), url)
    finally:
        _delete_bucket(store)


def test_swift_connection_options_from_environment() -> None:
    v1 = connection_options(environ={"ST_AUTH": "http://h/auth/v1.0", "ST_USER": "a:b", "ST_KEY": "k"})
    assert (v1["authurl"], v1["user"], v1["key"], v1["auth_version"]) == (
        "http://h/auth/v1.0",
        "a:b",
        "k",
        "1",
    )
    keystone_env = {
        "OS_AUTH_URL": "http://ks:5000/v3",
        "OS_USERNAME": "u",
        "OS_PASSWORD": "p",
        "OS_PROJECT_NAME": "proj",
        "OS_USER_DOMAIN_NAME": "ud",
        "OS_PROJECT_DOMAIN_NAME": "pd",
        "OS_REGION_NAME": "r1",
    }
    v3 = connection_options(environ=keystone_env)
    assert (v3["authurl"], v3["user"], v3["key"], v3["auth_version"]) == ("http://ks:5000/v3", "u", "p", "3")
    assert v3["os_options"] == {
        "project_name": "proj",
        "user_domain_name": "ud",
        "project_domain_name": "pd",
        "region_name": "r1",
    }
    both = connection_options(environ={**keystone_env, "ST_AUTH": "http://h/auth/v1.0", "ST_USER": "a:b"})
    assert (both["authurl"], both["auth_version"], both["user"]) == ("http://h/auth/v1.0", "1", "a:b")
    explicit = connection_options(auth_url="http://x/v3", user="me", key="pw", environ=keystone_env)
    assert (explicit["authurl"], explicit["user"], explicit["key"]) == ("http://x/v3", "me", "pw")
    token = connection_options(environ={"OS_STORAGE_URL": "http://s/v1/AUTH_a", "OS_AUTH_TOKEN": "t"})
    assert (token["preauthurl"], token["preauthtoken"]) == ("http://s/v1/AUTH_a", "t")
    with pytest.raises(ValueError):
        connection_options(environ={})
    with pytest.raises(ValidationError):
        SwiftObjectStore("swift://c/p", {"swift_auth_url": "", "swift_retries": "many"})


# ---------------------------------------------------------------------------------------------
# Plugins
# ---------------------------------------------------------------------------------------------


def test_hooks_pick_the_store_by_scheme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ST_AUTH", "http://127.0.0.1:1/auth/v1.0")  # never contacted
    assert isinstance(PLUGINS.object_store(f"file://{tmp_path}", {}), LocalObjectStore)
    assert isinstance(PLUGINS.object_store("s3://bucket/p", {}), S3ObjectStore)
    assert isinstance(PLUGINS.object_store("swift://container/p", {}), SwiftObjectStore)
    with pytest.raises(PluginError):
        PLUGINS.object_store("gopher://x/y", {})
    with pytest.raises(ValidationError):
        PLUGINS.object_store("file://relative/dir", {}).stat("file://relative/dir/x")


def test_entry_points_name_the_storage_plugins() -> None:
    found = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="libdcron")}
    assert found.get("dcron-storage-local") == "dcron_plugins.storage_local"
    assert found.get("dcron-storage-s3") == "dcron_plugins.storage_s3"
    assert found.get("dcron-storage-swift") == "dcron_plugins.storage_swift"


def test_file_writes_are_atomic(tmp_path: Path) -> None:
    """A reader polling while a writer rewrites an object never sees a partial one."""
    store = LocalObjectStore(f"file://{tmp_path}/objects")
    url = store.url_for("atomic.bin")
    versions = [bytes([i]) * (512 * 1024) for i in range(8)]
    store.put_bytes(versions[0], url)
    path = store.path_of(url)
    seen: set[bytes] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            with open(path, "rb") as f:
                data = f.read()
            assert data in versions, f"partial object of {len(data)} bytes"
            seen.add(data[:1])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(5):
            for v in versions:
                store.put_bytes(v, url)
    finally:
        stop.set()
        reader.join()
    assert os.listdir(os.path.dirname(path)) == ["atomic.bin"]

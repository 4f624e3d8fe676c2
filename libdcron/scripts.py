"""The worker's local cache of job scripts, fetched from object storage.

A script is cached under its sha256 when the job records one (and checked against it), else under
a hash of its URL and the object's version token, so a rewritten object is fetched again.  Fetches
retry while the store is unavailable (four tries, 0.5 s to 4 s apart) and end in a
:class:`~libdcron.errors.DcronError` that names the script.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .abc import ObjectStore
from .backoff import Backoff, retry
from .errors import NotFoundError, UnavailableError, ValidationError
from .model import Job


class ScriptCache:
    def __init__(self, folder: Path, resolve_objects: Callable[[str], ObjectStore]) -> None:
        self.folder = folder
        self.resolve_objects = resolve_objects
        folder.mkdir(parents=True, exist_ok=True)

    def fetch(self, job: Job, suffix: str) -> Path:
        """The local path of ``job``'s script (fetched now unless cached)."""
        store = self.resolve_objects(job.script)
        if job.script_sha256:
            key = job.script_sha256
        else:
            info = _with_retries(lambda: store.stat(job.script), f"script {job.script}")
            key = hashlib.sha256(f"{job.script}\0{info.version}".encode()).hexdigest()
        path = self.folder / f"{key}{suffix}"
        if path.exists():
            return path
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".fetch-")
        os.close(fd)
        try:
            _with_retries(lambda: store.get_file(job.script, tmp), f"script {job.script}")
            if job.script_sha256:
                digest = sha256_file(tmp)
                if digest != job.script_sha256:
                    raise ValidationError(
                        f"script {job.script} has sha256 {digest}, but the job expects {job.script_sha256}; "
                        "re-register the job with the new script"
                    )
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path


def _with_retries(call: Callable[[], Any], what: str, tries: int = 4) -> Any:
    try:
        return retry(call, (UnavailableError,), backoff=Backoff(0.5, 4.0), tries=tries)
    except NotFoundError:
        raise NotFoundError(f"{what} not found in object storage") from None
    except UnavailableError as exc:
        raise UnavailableError(f"object storage unavailable while fetching {what}: {exc}") from None


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

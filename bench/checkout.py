"""Run a benchmark on the code of the checkout it is in, whatever ``pip install -e`` points at.

Importing this module puts the checkout's packages first on ``sys.path`` (for the benchmark's
own client), and :func:`node_env` gives the ``dcrond`` processes it starts the same packages by
``PYTHONPATH``.  Without it a node started from a temporary folder imports the installed
``libdcron``: ``python /tmp/old-commit/bench/throughput_bench.py`` would measure the installed
code, not the old commit's (the package ``dcron_plugins`` is the folder ``plugins`` of the
checkout, hence the links).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"libdcron": ROOT / "libdcron", "dcron_plugins": ROOT / "plugins"}


def _packages() -> str:
    """A temporary folder holding links to the checkout's packages under their import names."""
    folder = Path(tempfile.mkdtemp(prefix="dcron-bench-packages-"))
    atexit.register(shutil.rmtree, folder, True)
    for name, target in PACKAGES.items():
        (folder / name).symlink_to(target, target_is_directory=True)
    return str(folder)


FOLDER = _packages()
sys.path.insert(0, FOLDER)


def node_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with the checkout's packages first on ``PYTHONPATH``."""
    out = dict(os.environ if env is None else env)
    out["PYTHONPATH"] = os.pathsep.join(p for p in (FOLDER, out.get("PYTHONPATH", "")) if p)
    return out

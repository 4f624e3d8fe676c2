"""The out-of-tree example plugin (examples/dcron-example-plugin) on a real ``dcrond``.

The plugin is pip-installed into a temporary folder, which the node gets on ``PYTHONPATH``: dcron
must find it through the ``libdcron`` entry-point group, exactly as it would find a plugin
installed into site-packages.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

from .harness import Cluster, wait_for

EXAMPLE = ROOT / "examples" / "dcron-example-plugin"

# Arrays, ${#...} and $BASH_VERSION: a POSIX sh would fail on the first line.
BASH_SCRIPT = """\
names=(alpha beta gamma)
echo "bash ${BASH_VERSION} ran ${#names[@]} names: ${names[*]}"
[[ -n "$DCRON_JOB" ]] && echo "job $DCRON_JOB"
"""


def _offline_wheel_build() -> bool:
    """Whether setuptools can build a wheel without fetching anything (``--no-build-isolation``)."""
    if importlib.util.find_spec("wheel") is not None:
        return True
    try:
        import setuptools
    except ImportError:
        return False
    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1)  # bdist_wheel moved into setuptools in 70.1


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example plugin, installed into a fresh folder (not into the running environment)."""
    root = tmp_path_factory.mktemp("example-plugin")
    source = root / "src"
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "site"
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(source)]
    if _offline_wheel_build():
        command.insert(4, "--no-build-isolation")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    entry_points = next(target.glob("dcron_example_plugin-*.dist-info")) / "entry_points.txt"
    assert "[libdcron]" in entry_points.read_text()
    yield target


def test_bash_interpreter_from_the_example_plugin_runs_a_job(
    cluster: Cluster, plugin_dir: Path, tmp_path: Path
) -> None:
    cluster.env_extra["PYTHONPATH"] = str(plugin_dir)
    cluster.add("solo")
    cluster.wait_ready()
    script = tmp_path / "hello.bash"
    script.write_text(BASH_SCRIPT)
    cluster.dcron("schedule", "hello", "-c", "0 0 1 1 *", "-i", "bash", "-s", str(script))
    job = cluster.json("show", "hello")["job"]
    assert job["interpreter"] == "bash"
    assert job["script"].endswith(".bash"), "the plugin's suffix names the stored script"
    cluster.dcron("run", "hello")

    def finished() -> dict | None:  # type: ignore[type-arg]
        rows = cluster.json("executions", "hello")["executions"]
        return rows[0] if rows and rows[0]["status"] != "running" else None

    row = wait_for(finished, 30)
    assert row["status"] == "succeeded", row
    assert row["exit_code"] == 0
    log = cluster.dcron("logs", row["id"]).stdout
    assert "ran 3 names: alpha beta gamma" in log
    assert re.search(r"^bash \d+\.\d+\.\d+", log, re.M), log
    assert "job hello" in log


def test_without_the_plugin_bash_is_an_unknown_interpreter(cluster: Cluster, tmp_path: Path) -> None:
    cluster.add("solo")
    cluster.wait_ready()
    script = tmp_path / "hello.bash"
    script.write_text(BASH_SCRIPT)
    result = cluster.dcron(
        "schedule", "hello", "-c", "0 0 1 1 *", "-i", "bash", "-s", str(script), check=False
    )
    assert result.returncode == 1
    assert "unknown interpreter 'bash'" in result.stderr
    assert "python" in result.stderr, "the error lists the interpreters this node knows"
    assert result.stderr.count("\n") == 1, "one line, no traceback"

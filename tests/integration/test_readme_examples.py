"""README.md's examples run as written: the quick start's commands against a real ``dcrond``, the
embedding example (twice, in a temporary folder), the plugin module, the TOML tables, and the
command table's commands and options."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from libdcron.cli import cli
from libdcron.client import Client
from libdcron.config import NodeSettings
from libdcron.testing import wait_for

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BLOCKS = [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", README, re.M | re.S)]
#: The commands and scripts below read DCRON_* variables: none of the caller's may reach them.
ENV = {k: v for k, v in os.environ.items() if not k.startswith("DCRON_") or k.startswith("DCRON_TEST_")}
ENV["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def blocks(language: str, containing: str = "") -> list[str]:
    return [text for lang, text in BLOCKS if lang == language and containing in text]


def the_block(language: str, containing: str) -> str:
    found = blocks(language, containing)
    assert len(found) == 1, f"{len(found)} {language} blocks of README.md contain {containing!r}"
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


# -- the quick start ----------------------------------------------------------------------------


def test_the_quick_start_installs_into_a_virtual_environment() -> None:
    install = next(b for b in blocks("sh") if b in section("Quick start"))
    lines = install.strip().splitlines()
    assert lines[0].startswith("python3 -m venv .venv && . .venv/bin/activate"), install
    assert lines[1].startswith("pip install ."), install


@pytest.fixture
def dcrond(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real ``dcrond`` on embedded defaults in ``tmp_path/data``: its endpoint and data folder."""
    data = tmp_path / "data"
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    log = (tmp_path / "dcrond.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "libdcron.daemon", "--data-dir", str(data), "--listen", endpoint],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=ENV,
    )

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"dcrond exited: {(tmp_path / 'dcrond.log').read_text()}")
        try:
            with Client(endpoint, timeout=1, data_dir=data) as client:
                return client.status()["leader"] is not None
        except Exception:
            return False

    try:
        wait_for(ready, 30, interval=0.2, message="dcrond up")
        yield endpoint, data
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def test_the_quick_start_commands_run(dcrond: tuple[str, Path], tmp_path: Path) -> None:
    """The second terminal of the quick start, as written, with ``dcron`` on PATH."""
    endpoint, data = dcrond
    commands = next(b for b in blocks("sh", "dcron schedule hello") if b in section("Quick start"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "dcron"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m libdcron.cli "$@"\n')
    wrapper.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    env = {**ENV, "PATH": f"{bin_dir}{os.pathsep}{ENV['PATH']}", "DCRON_ENDPOINT": endpoint}
    env["DCRON_DATA_DIR"] = str(data)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "registered hello; next run " in result.stdout
    assert re.search(r"^hello from hello at \d{4}-\d\d-\d\dT\d\d:\d\d:\d0Z$", result.stdout, re.M), result.stdout
    assert "Traceback" not in result.stderr


def test_the_quick_start_node_serves_its_dashboard_with_the_token_of_its_keys_folder(
    dcrond: tuple[str, Path],
) -> None:
    """The quick start says: the dashboard is on the listen port + 1000, the token in keys/http.token."""
    endpoint, data = dcrond
    assert "`http://127.0.0.1:8571/`" in section("Quick start") and "keys/http.token" in section("Quick start")
    port = int(endpoint.rsplit(":", 1)[1]) + 1000
    token = (data / "keys" / "http.token").read_text().strip()
    url = f"http://127.0.0.1:{port}/metrics"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5)
    assert refused.value.code == 401
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200 and b"dcron_is_leader 1.0" in answer.read()


# -- embedding ----------------------------------------------------------------------------------


def test_the_embedding_example_is_examples_embedded_py() -> None:
    example = the_block("python", "from libdcron.node import Node")
    assert example == (ROOT / "examples" / "embedded.py").read_text()


def test_the_embedding_example_runs_its_job_and_runs_twice(tmp_path: Path) -> None:
    example = the_block("python", "from libdcron.node import Node")
    assert "finally:\n    node.stop()" in example
    assert example.count("7600") == 1
    script = tmp_path / "example.py"
    script.write_text(example.replace("7600", str(free_port())))  # a free port: tests may run at once
    for run in (1, 2):
        result = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, (run, result.stderr)
        assert re.fullmatch(r"succeeded report report@\S+Z#1\n", result.stdout), (run, result.stdout)
        assert "Traceback" not in result.stderr and "ConflictError" not in result.stderr, (run, result.stderr)


# -- the plugin module --------------------------------------------------------------------------


def test_the_plugin_example_defines_an_interpreter() -> None:
    namespace: dict[str, object] = {}
    exec(compile(the_block("python", "# my_dcron_perl.py"), "README.md:my_dcron_perl.py", "exec"), namespace)
    hook = namespace["dcron_interpreters"]
    (perl,) = hook()  # type: ignore[operator]
    assert perl.name == "perl" and perl.command("x.pl") == ["perl", "x.pl"]


# -- TOML -----------------------------------------------------------------------------------------


def test_the_toml_examples_parse_and_hold_known_settings() -> None:
    tables = [tomllib.loads(text) for text in blocks("toml")]
    assert len(tables) >= 3
    node_settings = set(NodeSettings.__dataclass_fields__)
    client_settings = {p.name for p in cli.params}
    for table in tables:
        node = dict(table.get("node", {}))
        node.pop("options", None)
        assert set(node) <= node_settings, node
        assert set(table.get("client", {})) <= client_settings, table["client"]
    assert any("libdcron" in t.get("project", {}).get("entry-points", {}) for t in tables)


# -- the command table ------------------------------------------------------------------------------


def test_the_command_table_names_real_commands_and_options() -> None:
    rows = [line for line in section("Using dcron").splitlines() if line.startswith("| `dcron ")]
    assert len(rows) >= 10
    for row in rows:
        cell = row.split("|")[1]
        for usage in re.findall(r"`dcron ([^`]+)`", cell):
            name = usage.split()[0]
            assert name in cli.commands, row
            known = {opt for p in cli.commands[name].params for opt in p.opts}
            for option in re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", usage):
                assert option in known, (name, option)

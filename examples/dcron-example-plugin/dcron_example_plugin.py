"""An example out-of-tree dcron plugin: the ``bash`` interpreter.

dcron loads every module registered in the ``libdcron`` entry-point group (see this package's
``pyproject.toml``) and collects the answers of its ``@hookimpl`` functions.  This one provides a
single interpreter, ``bash``, which runs a job's script with ``bash SCRIPT``::

    pip install examples/dcron-example-plugin    # next to dcron, then restart dcrond
    dcron schedule hello -c '@every 1m' -i bash -s hello.bash

Every node that may run the job needs the plugin (and bash on ``PATH``); a node without it
refuses to register a ``bash`` job ("unknown interpreter 'bash'") and records a dispatched run as
``error``.
"""

from __future__ import annotations

import shutil

from libdcron.abc import Interpreter
from libdcron.hookspecs import hookimpl

__all__ = ["Bash", "dcron_interpreters"]


class Bash(Interpreter):
    """Runs scripts with the ``bash`` found on ``PATH`` when the job runs."""

    name = "bash"
    suffix = ".bash"

    def command(self, script_path: str) -> list[str]:
        return [shutil.which("bash") or "bash", script_path]

    def unavailable_reason(self) -> str | None:
        if shutil.which("bash") is None:
            return "interpreter 'bash' needs 'bash' on PATH, which this host lacks"
        return None


@hookimpl
def dcron_interpreters() -> list[Interpreter]:
    return [Bash()]

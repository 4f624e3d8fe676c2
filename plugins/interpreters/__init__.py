"""Built-in interpreters: ``python``, ``ruby`` and ``sh``.

Registered from the ``libdcron`` entry-point group like any external plugin.  ``python`` runs the
Python that runs the node (so a job sees the same packages); ``ruby`` and ``sh`` are looked up on
``PATH`` when a job runs (the lookup is kept for :data:`RESOLVE_TTL` seconds), so installing
Ruby later needs no restart.
"""

from __future__ import annotations

import shutil
import sys
import time

from libdcron.abc import Interpreter
from libdcron.hookspecs import hookimpl

#: Seconds a PATH lookup of an interpreter's program is kept.
RESOLVE_TTL = 5.0


class PathInterpreter(Interpreter):
    """An interpreter that is a program on ``PATH`` taking the script path as its argument."""

    def __init__(self, name: str, program: str, suffix: str, args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.program = program
        self.suffix = suffix
        self.args = args
        self._resolved: str | None = None
        self._resolved_at = -RESOLVE_TTL - 1.0

    def _resolve(self) -> str | None:
        """The program's path on PATH, looked up again at most every :data:`RESOLVE_TTL` seconds
        (a lookup walks PATH: at hundreds of runs a second it shows; an install is seen soon)."""
        now = time.monotonic()
        if now - self._resolved_at > RESOLVE_TTL:
            self._resolved, self._resolved_at = shutil.which(self.program), now
        return self._resolved

    def command(self, script_path: str) -> list[str]:
        program = self._resolve() or self.program
        return [program, *self.args, script_path]

    def unavailable_reason(self) -> str | None:
        if self._resolve() is None:
            return f"interpreter {self.name!r} needs {self.program!r} on PATH, which this host lacks"
        return None


class PythonInterpreter(PathInterpreter):
    def __init__(self) -> None:
        super().__init__("python", sys.executable, ".py", ("-u",))

    def _resolve(self) -> str | None:
        return sys.executable or shutil.which("python3")


@hookimpl
def dcron_interpreters() -> list[Interpreter]:
    return [PythonInterpreter(), PathInterpreter("ruby", "ruby", ".rb"), PathInterpreter("sh", "sh", ".sh")]

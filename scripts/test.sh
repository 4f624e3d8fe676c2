#!/usr/bin/env bash
# Install what the tests need, start the real services, then lint, type-check and run every test.
#
#   bash scripts/test.sh                 # everything (what CI runs)
#   bash scripts/test.sh tests/unit -x   # extra arguments go to pytest
#
# dcron and its test dependencies go into a virtual environment, never into the system Python
# (Debian's is "externally managed"): .venv in the repository, created on first use, or DCRON_VENV.
# PYTHON (default python3, 3.11 or newer) is the interpreter the environment is made from.
# Services (ZooKeeper, pouchdb-server, moto S3, Swift) run on loopback only and are stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BASE_PY=${PYTHON:-python3}
VENV=${DCRON_VENV:-$ROOT/.venv}

log() { printf '\n== %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# The virtual environment: made once; on Debian, `python3 -m venv` needs the pythonX.Y-venv package.
make_venv() {
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        return 0
    fi
    if ! "$BASE_PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "scripts/test.sh: $BASE_PY is not Python 3.11 or newer; set PYTHON=python3.11 (or newer)" >&2
        exit 1
    fi
    log "creating the virtual environment $VENV"
    rm -rf "$VENV"
    if "$BASE_PY" -m venv "$VENV"; then
        return 0
    fi
    rm -rf "$VENV"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "scripts/test.sh: '$BASE_PY -m venv' failed; install the venv module of $BASE_PY" >&2
        exit 1
    fi
    local version
    version=$("$BASE_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    log "installing Debian's python$version-venv (python3 -m venv needs it)"
    export DEBIAN_FRONTEND=noninteractive
    apt_venv() { as_root apt-get -o DPkg::Lock::Timeout=300 install -y -q "$1"; }
    apt_venv "python$version-venv" || apt_venv python3-venv || {
        as_root apt-get -o DPkg::Lock::Timeout=300 update -q
        apt_venv "python$version-venv" || apt_venv python3-venv
    }
    "$BASE_PY" -m venv "$VENV"
}

log "installing Debian and npm packages"
bash scripts/install-services.sh

make_venv
PY="$VENV/bin/python"
# Everything below (services that need Python packages, such as moto, and the tests' subprocesses)
# runs from the environment.
export PATH="$VENV/bin:$PATH" PYTHON="$PY" VIRTUAL_ENV="$VENV"

log "installing dcron and its test dependencies into $VENV"
"$PY" -m pip install -q --disable-pip-version-check -e '.[test]'

log "starting services"
trap 'bash scripts/services.sh stop || true' EXIT
bash scripts/services.sh start

log "ruff"
"$PY" -m ruff check .
log "mypy"
"$PY" -m mypy libdcron plugins

log "pytest"
"$PY" -m pytest -p no:cacheprovider -q -ra "$@"

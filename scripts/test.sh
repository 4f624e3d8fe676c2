#!/usr/bin/env bash
# Install what the tests need, start the real services, then lint, type-check and run every test.
#
#   bash scripts/test.sh                 # everything (what CI runs)
#   bash scripts/test.sh tests/unit -x   # extra arguments go to pytest
#
# Services (ZooKeeper, pouchdb-server, moto S3, Swift) run on loopback only and are stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}

log() { printf '\n== %s\n' "$*" >&2; }

log "installing Debian and npm packages"
bash scripts/install-services.sh

log "installing dcron and its test dependencies"
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

#!/usr/bin/env bash
# Install what the real-service tests need (ZooKeeper, Ruby, Swift, memcached and Chromium with
# its driver for the browser tests, from Debian;
# pouchdb-server from npm into .services/npm).  Python packages are installed elsewhere (pip).
#
# Idempotent: when everything is already there it only checks, in well under a second.
# Usage: bash scripts/install-services.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
APT_PACKAGES=(zookeeper ruby memcached swift swift-proxy swift-account swift-container swift-object chromium chromium-driver)
POUCHDB_VERSION=4.2.0
NPM_PREFIX="$ROOT/.services/npm"

log() { printf 'install-services: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Waits for the dpkg/apt locks instead of failing when another apt runs at the same time.
APT_OPTS=(-o DPkg::Lock::Timeout=300 -o Acquire::Retries=3)

apt_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

apt_install() {
    local missing=() p
    for p in "$@"; do apt_installed "$p" || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    export DEBIAN_FRONTEND=noninteractive
    # Refresh the package lists only when one of the packages is unknown to them.
    local need_update=0
    for p in "${missing[@]}"; do
        if [ -z "$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v '(none)')" ]; then
            need_update=1
        fi
    done
    if [ $need_update = 1 ]; then
        log "apt-get update"
        as_root apt-get "${APT_OPTS[@]}" update -q
    fi
    log "apt-get install ${missing[*]}"
    if ! as_root apt-get "${APT_OPTS[@]}" install -y -q "${missing[@]}"; then
        # Stale lists (a package version vanished from the mirror): refresh once and retry.
        log "install failed; refreshing package lists and retrying"
        as_root apt-get "${APT_OPTS[@]}" update -q
        as_root apt-get "${APT_OPTS[@]}" install -y -q "${missing[@]}"
    fi
}

# --- Debian packages ---------------------------------------------------------------------------
apt_install "${APT_PACKAGES[@]}"
command -v npm >/dev/null 2>&1 || apt_install nodejs npm

# --- pouchdb-server (CouchDB API) ----------------------------------------------------------------
installed_version=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' \
    "$NPM_PREFIX/node_modules/pouchdb-server/package.json" 2>/dev/null | head -n1 || true)
if [ "$installed_version" != "$POUCHDB_VERSION" ] || [ ! -x "$NPM_PREFIX/node_modules/.bin/pouchdb-server" ]; then
    log "npm install pouchdb-server@$POUCHDB_VERSION into $NPM_PREFIX"
    mkdir -p "$NPM_PREFIX"
    # --ignore-scripts: skips compiling sqlite3 (only --sqlite mode needs it); leveldown is prebuilt.
    npm install --prefix "$NPM_PREFIX" --ignore-scripts --no-audit --no-fund --loglevel=error \
        "pouchdb-server@$POUCHDB_VERSION"
fi

log "all service packages are installed"

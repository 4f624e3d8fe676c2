#!/usr/bin/env bash
# pouchdb-server (the CouchDB API) for the integration tests, on 127.0.0.1:15984.
#
#   pouchdb.sh start      start it and wait until GET / answers; write .services/env
#   pouchdb.sh stop       stop it (SIGTERM, then SIGKILL after 10 s); the data stays
#   pouchdb.sh restart    stop, then start on the same data (for outage tests)
#   pouchdb.sh status     say whether it runs
#   pouchdb.sh clean      stop, then delete the data
#
# Databases are LevelDB files under .services/pouchdb/data, so they survive a restart (not
# --in-memory).  Its log is .services/pouchdb/server.log (and log.txt, the server's own).
# Installed by scripts/install-services.sh into .services/npm.  Variable appended to .services/env:
#   DCRON_TEST_COUCHDB=http://127.0.0.1:15984
set -euo pipefail

SERVICE=pouchdb
ENV_VARS=(DCRON_TEST_COUCHDB)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BIN="$ROOT/.services/npm/node_modules/.bin/pouchdb-server"
PORT=15984
START_TIMEOUT=30

is_ready() { http_status "$PORT" | grep -q '^HTTP/1\.[01] 200'; }

start() {
    [ -x "$BIN" ] || { log "pouchdb-server is not installed: run scripts/install-services.sh"; exit 1; }
    command -v node >/dev/null || { log "node not found: run scripts/install-services.sh"; exit 1; }
    mkdir -p "$DIR/data"
    start_http_server pouchdb-server "$PORT" \
        "$BIN" --host 127.0.0.1 --port "$PORT" --dir "$DIR/data" --config "$DIR/config.json" --no-color
    write_env "DCRON_TEST_COUCHDB=http://127.0.0.1:$PORT"
    log "ready on http://127.0.0.1:$PORT (data in $DIR/data)"
}

case "${1:-}" in
    start) start ;;
    stop)
        # restart keeps the variable: the service comes back at the same address.
        write_env
        stop_server pouchdb-server
        ;;
    restart) stop_server pouchdb-server; start ;;
    status) if pid=$(pid_of pouchdb-server); then echo "pouchdb: pid $pid, $(http_status $PORT)"; else echo "pouchdb: stopped"; fi ;;
    clean) stop_server pouchdb-server; rm -rf "$DIR" ;;
    *) echo "usage: $0 start|stop|restart|status|clean" >&2; exit 2 ;;
esac

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

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR="$ROOT/.services/pouchdb"
ENV_FILE="$ROOT/.services/env"
BIN="$ROOT/.services/npm/node_modules/.bin/pouchdb-server"
PORT=15984
START_TIMEOUT=30

log() { printf 'pouchdb: %s\n' "$*" >&2; }

# Replaces this script's lines in .services/env with `export VAR=value` for each argument (none:
# just removes them).  Locked, because services.sh stops services in parallel.
write_env() {
    mkdir -p "$(dirname "$ENV_FILE")"
    (
        flock 9
        touch "$ENV_FILE"
        sed -i -E '/^export (DCRON_TEST_COUCHDB)=/d' "$ENV_FILE"
        [ $# -eq 0 ] || printf 'export %s\n' "$@" >>"$ENV_FILE"
    ) 9>>"$ENV_FILE.lock"
}

# The status line of GET / (empty when nothing answers within 2 s).
http_status() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" &&
        printf "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" >&3 &&
        head -n1 <&3' _ "$1" 2>/dev/null || true
}

# The end of the log, unless services.sh (which prints it itself) runs this script.
show_log() {
    [ -n "${DCRON_SERVICES_SH:-}" ] || tail -n 30 "$DIR/server.log" >&2 || true
}

pid_of() {
    local pid
    pid=$(cat "$DIR/pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start() {
    [ -x "$BIN" ] || { log "pouchdb-server is not installed: run scripts/install-services.sh"; exit 1; }
    command -v node >/dev/null || { log "node not found: run scripts/install-services.sh"; exit 1; }
    mkdir -p "$DIR/data"
    if ! pid_of >/dev/null; then
        if http_status "$PORT" | grep -q "^HTTP"; then
            log "port $PORT is taken by another program; stop it first"
            exit 1
        fi
        rm -f "$DIR/pid"
        : >"$DIR/server.log"
        (
            cd "$DIR"
            setsid bash -c 'echo $$ >pid; exec "$@"' _ \
                "$BIN" --host 127.0.0.1 --port "$PORT" --dir "$DIR/data" --config "$DIR/config.json" \
                --no-color </dev/null >>"$DIR/server.log" 2>&1 &
        )
    fi
    local deadline=$((SECONDS + START_TIMEOUT))
    until http_status "$PORT" | grep -q '^HTTP/1\.[01] 200'; do
        if [ -s "$DIR/pid" ] && ! pid_of >/dev/null; then
            log "pouchdb-server exited during start-up; last lines of $DIR/server.log:"
            show_log
            exit 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            log "pouchdb-server not ready after ${START_TIMEOUT}s; last lines of $DIR/server.log:"
            show_log
            exit 1
        fi
        sleep 0.1
    done
    write_env "DCRON_TEST_COUCHDB=http://127.0.0.1:$PORT"
    log "ready on http://127.0.0.1:$PORT (data in $DIR/data)"
}

stop() {
    local pid i
    pid=$(pid_of) || { rm -f "$DIR/pid"; return 0; }
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pouchdb-server did not stop after 10 s; killing it"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$DIR/pid"
}

case "${1:-}" in
    start) start ;;
    stop)
        # restart keeps the variable: the service comes back at the same address.
        write_env
        stop
        ;;
    restart) stop; start ;;
    status) if pid=$(pid_of); then echo "pouchdb: pid $pid, $(http_status $PORT)"; else echo "pouchdb: stopped"; fi ;;
    clean) stop; rm -rf "$DIR" ;;
    *) echo "usage: $0 start|stop|restart|status|clean" >&2; exit 2 ;;
esac
